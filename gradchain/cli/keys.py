"""Keys: `keys new`, `keys show`, and `devnet accounts` (the devnet's prefunded keys, dev:N)."""
from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from gradchain.cli.args import _Parser, load_key_spec
from gradchain.cli.errors import CliError
from gradchain.cli.output import _emit_json, _rows
from gradchain.units import format_grad
from ledger.keys import PrivateKey, address_hex, save_key


DEFAULT_KEY_FILE = "key.json"


def cmd_keys_new(args: argparse.Namespace) -> int:
    path = Path(args.out)
    key = PrivateKey.generate()
    try:
        save_key(key, path)
    except FileExistsError:
        raise CliError(f"{path} already exists; refusing to overwrite a key (choose another --out)") from None
    except OSError as e:
        raise CliError(f"cannot write key file {path}: {e.strerror or e}") from None
    if args.json:
        _emit_json({"address": address_hex(key.address), "public_key": key.public_key.hex(), "file": str(path)})
    else:
        _rows([("Address", address_hex(key.address)), ("Key file", f"{path} (mode 0600: keep it secret)")])
    return 0


def cmd_keys_show(args: argparse.Namespace) -> int:
    key = load_key_spec(args.key)
    if not args.key.startswith("dev:"):
        mode = stat.S_IMODE(os.stat(args.key).st_mode)
        if mode & 0o077:
            print(f"warning: {args.key} is readable by other users (mode {mode:04o}); "
                  f"run: chmod 600 {args.key}", file=sys.stderr)
    out = {"address": address_hex(key.address), "public_key": key.public_key.hex()}
    if args.private:
        out["private_key"] = key.seed.hex()
    if args.json:
        _emit_json(out)
    else:
        rows = [("Address", out["address"]), ("Public key", out["public_key"])]
        if args.private:
            rows.append(("Private key", out["private_key"] + "  (never share it)"))
        _rows(rows)
    return 0


def cmd_devnet_accounts(args: argparse.Namespace) -> int:
    from ledger.genesis import DEVNET_BALANCE, devnet_keys
    keys = devnet_keys()
    if args.json:
        out = []
        for i, k in enumerate(keys):
            a = {"index": i, "key": f"dev:{i}", "address": address_hex(k.address),
                 "public_key": k.public_key.hex(), "genesis_balance": DEVNET_BALANCE}
            if args.private:
                a["private_key"] = k.seed.hex()
            out.append(a)
        _emit_json(out)
        return 0
    print(f"Devnet accounts (insecure dev keys, each funded with {format_grad(DEVNET_BALANCE)} at genesis)")
    for i, k in enumerate(keys):
        line = f"dev:{i}  {address_hex(k.address)}"
        if args.private:
            line += f"  key {k.seed.hex()}"
        print(line)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`keys new` and `keys show`."""
    keys = sub.add_parser("keys", help="create and inspect key files", parents=[common])
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", parser_class=_Parser)
    ksub.required = True
    kn = ksub.add_parser("new", help="create a key file (mode 0600; never overwrites)", parents=[common])
    kn.add_argument("--out", metavar="FILE", default=DEFAULT_KEY_FILE, help=f"key file (default ./{DEFAULT_KEY_FILE})")
    kn.set_defaults(func=cmd_keys_new)
    ks = ksub.add_parser("show", help="address and public key of a key file", parents=[common])
    ks.add_argument("key", metavar="FILE", help="key file (or dev:N)")
    ks.add_argument("--private", action="store_true", help="also print the private key (seed)")
    ks.set_defaults(func=cmd_keys_show)


def register_devnet(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`devnet accounts`."""
    d = sub.add_parser("devnet", help="devnet helpers", parents=[common])
    dsub = d.add_subparsers(dest="devnet_command", metavar="ACTION", parser_class=_Parser)
    dsub.required = True
    da = dsub.add_parser("accounts", help="the 10 prefunded devnet accounts (use them as dev:N)", parents=[common])
    da.add_argument("--private", action="store_true", help="also print their (public, insecure) private keys")
    da.set_defaults(func=cmd_devnet_accounts)
