"""The import graph is a rule, checked here: lower layers never import higher ones.

ledger (data and rules)  <-  consensus (when blocks are final)  <-  net (p2p, RPC)
and only node.py wires them all.  Core state machines never import the network.  gradchain/
(the user's SDK, test chain, units, errors and the CLI) stands on ledger and vm; nothing of
the chain (ledger, vm, mlcore, consensus) imports it.
"""
from __future__ import annotations

import ast
import configparser
from pathlib import Path

import pytest

from tests import import_graph

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "ledger": {"consensus", "net", "node", "aiohttp", "gradchain"},
    "consensus": {"net", "node", "aiohttp", "gradchain"},
    "net": {"node"},
    # gradchain/ is the user's package (SDK, test chain, units, errors): it sits on top, and
    # the chain's own packages never import it.
    "vm": {"gradchain", "consensus", "net", "node"},  # contracts never see consensus or the network
    "mlcore": {"gradchain", "ledger", "vm", "consensus", "net", "node"},  # pure ML: nothing of the project
    "gradchain": {"node"},
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


def cli_files() -> list[Path]:
    """The files of the `gradchain` command, found through its console_scripts entry point
    (setup.cfg), so the rule follows the CLI wherever it lives."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    entry = next(line for line in cfg["options.entry_points"]["console_scripts"].splitlines()
                 if line.split("=")[0].strip() == "gradchain")
    module = entry.split("=", 1)[1].split(":")[0].strip()
    path = ROOT.joinpath(*module.split("."))
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def test_the_cli_and_the_testnet_writer_reach_the_genesis_without_consensus():
    """The genesis is ledger configuration (ledger/genesis.py): the tools that write or read
    it, the CLI and net/testnet.py, import nothing of consensus."""
    files = cli_files() + [ROOT / "net" / "testnet.py"]
    assert all(f.is_file() for f in files), files
    bad = {str(f.relative_to(ROOT)): "consensus" for f in files if "consensus" in imports_of(f)}
    assert not bad, f"layering violated: {bad}"


def module_graph() -> dict[str, set[str]]:
    """Each project module (node.py included) -> the project modules it imports, at any level
    of the file: a function-level import is as much a dependency as a top-level one."""
    return import_graph.graph(import_graph.modules())


def test_no_import_cycles_among_the_projects_modules():
    graph, state, cycles = module_graph(), {}, []

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
