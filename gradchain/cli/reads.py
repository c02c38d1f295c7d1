"""Chain reads: `status`, `block`, `tx`, `balance` (its Merkle proof checked with --prove),
and `rpc`, any JSON-RPC method with its JSON result."""
from __future__ import annotations

import argparse
import json
from typing import Any

from gradchain.cli.args import _nonneg_int, parse_address_spec, parse_hash
from gradchain.cli.errors import CliError
from gradchain.cli.output import _emit_json, _rows, _time
from gradchain.client import Client
from gradchain.tracing import trace_text
from gradchain.units import format_grad


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    s = client.status()
    if args.json:
        _emit_json(s)
        return 0
    _rows([("Chain id", s["chain_id"]), ("Height", s["height"]), ("Latest block", s["latest_block_hash"]),
           ("Block time", _time(s["latest_block_time_ms"])), ("Genesis hash", s["genesis_hash"]),
           ("Validator", s["validator"]), ("Mempool", f"{s['mempool_size']} transactions"),
           ("Node version", s["node_version"]), ("RPC", client.url)])
    return 0


def _tx_line(t: dict) -> str:
    if t.get("kind") == "transfer":
        what = f"transfer {t['from']} -> {t['to']}  {format_grad(t['amount'])}"
    else:
        what = f"{t.get('kind')} from {t['from']}"
    return f"{t['hash']}  {what}  nonce {t['nonce']}  gas {t['gas_limit']} @ {t['gas_price']}"


def cmd_block(args: argparse.Namespace, client: Client) -> int:
    height: int | None = None
    if args.height is not None and args.height != "latest":
        try:
            height = _nonneg_int(args.height)
        except argparse.ArgumentTypeError:
            raise CliError(f"bad height {args.height!r}: expected a block number or 'latest'") from None
    if args.hash is not None and args.height is not None:
        raise CliError("give a HEIGHT or --hash, not both")
    b = client.block(height=height, hash=parse_hash(args.hash, "block hash") if args.hash else None,
                     full=args.full)
    if args.json:
        _emit_json(b)
        return 0
    h = b["header"]
    print(f"Block {h['height']}  {h['hash']}")
    _rows([("Time", _time(h["time_ms"])), ("Parent", h["parent_hash"]), ("Proposer", h["proposer"]),
           ("State root", h["state_root"]), ("Tx root", h["tx_root"]), ("Receipts root", h["receipts_root"]),
           ("Validators", h["validators_hash"]), ("Committed", "yes" if b.get("commit") else "no"),
           ("Transactions", len(b["tx_hashes"]))], indent="  ")
    if args.full:
        for t in b.get("txs", []):
            print(f"    {_tx_line(t)}")
    else:
        for th in b["tx_hashes"]:
            print(f"    {th}")
    return 0


def _short(value: Any, limit: int = 60) -> str:
    """A call argument as JSON, cut to `limit` characters (a tensor's data can be long)."""
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _failure(receipt: dict) -> str:
    """`revert: insufficient balance (in move, line 130, contract 0x8d45...)`: the code, the
    reason, and where it failed, as the CLI says it when a send fails."""
    f = receipt.get("failure") or {}
    where = [f"in {f['function']}"] if f.get("function") else []
    if f.get("line"):
        where.append(f"line {f['line']}")
    if f.get("contract"):
        where.append(f"contract {f['contract']}")
    text = (f"{f['code']}: " if f.get("code") else "") + receipt["error"]
    return text + (f" ({', '.join(where)})" if where else "")


def cmd_tx(args: argparse.Namespace, client: Client) -> int:
    if args.trace:
        trace = client.trace_tx(parse_hash(args.hash, "transaction hash"))
        if args.json:
            _emit_json(trace)
        else:
            print(f"Transaction {trace['hash']}  block {trace['height']}, index {trace['index']}")
            print(trace_text(trace))
        return 0
    r = client.tx(parse_hash(args.hash, "transaction hash"))
    if args.json:
        _emit_json(r)
        return 0
    t = r["tx"]
    rows: list[tuple[str, Any]] = [("Hash", r["hash"]), ("Status", r["status"])]
    if r["status"] == "committed":
        rc = r["receipt"]
        rows += [("Block", r["height"]), ("Index", r["index"]), ("Result", rc["status"])]
        if rc.get("error"):
            rows.append(("Error", _failure(rc)))
        rows += [("Gas used", rc["gas_used"]), ("Fee", format_grad(rc["gas_used"] * t["gas_price"]))]
    rows += [("Kind", t["kind"]), ("From", t["from"])]
    if t["kind"] == "transfer":
        rows += [("To", t["to"]), ("Amount", f"{format_grad(t['amount'])}  ({t['amount']} units)")]
    elif t["kind"] in ("bond", "unbond"):
        rows.append(("Amount", f"{format_grad(t['amount'])}  ({t['amount']} units)"))
    elif t["kind"] == "call":
        args_text = ", ".join(_short(a) for a in t.get("args") or [])
        rows.append(("Called", f"{t['function']}({args_text}) on {t['to']}"
                               + (f", sending {format_grad(t['value'])}" if t.get("value") else "")))
    elif t["kind"] == "evidence":
        ev = t["evidence"]
        rows.append(("Evidence", f"{ev['validator']} signed two blocks at height {ev['height']}, round {ev['round']}"))
    rows += [("Nonce", t["nonce"]), ("Gas limit", t["gas_limit"]), ("Gas price", t["gas_price"]),
             ("Chain id", t["chain_id"])]
    _rows(rows)
    return 0


def cmd_balance(args: argparse.Namespace, client: Client) -> int:
    addr = parse_address_spec(args.address)
    info = client.account(addr, height=args.height, prove=args.prove)
    root = client.block(height=info.height)["header"]["state_root"] if args.prove else None
    if args.json:
        out: dict[str, Any] = {"address": info.address, "balance": info.balance, "nonce": info.nonce,
                               "height": info.height}
        if info.pending_nonce is not None:
            out["pending_nonce"] = info.pending_nonce
        if args.prove:
            out["proof_verified"] = True
            out["state_root"] = root
        _emit_json(out)
        return 0
    rows: list[tuple[str, Any]] = [("Address", info.address),
                                   ("Balance", f"{format_grad(info.balance)}  ({info.balance} units)"),
                                   ("Nonce", info.nonce)]
    if info.pending_nonce is not None and info.pending_nonce != info.nonce:
        rows.append(("Pending nonce", info.pending_nonce))
    rows.append(("Height", info.height))
    _rows(rows)
    if args.prove:
        print(f"proof verified against the state root {root} of block {info.height}")
    return 0


def _rpc_param(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # a bare word such as a hash or an address


def cmd_rpc(args: argparse.Namespace) -> int:
    params: Any
    if len(args.params) == 1 and args.params[0].lstrip()[:1] in ("[", "{"):
        try:
            params = json.loads(args.params[0])
        except ValueError as e:
            raise CliError(f"bad PARAMS_JSON {args.params[0]!r}: not JSON ({e})") from None
    else:
        params = [_rpc_param(p) for p in args.params]
    timeout = 60.0
    if isinstance(params, dict) and isinstance(params.get("timeout"), (int, float)):
        timeout = max(timeout, float(params["timeout"]) + 10)
    with Client(args.rpc_url) as c:
        _emit_json(c.call(args.method, params, timeout=timeout))
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`balance`, `status`, `block` and `tx`."""
    b = sub.add_parser("balance", help="balance and nonce of an account", parents=[common])
    b.add_argument("address", metavar="ADDRESS", help="0x + 40 hex digits, or dev:N")
    b.add_argument("--height", type=_nonneg_int, metavar="H", help="at this block (default latest)")
    b.add_argument("--prove", action="store_true", help="verify the Merkle proof against the block's state root")
    b.set_defaults(func=cmd_balance, needs_client=True)

    s = sub.add_parser("status", help="chain id, height and latest block of the node", parents=[common])
    s.set_defaults(func=cmd_status, needs_client=True)

    bl = sub.add_parser("block", help="a block by height (default latest) or hash", parents=[common])
    bl.add_argument("height", nargs="?", metavar="HEIGHT", help="block number or 'latest' (default)")
    bl.add_argument("--hash", metavar="H", help="block hash instead of a height")
    bl.add_argument("--full", action="store_true", help="include the decoded transactions")
    bl.set_defaults(func=cmd_block, needs_client=True)

    tx = sub.add_parser("tx", help="a transaction and its receipt", parents=[common])
    tx.add_argument("hash", metavar="HASH")
    tx.add_argument("--trace", action="store_true",
                    help="re-execute it and print its call tree: calls, gas, events, print output, ml calls")
    tx.set_defaults(func=cmd_tx, needs_client=True)


def register_rpc(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`rpc METHOD [PARAMS...]`."""
    r = sub.add_parser("rpc", help="call any JSON-RPC method and print the JSON result", parents=[common],
                       description="Call a JSON-RPC method. One PARAMS_JSON array or object is sent as "
                                   "the params; otherwise each argument is one positional param (parsed as "
                                   "JSON when it is JSON, else sent as a string).")
    r.add_argument("method", metavar="METHOD")
    r.add_argument("params", nargs="*", metavar="PARAMS_JSON")
    r.set_defaults(func=cmd_rpc)
