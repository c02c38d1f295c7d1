"""The import graph is a rule, checked here: lower layers never import higher ones.

ledger (data and rules)  <-  consensus (when blocks are final)  <-  net (RPC, client, CLI)
and only node.py wires them all.  Core state machines never import the network.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "ledger": {"consensus", "net", "node", "aiohttp"},
    "consensus": {"net", "node", "aiohttp"},
    "net": {"node"},
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out.update(a.name.split(".")[0] for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.add(n.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_lower_layers(package):
    bad = {}
    for f in sorted((ROOT / package).rglob("*.py")):
        wrong = imports_of(f) & FORBIDDEN[package]
        if wrong:
            bad[str(f.relative_to(ROOT))] = sorted(wrong)
    assert not bad, f"layering violated: {bad}"
