"""Keys: `keys new` (an encrypted keystore, or plaintext with --insecure-plaintext), `keys show`,
and `devnet accounts` (the devnet's prefunded keys, dev:N)."""
from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from gradchain.cli.args import DEV_SEED_ENV, _Parser, load_key_spec
from gradchain.cli.errors import CliError
from gradchain.cli.output import _emit_json, _rows
from gradchain.units import format_grad
from ledger import keystore
from ledger.genesis import DEVNET_ACCOUNTS
from ledger.keys import PrivateKey, address_hex, read_keystore, save_key
from ledger.keystore import ask_password


DEFAULT_KEY_FILE = "key.json"


def cmd_keys_new(args: argparse.Namespace) -> int:
    path = Path(args.out)
    if path.exists():  # before asking a password for nothing
        raise CliError(f"{path} already exists; refusing to overwrite a key (choose another --out)")
    key = PrivateKey.generate()
    limits = keystore.LIMITS_BY_NAME[args.kdf_limits]
    try:
        password = None if args.insecure_plaintext else ask_password(path, args.password_file, new=True)
        save_key(key, path, password, limits)
    except keystore.KeystoreError as e:
        raise CliError(str(e)) from None
    except FileExistsError:
        raise CliError(f"{path} already exists; refusing to overwrite a key (choose another --out)") from None
    except OSError as e:
        raise CliError(f"cannot write key file {path}: {e.strerror or e}") from None
    kind = "plaintext (insecure)" if password is None else _keystore_text(limits)
    if args.json:
        _emit_json({"address": address_hex(key.address), "public_key": key.public_key.hex(), "file": str(path),
                    "encrypted": password is not None})
    else:
        _rows([("Address", address_hex(key.address)), ("Key file", f"{path} (mode 0600: keep it secret)"),
               ("Format", kind)])
    return 0


def _keystore_text(limits: keystore.Limits) -> str:
    m = limits.memlimit
    mem = f"{m >> 20} MiB" if m % (1 << 20) == 0 else f"{m >> 10} KiB" if m % 1024 == 0 else f"{m} bytes"
    return f"encrypted keystore (argon2id, opslimit {limits.opslimit}, memlimit {mem})"


def cmd_keys_show(args: argparse.Namespace) -> int:
    ks = None
    if not args.key.startswith("dev:"):
        try:
            ks = read_keystore(args.key) if Path(args.key).is_file() else None
        except ValueError as e:
            raise CliError(str(e)) from None
    if ks is not None and not args.private:  # the address is in clear: no password needed
        out = {"address": address_hex(ks.address), "public_key": ks.public_key.hex(), "encrypted": True}
    else:
        key = load_key_spec(args.key, args.password_file)
        out = {"address": address_hex(key.address), "public_key": key.public_key.hex(), "encrypted": ks is not None}
    if not args.key.startswith("dev:"):
        mode = stat.S_IMODE(os.stat(args.key).st_mode)
        if mode & 0o077:
            print(f"warning: {args.key} is readable by other users (mode {mode:04o}); "
                  f"run: chmod 600 {args.key}", file=sys.stderr)
    if args.private:
        out["private_key"] = key.seed.hex()
    if args.json:
        _emit_json(out)
    else:
        rows = [("Address", out["address"]), ("Public key", out["public_key"])]
        if ks is not None:
            rows.append(("Format", _keystore_text(ks.limits)))
        if args.private:
            rows.append(("Private key", out["private_key"] + "  (never share it)"))
        _rows(rows)
    return 0


def cmd_devnet_accounts(args: argparse.Namespace) -> int:
    from ledger.genesis import DEVNET_BALANCE, MAX_DEVNET_ACCOUNTS, devnet_keys
    if not 1 <= args.accounts <= MAX_DEVNET_ACCOUNTS:
        raise CliError(f"--accounts must be 1 to {MAX_DEVNET_ACCOUNTS}, not {args.accounts}")
    seed = args.seed if args.seed is not None else (os.environ.get(DEV_SEED_ENV) or None)
    keys = devnet_keys(args.accounts, seed)
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
    print(f"Devnet accounts (insecure dev keys{f', seed {seed!r}' if seed is not None else ''}; "
          f"a default devnet funds each with {format_grad(DEVNET_BALANCE)})")
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
    kn = ksub.add_parser("new", help="create an encrypted key file (mode 0600; never overwrites)",
                         parents=[common])
    kn.add_argument("--out", metavar="FILE", default=DEFAULT_KEY_FILE, help=f"key file (default ./{DEFAULT_KEY_FILE})")
    kn.add_argument("--insecure-plaintext", action="store_true",
                    help="TESTS AND DEVNETS ONLY: write the seed unencrypted (anyone who reads the file holds the key)")
    kn.add_argument("--kdf-limits", choices=sorted(keystore.LIMITS_BY_NAME), default="moderate",
                    help="argon2id cost: moderate (default: 256 MiB, ~0.7 s per use), interactive (64 MiB, "
                         "~0.1 s), min (TESTS ONLY: 8 KiB, no protection against guessing)")
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
    da = dsub.add_parser("accounts", help="the prefunded devnet accounts (use them as dev:N)", parents=[common])
    da.add_argument("--accounts", type=int, default=DEVNET_ACCOUNTS, metavar="N",
                    help=f"how many (default {DEVNET_ACCOUNTS}; node.py --accounts)")
    da.add_argument("--seed", metavar="PHRASE", default=None,
                    help=f"the phrase of a devnet started with node.py --seed (default ${DEV_SEED_ENV}, "
                         "else the public labels); dev:N in every command reads the same variable")
    da.add_argument("--private", action="store_true", help="also print their (public, insecure) private keys")
    da.set_defaults(func=cmd_devnet_accounts)
