"""Transfers: `transfer`, GRAD from a key to an address, waiting for the commit."""
from __future__ import annotations

import argparse
from typing import Any

from gradchain.cli.args import _nonneg_int, _positive_seconds, load_key_spec, parse_address_spec, parse_amount
from gradchain.cli.errors import CliError
from gradchain.cli.output import _emit_json, _rows
from gradchain.client import Client
from gradchain.errors import CommitTimeout
from gradchain.units import format_grad
from ledger.keys import address_hex


def cmd_transfer(args: argparse.Namespace, client: Client) -> int:
    key = load_key_spec(args.key, args.password_file)
    to = parse_address_spec(args.to, "recipient address")
    amount = parse_amount(args.amount)
    try:
        r = client.transfer(key, to, amount, wait=not args.no_wait, gas_price=args.gas_price,
                            nonce=args.nonce, timeout=args.timeout)
    except CommitTimeout as e:
        h = (e.data or {}).get("hash", "")
        raise CliError(f"transaction {h} was admitted but not committed within {args.timeout:g} s; "
                       f"check it later with: gradchain tx {h}") from None
    if args.no_wait:
        if args.json:
            _emit_json({"hash": r["hash"], "status": "pending"})
        else:
            _rows([("Hash", r["hash"]), ("Status", "pending (admitted to the mempool)")])
        return 0
    rc = r["receipt"]
    if args.json:
        _emit_json(r)
    else:
        rows: list[tuple[str, Any]] = [("Hash", r["hash"]), ("Block", r["height"]), ("Status", rc["status"])]
        if rc.get("error"):
            rows.append(("Error", rc["error"]))
        rows += [("Gas used", rc["gas_used"]), ("Fee", format_grad(rc["gas_used"] * args.gas_price)),
                 ("From", address_hex(key.address)), ("To", address_hex(to)), ("Amount", format_grad(amount))]
        _rows(rows)
    if rc["status"] != "success":
        raise CliError(f"transaction {r['hash']} failed in block {r['height']}: {rc.get('error') or 'no reason given'}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`transfer`."""
    t = sub.add_parser("transfer", help="send GRAD and wait for the commit", parents=[common])
    t.add_argument("--key", required=True, help="sender key file, or dev:N")
    t.add_argument("--to", required=True, metavar="ADDRESS", help="recipient address (0x + 40 hex), or dev:N")
    t.add_argument("--amount", required=True, help="GRAD (1.5) or base units (1500000000u)")
    t.add_argument("--no-wait", action="store_true", help="return once the mempool admitted it")
    t.add_argument("--gas-price", type=_nonneg_int, default=1, metavar="N", help="base units per gas (default 1)")
    t.add_argument("--nonce", type=_nonneg_int, metavar="N", help="default: the sender's next pending nonce")
    t.add_argument("--timeout", type=_positive_seconds, default=30.0, metavar="S",
                   help="seconds to wait for the commit (default 30)")
    t.set_defaults(func=cmd_transfer, needs_client=True)
