"""Print the project's import graph, per package: which modules import which (function-level
imports included), and the five largest modules.  Issue 15 asks for the graph before and
after a structural change to be generated, not drawn:

    python tests/import_graph.py
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gradchain", "ledger", "vm", "mlcore", "consensus", "net")


def modules() -> dict[str, Path]:
    """Module name -> file, for every .py under the packages, and node.py."""
    mods = {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): f
            for p in PACKAGES if (ROOT / p).is_dir() for f in sorted((ROOT / p).rglob("*.py"))}
    mods["node"] = ROOT / "node.py"
    return mods


def graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, f in mods.items():
        deps = set()
        for n in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(n, ast.Import):
                deps.update(a.name for a in n.names if a.name in mods)
            elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                deps.update(f"{n.module}.{a.name}" for a in n.names if f"{n.module}.{a.name}" in mods)
                if n.module in mods:
                    deps.add(n.module)
        out[name] = deps - {name}
    return out


def main() -> None:
    mods = modules()
    g = graph(mods)
    for package in PACKAGES + ("node",):
        names = sorted(m for m in g if m == package or m.startswith(package + "."))
        if not names:
            continue
        print(f"## {package}")
        for m in names:
            print(f"  {m} -> {', '.join(sorted(g[m])) or '-'}")
    sizes = sorted(((len(f.read_text().splitlines()), name) for name, f in mods.items()), reverse=True)
    print("## largest modules (lines)")
    for n, name in sizes[:5]:
        print(f"  {n:5d} {name}")


if __name__ == "__main__":
    sys.exit(main())
