"""Reading the command line: the argparse parser that fails as one `error:` line, and the
argument values every group takes (amounts, keys, addresses, hashes, integers, seconds,
contract arguments), each refused as a CliError or an argparse type error."""
from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any, NoReturn

from gradchain import units
from gradchain.cli.errors import CliError
from ledger.keys import PrivateKey, load_key, parse_address
from ledger.keystore import ask_password
from ledger.tx import U64_MAX
from vm.errors import VMError
from vm.intstr import str_to_int
from vm.json_values import from_json_arg


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one `error:` line with exit status 1."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see: {self.prog} --help)")


def parse_amount(text: str) -> int:
    """gradchain.units.parse_amount, failing as a CliError (one `error:` line)."""
    try:
        return units.parse_amount(text)
    except units.AmountError as e:
        raise CliError(str(e)) from None


DEV_SEED_ENV = "GRADCHAIN_DEV_SEED"  # the phrase of a devnet started with node.py --seed


def _dev_index(spec: str) -> int:
    from ledger.genesis import MAX_DEVNET_ACCOUNTS
    n = spec[4:]
    if not n.isdigit() or not 0 <= int(n) < MAX_DEVNET_ACCOUNTS:
        raise CliError(f"bad devnet account {spec!r}: use dev:0 to dev:{MAX_DEVNET_ACCOUNTS - 1}")
    return int(n)


def dev_key(spec: str) -> PrivateKey:
    """dev:N: devnet account N's key, from the phrase in $GRADCHAIN_DEV_SEED when the devnet
    was started with --seed (else the public labels every default devnet uses)."""
    from ledger.genesis import devnet_key
    return devnet_key(_dev_index(spec), os.environ.get(DEV_SEED_ENV) or None)


def load_key_spec(spec: str, password_file: Path | None = None) -> PrivateKey:
    """A key file path, or dev:N for devnet account N.  An encrypted keystore's password comes
    from `password_file` (--password-file), else $GRADCHAIN_PASSWORD, else the terminal."""
    if spec.startswith("dev:"):
        return dev_key(spec)
    path = Path(spec)
    if not path.exists():
        raise CliError(f"key file {spec} does not exist (give a key file or dev:N)")
    if path.is_dir():
        raise CliError(f"key file {spec} is a directory")
    try:
        return load_key(path, password=lambda p: ask_password(p, password_file))
    except ValueError as e:  # UnicodeDecodeError and keystore errors (a wrong password) included
        msg = str(e)
        raise CliError(msg if spec in msg else f"cannot use key file {spec}: {msg}") from None


def parse_address_spec(spec: str, what: str = "address") -> bytes:
    """0x + 40 hex digits, or dev:N for devnet account N's address."""
    if spec.startswith("dev:"):
        return dev_key(spec).address
    try:
        return parse_address(spec)
    except ValueError as e:
        raise CliError(f"bad {what} {spec!r}: {e}") from None


def parse_hash(text: str, what: str) -> str:
    s = text[2:] if text[:2].lower() == "0x" else text
    if len(s) != 64 or not re.fullmatch(r"[0-9a-fA-F]*", s):
        raise CliError(f"bad {what} {text!r}: expected 64 hex digits")
    return s.lower()


def _nonneg_int(text: str) -> int:
    try:
        v = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if not 0 <= v <= U64_MAX:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer below 2**64, got {text!r}")
    return v


_HEX_BYTES_RE = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_INT_RE = re.compile(r"-?[0-9]+")


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON: the text stays a str


def parse_contract_arg(text: str) -> Any:
    """One command-line argument as a contract value, by the first rule that applies:

    1. `0x` and an even number of hex digits -> bytes (`0x` alone is b""); addresses are
       bytes in contracts, so `0x6eec...a22a` is a 20-byte address;
    2. `dev:N` -> devnet account N's address, as bytes (dev_key);
    3. valid JSON -> that value, read as vm.json_values.from_json_arg reads it: integers
       (any size a contract allows), true/false, null, "a quoted string", arrays (lists)
       and objects (dicts with str keys), and the tagged objects {"bytes": "0x.."},
       {"decimal": "1.5"}, {"tuple": [...]}, {"dict": [[key, value], ...]}.  Inside
       JSON, "0x.." stays a str: nested bytes are {"bytes": "0x.."}.  A fraction such
       as 1.5 is refused (give {"decimal": "1.5"});
    4. anything else -> the text as a str (`hello`, `0x123` with an odd digit count).
    So a str that looks like a number, JSON or hex must be quoted as JSON: '"10"'.
    """
    if _HEX_BYTES_RE.fullmatch(text):
        return bytes.fromhex(text[2:])
    if text.startswith("dev:") and text[4:].isdigit():
        return parse_address_spec(text)
    try:
        if _INT_RE.fullmatch(text):  # json.loads refuses ints over CPython's digit limit
            return str_to_int(text)
        try:
            parsed = json.loads(text, parse_constant=_no_constant)
        except ValueError:
            return text
        return from_json_arg(parsed)
    except VMError as e:
        raise CliError(f"bad contract argument {text!r}: {e.message}") from None


def _positive_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < v <= 600:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 600], got {text!r}")
    return v
