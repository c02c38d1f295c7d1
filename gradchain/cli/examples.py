"""`gradchain examples [DIR]`: the example contracts and scripts the README uses, written out of
the installed package, so a user who installed a wheel (no checkout) can follow the README."""
from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from gradchain.cli.errors import CliError
from gradchain.cli.output import _emit_json, _rows


def bundled() -> list[resources.abc.Traversable]:
    """The package's copy of examples/ (contracts, scripts, their README), sorted by name."""
    folder = resources.files("gradchain") / "examples"
    return sorted((f for f in folder.iterdir() if f.is_file() and f.name.endswith((".py", ".md"))),
                  key=lambda f: f.name)


def cmd_examples(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    files = bundled()
    if not files:
        raise CliError("this installation carries no examples (a broken install?)")
    clash = [f.name for f in files if (out / f.name).exists()]
    if clash and not args.force:
        raise CliError(f"{out} already holds {', '.join(clash)}: choose another DIR or pass --force")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for f in files:
            (out / f.name).write_bytes(f.read_bytes())
    except OSError as e:
        raise CliError(f"cannot write into {out}: {e.strerror}") from None
    if args.json:
        _emit_json({"dir": str(out), "files": [f.name for f in files]})
    else:
        _rows([("Written to", str(out)), ("Files", ", ".join(f.name for f in files)),
               ("Try", f"gradchain deploy {out / 'token.py'} Gradient GRD 1000000 --key dev:0")])
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`examples [DIR] [--force]`."""
    p = sub.add_parser("examples", help="write the example contracts and scripts the README uses into DIR",
                       parents=[common])
    p.add_argument("dir", metavar="DIR", nargs="?", default="examples",
                   help="where to write them (default ./examples; existing files are kept unless --force)")
    p.add_argument("--force", action="store_true", help="overwrite files of the same name in DIR")
    p.set_defaults(func=cmd_examples)
