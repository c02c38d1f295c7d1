"""Contracts: `deploy`, `send` (a call in a transaction), `call` (free, read-only), `storage`
(its Merkle proof checked with --prove) and `events`; contract values in and out as JSON."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gradchain.cli.args import (_nonneg_int, _positive_seconds, load_key_spec, parse_address_spec, parse_amount,
                                parse_contract_arg)
from gradchain.cli.errors import CliError, _send_tx
from gradchain.cli.output import _emit_json, _rows
from gradchain.client import Client, json_arg
from gradchain.units import format_grad
from ledger.keys import address_hex
from vm.json_values import to_json


def _value_text(v: Any) -> str:
    """A contract value for people: its JSON view (bytes as 0x-hex, Decimal as a str)."""
    return json.dumps(to_json(v))


def _receipt_rows(r: dict, gas_price: int) -> list[tuple[str, Any]]:
    rc = r["receipt"]
    rows: list[tuple[str, Any]] = [("Hash", r["hash"]), ("Block", r["height"]), ("Status", rc["status"]),
                                   ("Gas used", rc["gas_used"]), ("Fee", format_grad(rc["gas_used"] * gas_price))]
    compile_gas = (r.get("estimate") or {}).get("ml_compile_gas", 0)
    if compile_gas:  # where a user first meets ML_COMPILE: say what it is
        rows.append(("ML compile", f"{compile_gas} of the estimated gas is ML_COMPILE, paid once per ML program on "
                                   f"its first use on chain (later uses do not pay it)"))
    for e in rc["events"]:
        rows.append(("Event", f"{e['name']} {json.dumps(e['data'])}  ({e['contract']})"))
    for line in rc["logs"]:
        rows.append(("Print", line))
    return rows


def _committed_json(r: dict) -> dict:
    out = dict(r)
    if "result" in out:
        out["result"] = to_json(out["result"])
    return out


def _read_source(path: str) -> str:
    f = Path(path)
    if not f.is_file():
        raise CliError(f"contract file {path} does not exist" if not f.exists() else f"{path} is not a file")
    try:
        return f.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CliError(f"contract file {path} is not UTF-8 text") from None
    except OSError as e:
        raise CliError(f"cannot read contract file {path}: {e.strerror or e}") from None


def cmd_deploy(args: argparse.Namespace, client: Client) -> int:
    key = load_key_spec(args.key, args.password_file)
    source = _read_source(args.file)
    cargs = [parse_contract_arg(a) for a in args.args]
    value = parse_amount(args.value) if args.value is not None else 0
    r = _send_tx(args, lambda: client.deploy(key, source, cargs, value=value, gas_limit=args.gas,
                                             gas_price=args.gas_price, nonce=args.nonce, timeout=args.timeout))
    if args.json:
        _emit_json(r)
    else:
        _rows([("Address", r["address"])] + _receipt_rows(r, args.gas_price))
    return 0


def cmd_send(args: argparse.Namespace, client: Client) -> int:
    key = load_key_spec(args.key, args.password_file)
    contract = parse_address_spec(args.contract, "contract address")
    cargs = [parse_contract_arg(a) for a in args.args]
    value = parse_amount(args.value) if args.value is not None else 0
    r = _send_tx(args, lambda: client.send(key, contract, args.function, *cargs, value=value, gas_limit=args.gas,
                                           gas_price=args.gas_price, nonce=args.nonce, wait=not args.no_wait,
                                           timeout=args.timeout))
    if args.no_wait:
        if args.json:
            _emit_json({"hash": r["hash"], "status": "pending"})
        else:
            _rows([("Hash", r["hash"]), ("Status", "pending (admitted to the mempool)")])
        return 0
    if args.json:
        _emit_json(_committed_json(r))
    else:
        _rows([("Result", _value_text(r["result"]))] + _receipt_rows(r, args.gas_price))
    return 0


def cmd_call(args: argparse.Namespace, client: Client) -> int:
    contract = parse_address_spec(args.contract, "contract address")
    sender = parse_address_spec(args.sender, "--from address") if args.sender else None
    cargs = [parse_contract_arg(a) for a in args.args]
    params: dict[str, Any] = {"contract": address_hex(contract), "function": args.function,
                              "args": [json_arg(a) for a in cargs]}
    if args.height is not None:
        params["height"] = args.height
    if sender is not None:
        params["sender"] = address_hex(sender)
    r = client.call("call", params)
    if args.json:
        _emit_json(r)
        return 0
    print(json.dumps(r["result"]))
    for line in r["logs"]:
        print(f"print: {line}", file=sys.stderr)
    return 0


def cmd_storage(args: argparse.Namespace, client: Client) -> int:
    contract = parse_address_spec(args.contract, "contract address")
    parts = [parse_contract_arg(k) for k in args.key]
    key = parts[0] if len(parts) == 1 else tuple(parts)
    info = client.storage_info(contract, key, height=args.height, prove=args.prove)
    if args.json:
        out: dict[str, Any] = {"contract": info.contract, "key": to_json(key), "value": to_json(info.value),
                               "present": info.present, "height": info.height}
        if args.prove:
            out["proof_verified"] = True
            out["state_root"] = info.state_root
        _emit_json(out)
        return 0
    print(_value_text(info.value) if info.present else "null  (not set)")
    if args.prove:
        print(f"proof verified against the state root {info.state_root} of block {info.height}")
    return 0


def cmd_events(args: argparse.Namespace, client: Client) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.contract:
        params["contract"] = address_hex(parse_address_spec(args.contract, "contract address"))
    for k, v in (("name", args.name), ("from_height", args.from_height), ("to_height", args.to_height)):
        if v is not None:
            params[k] = v
    r = client.call("events", params)
    if args.json:
        _emit_json(r)
        return 0
    for e in r["events"]:
        print(f"block {e['height']}  tx {e['tx_hash'][:16]}  {e['contract']}  {e['name']}  {json.dumps(e['data'])}")
    span = f"blocks {r['from_height']}..{r['to_height']}"
    if r["truncated"]:
        print(f"{len(r['events'])} events in {span}; more follow: continue with --from {r['to_height'] + 1}")
    elif not r["events"]:
        print(f"no events in {span}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`deploy`, `send`, `call`, `storage` and `events`."""
    contract_args = ("ARGS: each is 0x-hex bytes (addresses), dev:N (that account's address), else JSON "
                     '(10, true, null, "text", [1, 2], {"bytes": "0x.."}, {"decimal": "1.5"}, {"tuple": [..]}), '
                     "else a plain string. Quote strings that look like numbers: '\"10\"'.")

    def tx_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--key", required=True, help="sender key file, or dev:N")
        sp.add_argument("--value", metavar="AMOUNT", help="GRAD sent with it (1.5, or 1500000000u); default 0")
        sp.add_argument("--gas", type=_nonneg_int, metavar="N",
                        help="gas limit (default: simulated by the node, plus 25%%)")
        sp.add_argument("--gas-price", type=_nonneg_int, default=1, metavar="N", help="base units per gas (default 1)")
        sp.add_argument("--nonce", type=_nonneg_int, metavar="N", help="default: the sender's next pending nonce")
        sp.add_argument("--timeout", type=_positive_seconds, default=30.0, metavar="S",
                        help="seconds to wait for the commit (default 30)")

    dp = sub.add_parser("deploy", help="deploy a contract from a file and print its address", parents=[common],
                        epilog=contract_args)
    dp.add_argument("file", metavar="FILE", help="the contract's Python source")
    dp.add_argument("args", nargs="*", metavar="ARGS", help="constructor arguments")
    tx_options(dp)
    dp.set_defaults(func=cmd_deploy, needs_client=True)

    sd = sub.add_parser("send", help="call a contract function in a transaction", parents=[common],
                        epilog=contract_args)
    sd.add_argument("contract", metavar="CONTRACT", help="contract address")
    sd.add_argument("function", metavar="FUNCTION")
    sd.add_argument("args", nargs="*", metavar="ARGS")
    tx_options(sd)
    sd.add_argument("--no-wait", action="store_true", help="return once the mempool admitted it")
    sd.set_defaults(func=cmd_send, needs_client=True)

    cl = sub.add_parser("call", help="a free read-only call of a contract function", parents=[common],
                        epilog=contract_args)
    cl.add_argument("contract", metavar="CONTRACT", help="contract address")
    cl.add_argument("function", metavar="FUNCTION")
    cl.add_argument("args", nargs="*", metavar="ARGS")
    cl.add_argument("--height", type=_nonneg_int, metavar="H",
                    help="against the state after this block (default latest)")
    cl.add_argument("--from", dest="sender", metavar="ADDRESS", help="ctx.sender (default the zero address), or dev:N")
    cl.set_defaults(func=cmd_call, needs_client=True)

    st = sub.add_parser("storage", help="a contract's stored value", parents=[common],
                        epilog="KEY: one part is the key; several parts are a tuple key, as in the contract's "
                               "storage[\"balance\", owner]. Each part is read like a contract argument (see "
                               "gradchain send --help).")
    st.add_argument("contract", metavar="CONTRACT", help="contract address")
    st.add_argument("key", nargs="+", metavar="KEY")
    st.add_argument("--height", type=_nonneg_int, metavar="H", help="at this block (default latest)")
    st.add_argument("--prove", action="store_true", help="verify the Merkle proof against the block's state root")
    st.set_defaults(func=cmd_storage, needs_client=True)

    ev = sub.add_parser("events", help="events of committed transactions, oldest first", parents=[common])
    ev.add_argument("--contract", metavar="ADDRESS", help="only this contract's")
    ev.add_argument("--name", help="only events of this name")
    ev.add_argument("--from", dest="from_height", type=_nonneg_int, metavar="H",
                    help="first block (default: the last 10,000 blocks)")
    ev.add_argument("--to", dest="to_height", type=_nonneg_int, metavar="H", help="last block (default latest)")
    ev.add_argument("--limit", type=_nonneg_int, default=1000, metavar="N", help="at most N events (default 1000)")
    ev.set_defaults(func=cmd_events, needs_client=True)
