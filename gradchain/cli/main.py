"""`gradchain`: the command line for a gradchain node (keys, transfers, contracts, reads,
raw RPC).

    gradchain keys new --out alice.json
    gradchain transfer --key dev:0 --to 0x... --amount 1.5
    gradchain balance 0x... --prove
    gradchain deploy token.py 1000000 --key dev:0
    gradchain send 0xCONTRACT transfer_to dev:1 10 --key dev:0
    gradchain call 0xCONTRACT balance_of dev:1
    gradchain storage 0xCONTRACT balance dev:1 --prove
    gradchain events --contract 0xCONTRACT --name Transfer
    gradchain bond --key dev:1 --amount 1000 | unbond --key dev:1 --amount 400
    gradchain validators [--height H] | evidence --key dev:2 FILE
    gradchain status | block [HEIGHT] | tx HASH | rpc METHOD [PARAMS...]
    gradchain devnet accounts
    gradchain testnet -n 4 --out DIR

Amounts are GRAD with up to 9 decimals (`1.5`), or base units with a `u` suffix
(`1500000000u`); they are parsed and printed with integer arithmetic only.  Contract
arguments are read by `parse_contract_arg` (its docstring is the rule).  Output is
text for people, or JSON with `--json`.  Every failure is one line on stderr starting
with `error:` and exit status 1; a failed contract run names its reason, function and
source line.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn, Sequence

from gradchain import units
from gradchain.client import DEFAULT_URL, Client, Validators, json_arg
from gradchain.errors import (CommitTimeout, ConnectionFailed, ContractFailed, NotFound, ProofError, RpcError,
                              StakingFailed, TxRejected)
from gradchain.units import format_grad
from ledger.keys import PrivateKey, address_hex, address_of, load_key, parse_address, save_key
from ledger.tx import U64_MAX
from vm.errors import VMError
from vm.intstr import str_to_int
from vm.json_values import from_json_arg, to_json

DEFAULT_KEY_FILE = "key.json"
ENV_RPC = "GRADCHAIN_RPC"


class CliError(Exception):
    """A failure to report as one `error:` line (exit status 1)."""


# ---- amounts ----------------------------------------------------------------------------

def parse_amount(text: str) -> int:
    """gradchain.units.parse_amount, failing as a CliError (one `error:` line)."""
    try:
        return units.parse_amount(text)
    except units.AmountError as e:
        raise CliError(str(e)) from None


# ---- argument values --------------------------------------------------------------------

def _dev_index(spec: str) -> int:
    from ledger.genesis import DEVNET_ACCOUNTS
    n = spec[4:]
    if not n.isdigit() or not 0 <= int(n) < DEVNET_ACCOUNTS:
        raise CliError(f"bad devnet account {spec!r}: use dev:0 to dev:{DEVNET_ACCOUNTS - 1}")
    return int(n)


def load_key_spec(spec: str) -> PrivateKey:
    """A key file path, or dev:N for devnet account N."""
    if spec.startswith("dev:"):
        from ledger.genesis import devnet_keys
        return devnet_keys()[_dev_index(spec)]
    path = Path(spec)
    if not path.exists():
        raise CliError(f"key file {spec} does not exist (give a key file or dev:N)")
    if path.is_dir():
        raise CliError(f"key file {spec} is a directory")
    try:
        return load_key(path)
    except ValueError as e:  # UnicodeDecodeError included
        msg = str(e)
        raise CliError(msg if spec in msg else f"cannot use key file {spec}: {msg}") from None


def parse_address_spec(spec: str, what: str = "address") -> bytes:
    """0x + 40 hex digits, or dev:N for devnet account N's address."""
    if spec.startswith("dev:"):
        from ledger.genesis import devnet_keys
        return devnet_keys()[_dev_index(spec)].address
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
    2. `dev:N` (N = 0..9) -> devnet account N's address, as bytes;
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


# ---- output -----------------------------------------------------------------------------

def _emit_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def _rows(rows: Sequence[tuple[str, Any]], indent: str = "") -> None:
    width = max(len(k) for k, _ in rows) + 1
    for k, v in rows:
        print(f"{indent}{k + ':':<{width}} {v}")


def _time(ms: int) -> str:
    t = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return f"{t:%Y-%m-%d %H:%M:%S}.{ms % 1000:03d} UTC"


# ---- commands ---------------------------------------------------------------------------

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


def cmd_tx(args: argparse.Namespace, client: Client) -> int:
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
            rows.append(("Error", rc["error"]))
        rows += [("Gas used", rc["gas_used"]), ("Fee", format_grad(rc["gas_used"] * t["gas_price"]))]
    rows += [("Kind", t["kind"]), ("From", t["from"])]
    if t["kind"] == "transfer":
        rows += [("To", t["to"]), ("Amount", f"{format_grad(t['amount'])}  ({t['amount']} units)")]
    elif t["kind"] in ("bond", "unbond"):
        rows.append(("Amount", f"{format_grad(t['amount'])}  ({t['amount']} units)"))
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


def cmd_transfer(args: argparse.Namespace, client: Client) -> int:
    key = load_key_spec(args.key)
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


# ---- staking ------------------------------------------------------------------------------

def _share(stake: int, total: int) -> str:
    """stake / total as a percentage with 4 decimals, in integer arithmetic."""
    if not total:
        return "-"
    part = stake * 100 * 10**4 // total
    if part == 0 and stake:
        return "<0.0001%"
    return f"{part // 10**4}.{part % 10**4:04d}%"


def _unbonding_blocks(client: Client) -> int:
    return client.call("genesis")["genesis"]["params"]["unbonding_blocks"]


def _pending(args: argparse.Namespace, r: dict) -> int:
    if args.json:
        _emit_json({"hash": r["hash"], "status": "pending"})
    else:
        _rows([("Hash", r["hash"]), ("Status", "pending (admitted to the mempool)")])
    return 0


def _staking_amount(text: str) -> int:
    amount = parse_amount(text)
    if amount == 0:
        raise CliError(f"bad amount {text!r}: a staked amount must be more than 0")
    return amount


def _staking_text(e: StakingFailed) -> str:
    return f"{e.message}; transaction {e.tx_hash} failed in block {e.height}, fee paid ({e.gas_used} gas)"


def _send_staking_tx(args: argparse.Namespace, what: str, send: Any) -> dict:
    """_send_tx, and a refusal by the chain named with what was asked (amounts in the
    chain's reason are base units)."""
    try:
        return _send_tx(args, send)
    except StakingFailed as e:
        raise CliError(f"{what} failed: {_staking_text(e)}") from None


def _addresses_with_a_node(client: Client) -> set[str]:
    """The validators the CLI can tell run a node: the one it talks to (status), and those
    the genesis file gives a p2p address (`peers`; `gradchain testnet` lists every one)."""
    out = {client.status()["validator"]}
    for entry in client.call("genesis")["genesis"].get("peers", []):
        try:
            out.add(address_hex(address_of(bytes.fromhex(entry.split("@", 1)[0]))))
        except ValueError:
            continue  # a malformed entry names no key: the node refuses it too
    return out


def bond_stall_warning(client: Client, key: PrivateKey, amount: int) -> str | None:
    """Why this bond would stop the chain, or None: when validators with no node the CLI
    knows of hold 1/3 or more of the stake, the others never reach the > 2/3 quorum."""
    stake = {v.address: v.stake for v in client.validators().bonded}
    me = address_hex(key.address)
    stake[me] = stake.get(me, 0) + amount
    running = _addresses_with_a_node(client)
    idle = sorted(a for a in stake if a not in running)
    idle_stake, total = sum(stake[a] for a in idle), sum(stake.values())
    if 3 * idle_stake < total:
        return None
    return (f"after this bond {', '.join(idle)} would hold {100 * idle_stake / total:.1f}% of the stake with no "
            f"running node known to {client.url} (the genesis peers and this node's validator): at 1/3 or more "
            "the other validators cannot finalise blocks and the chain stops until those keys run nodes")


def _confirm_bond(args: argparse.Namespace, client: Client, key: PrivateKey, amount: int) -> None:
    """Refuse a bond that would stop the chain unless --force (or a yes on a terminal)."""
    warning = None if args.force else bond_stall_warning(client, key, amount)
    if warning is None:
        return
    if sys.stdin.isatty() and not args.json:
        print(f"warning: {warning}", file=sys.stderr)
        if input("Bond anyway? [y/N] ").strip().lower() in ("y", "yes"):
            return
        raise CliError("bond not sent")
    raise CliError(f"{warning}; start a node for the key first, or pass --force to bond anyway")


def _stake_cmd(args: argparse.Namespace, client: Client, action: str) -> int:
    """bond and unbond: send, then say the stake now and from which block it counts."""
    key = load_key_spec(args.key)
    amount = _staking_amount(args.amount)
    if action == "bond":
        _confirm_bond(args, client, key, amount)
    send = client.bond if action == "bond" else client.unbond
    r = _send_staking_tx(args, f"{action} of {format_grad(amount)} ({amount} units)",
                         lambda: send(key, amount, wait=not args.no_wait, gas_price=args.gas_price,
                                      nonce=args.nonce, timeout=args.timeout))
    if args.no_wait:
        return _pending(args, r)
    h, me = r["height"], address_hex(key.address)
    stake = client.validators(h).bonded_stake_of(me)
    out = dict(r, validator=me, amount=amount, stake=stake, signs_from=h + 2)
    if action == "unbond":
        out["paid_back_at"] = h + _unbonding_blocks(client)
    if args.json:
        _emit_json(out)
        return 0
    rc = r["receipt"]
    rows: list[tuple[str, Any]] = [("Hash", r["hash"]), ("Block", h), ("Status", rc["status"]),
                                   ("Gas used", rc["gas_used"]), ("Fee", format_grad(rc["gas_used"] * args.gas_price)),
                                   ("Validator", me),
                                   ("Bonded" if action == "bond" else "Unbonded", format_grad(amount)),
                                   ("Stake", f"{format_grad(stake)}  (signing with it from block {h + 2})")]
    if action == "unbond":
        rows.append(("Paid back", f"{format_grad(amount)} at the end of block {out['paid_back_at']}"))
    _rows(rows)
    return 0


def cmd_bond(args: argparse.Namespace, client: Client) -> int:
    return _stake_cmd(args, client, "bond")


def cmd_unbond(args: argparse.Namespace, client: Client) -> int:
    return _stake_cmd(args, client, "unbond")


def _read_evidence(path: str) -> bytes:
    """An evidence file: the ledger.evidence bytes in hex (0x optional, whitespace ignored)."""
    f = Path(path)
    if not f.is_file():
        raise CliError(f"evidence file {path} does not exist" if not f.exists() else f"{path} is not a file")
    try:
        text = "".join(f.read_text(encoding="ascii").split())
    except (UnicodeDecodeError, OSError) as e:
        raise CliError(f"cannot read evidence file {path}: {getattr(e, 'strerror', None) or e}") from None
    text = text[2:] if text[:2].lower() == "0x" else text
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise CliError(f"evidence file {path} does not hold hex (the ledger.evidence bytes in hex)") from None
    from ledger import evidence
    try:
        evidence.validate_basic(evidence.decode(raw))
    except evidence.EvidenceError as e:
        raise CliError(f"evidence file {path} holds no valid evidence: {e}") from None
    return raw


def cmd_evidence(args: argparse.Namespace, client: Client) -> int:
    key = load_key_spec(args.key)
    raw = _read_evidence(args.file)
    r = _send_staking_tx(args, "evidence", lambda: client.submit_evidence(
        key, raw, wait=not args.no_wait, gas_price=args.gas_price, nonce=args.nonce, timeout=args.timeout))
    if args.no_wait:
        return _pending(args, r)
    s, h = r["slashed"], r["height"]
    out = dict(r, paid_back_at=h + _unbonding_blocks(client), removed_from=h + 2)
    if args.json:
        _emit_json(out)
        return 0
    rc = r["receipt"]
    _rows([("Hash", r["hash"]), ("Block", h), ("Status", rc["status"]), ("Gas used", rc["gas_used"]),
           ("Fee", format_grad(rc["gas_used"] * args.gas_price)), ("Slashed", s["validator"]),
           ("Burned", format_grad(s["burned"])),
           ("Unbonding", f"{format_grad(s['unbonding'])}  (paid back at the end of block {out['paid_back_at']})"),
           ("Removed", f"from the bonded table now; signs no block from {h + 2}")])
    return 0


def _validator_lines(title: str, vals: Sequence[Any], total: int, note: dict[str, str]) -> None:
    print(f"{title} ({len(vals)} validator{'s' if len(vals) != 1 else ''}, total stake {format_grad(total)}):")
    for v in vals:
        extra = f"  {note[v.address]}" if v.address in note else ""
        print(f"  {v.address}  {format_grad(v.stake):>28}  {_share(v.stake, total):>9}{extra}")


def cmd_validators(args: argparse.Namespace, client: Client) -> int:
    if args.json:
        _emit_json(client.call("validators", {} if args.height is None else {"height": args.height}))
        return 0
    vs: Validators = client.validators(args.height)
    h = vs.height
    signing = {v.address: v.stake for v in vs.signing}
    bonded = {v.address: v.stake for v in vs.bonded}
    changes = {a: ("new" if a not in signing else f"was {format_grad(signing[a])}")
               for a, st in bonded.items() if signing.get(a) != st}
    _validator_lines(f"Signing block {h}", vs.signing, vs.total_stake,
                     {a: "leaving" for a in signing if a not in bonded})
    _validator_lines(f"Bonded after block {h}, signing from block {h + 2}", vs.bonded, vs.bonded_stake, changes)
    return 0


# ---- contracts ----------------------------------------------------------------------------

def _value_text(v: Any) -> str:
    """A contract value for people: its JSON view (bytes as 0x-hex, Decimal as a str)."""
    return json.dumps(to_json(v))


def _receipt_rows(r: dict, gas_price: int) -> list[tuple[str, Any]]:
    rc = r["receipt"]
    rows: list[tuple[str, Any]] = [("Hash", r["hash"]), ("Block", r["height"]), ("Status", rc["status"]),
                                   ("Gas used", rc["gas_used"]), ("Fee", format_grad(rc["gas_used"] * gas_price))]
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
    key = load_key_spec(args.key)
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
    key = load_key_spec(args.key)
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


# ---- parser -----------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one `error:` line with exit status 1."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see: {self.prog} --help)")


def cmd_testnet(args: argparse.Namespace) -> int:
    import time
    from net.testnet import make_testnet
    if not 1 <= args.n <= 100:
        raise CliError("-n must be between 1 and 100")
    for flag, base in (("--rpc-port", args.rpc_port), ("--p2p-port", args.p2p_port)):
        if not (0 < base and base + args.n <= 65536):
            raise CliError(f"{flag} {base}: the ports of all {args.n} nodes must lie in 1..65535")
    try:
        gpath, nodes = make_testnet(args.n, Path(args.out), int(time.time() * 1000), args.rpc_port, args.p2p_port)
    except (FileExistsError, ValueError) as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"cannot write the testnet to {args.out}: {e.strerror or e}") from None
    if args.json:
        _emit_json(json.loads((Path(args.out) / "testnet.json").read_text()))
        return 0
    print(f"Wrote a {args.n}-validator testnet to {args.out} (genesis {gpath}).")
    print(f"Start every node:  sh {Path(args.out) / 'start.sh'}   (or one by one:)")
    for nd in nodes:
        print("  python node.py " + " ".join(nd.args(gpath)))
    print(f"RPC of node I: http://127.0.0.1:{args.rpc_port}+I; transfers with dev:N keys work as on the devnet.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    # --rpc and --json are accepted before or after the subcommand.
    common = _Parser(add_help=False)
    common.add_argument("--rpc", metavar="URL", default=argparse.SUPPRESS,
                        help=f"node JSON-RPC URL (default: ${ENV_RPC}, else {DEFAULT_URL})")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable JSON output")

    p = _Parser(prog="gradchain", parents=[common],
                description="Command line for a gradchain node: keys, transfers, contracts, reads and raw "
                            "JSON-RPC.",
                epilog="Amounts: GRAD with up to 9 decimals (1.5) or base units with a u suffix "
                       "(1500000000u). Keys: a key file, or dev:N for devnet account N.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

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
    tx.set_defaults(func=cmd_tx, needs_client=True)

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

    def staking_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--key", required=True, help="the validator's key file (its account pays), or dev:N")
        sp.add_argument("--no-wait", action="store_true", help="return once the mempool admitted it")
        sp.add_argument("--gas-price", type=_nonneg_int, default=1, metavar="N", help="base units per gas (default 1)")
        sp.add_argument("--nonce", type=_nonneg_int, metavar="N", help="default: the sender's next pending nonce")
        sp.add_argument("--timeout", type=_positive_seconds, default=30.0, metavar="S",
                        help="seconds to wait for the commit (default 30)")

    bo = sub.add_parser("bond", help="stake GRAD: the key becomes a validator (or adds stake)", parents=[common],
                        epilog="The stake is in the bonded table at once and signs from two blocks after the "
                               "block that holds the transaction (see: gradchain validators). A bond after which "
                               "keys with no known running node hold 1/3 or more of the stake is refused "
                               "without --force (asked on a terminal): the chain would stop.")
    bo.add_argument("--amount", required=True, help="GRAD (1.5) or base units (1500000000u)")
    bo.add_argument("--force", action="store_true",
                    help="bond even if keys with no running node would then hold 1/3 or more of the stake "
                         "(the chain would stop)")
    staking_options(bo)
    bo.set_defaults(func=cmd_bond, needs_client=True)

    ub = sub.add_parser("unbond", help="take GRAD out of the key's stake (paid back after a delay)",
                        parents=[common], epilog="The amount returns to the key's account unbonding_blocks "
                                                 "(a genesis parameter) after the block that holds it.")
    ub.add_argument("--amount", required=True, help="GRAD (1.5) or base units (1500000000u)")
    staking_options(ub)
    ub.set_defaults(func=cmd_unbond, needs_client=True)

    va = sub.add_parser("validators", help="who signs a block, and the bonded stake that signs from 2 blocks later",
                        parents=[common])
    va.add_argument("--height", type=_nonneg_int, metavar="H", help="the set of this block (default latest)")
    va.set_defaults(func=cmd_validators, needs_client=True)

    evp = sub.add_parser("evidence", help="submit proof of a double signature: the signer is slashed",
                         parents=[common], epilog="FILE holds the ledger.evidence bytes in hex: two conflicting "
                                                  "votes of one validator at one height, round and step.")
    evp.add_argument("file", metavar="FILE", help="the evidence, as hex")
    staking_options(evp)
    evp.set_defaults(func=cmd_evidence, needs_client=True)

    r = sub.add_parser("rpc", help="call any JSON-RPC method and print the JSON result", parents=[common],
                       description="Call a JSON-RPC method. One PARAMS_JSON array or object is sent as "
                                   "the params; otherwise each argument is one positional param (parsed as "
                                   "JSON when it is JSON, else sent as a string).")
    r.add_argument("method", metavar="METHOD")
    r.add_argument("params", nargs="*", metavar="PARAMS_JSON")
    r.set_defaults(func=cmd_rpc)

    d = sub.add_parser("devnet", help="devnet helpers", parents=[common])
    dsub = d.add_subparsers(dest="devnet_command", metavar="ACTION", parser_class=_Parser)
    dsub.required = True
    da = dsub.add_parser("accounts", help="the 10 prefunded devnet accounts (use them as dev:N)", parents=[common])
    da.add_argument("--private", action="store_true", help="also print their (public, insecure) private keys")
    da.set_defaults(func=cmd_devnet_accounts)

    tn = sub.add_parser("testnet", help="write genesis, keys and a start script for N local validators",
                        parents=[common])
    tn.add_argument("-n", type=int, default=4, help="number of validators, 1,000,000 GRAD of stake each (default 4)")
    tn.add_argument("--out", metavar="DIR", default="testnet", help="output directory (default ./testnet)")
    tn.add_argument("--rpc-port", type=int, default=8545, help="RPC port of node 0; node I uses it + I")
    tn.add_argument("--p2p-port", type=int, default=26656, help="p2p port of node 0; node I uses it + I")
    tn.set_defaults(func=cmd_testnet)
    return p


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    args.rpc_url = getattr(args, "rpc", None) or os.environ.get(ENV_RPC) or DEFAULT_URL
    try:
        u = urllib.parse.urlsplit(args.rpc_url)
        ok = u.scheme == "http" and bool(u.hostname) and (u.port is None or u.port > 0)
    except ValueError:
        ok = False
    if not ok:
        raise CliError(f"bad RPC URL {args.rpc_url!r}: expected http://host:port")
    if not getattr(args, "needs_client", False):
        return args.func(args)
    with Client(args.rpc_url, timeout=60) as client:
        return args.func(args, client)


def contract_failure_text(e: ContractFailed) -> str:
    """`revert: insufficient balance (in transfer_to, line 15, contract 0x8d45...)`, and
    the transaction when it was committed."""
    where = [f"in {e.function}"] if e.function else []
    if e.line:
        where.append(f"line {e.line}")
    if e.contract:
        where.append(f"contract {e.contract}")
    issues = e.issues  # a refused contract: every problem, each on its own line below
    text = f"{e.code}: " + (f"{len(issues)} problem{'s' if len(issues) > 1 else ''}" if issues else e.message)
    text += f" ({', '.join(where)})" if where else ""
    if e.tx_hash:
        text += f"; transaction {e.tx_hash} failed in block {e.height}, gas used {e.gas_used}"
    return text + "".join(f"\n  {i}" for i in issues)


def _send_tx(args: argparse.Namespace, send: Any) -> dict:
    """Run send(); say plainly when nothing was sent and when the commit timed out."""
    try:
        return send()
    except ContractFailed as e:
        if e.tx_hash is None:
            first, nl, rest = contract_failure_text(e).partition("\n")
            why = "the node refused it when it simulated it" if e.code == "invalid_contract" else \
                "it fails when the node simulates it (give --gas N to send it anyway)"
            raise CliError(f"{first}; not sent: {why}{nl}{rest}") from None
        raise
    except CommitTimeout as e:
        h = (e.data or {}).get("hash", "")
        raise CliError(f"transaction {h} was admitted but not committed within {args.timeout:g} s; "
                       f"check it later with: gradchain tx {h}") from None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except CliError as e:
        msg = str(e)
    except TxRejected as e:
        msg = f"transaction rejected ({e.reason}): {(e.data or {}).get('message') or e.message}"
    except NotFound as e:
        msg = f"not found: {e.message}"
    except ProofError as e:
        msg = f"proof check FAILED, do not trust this answer: {e}"
    except ContractFailed as e:
        msg = contract_failure_text(e)
    except StakingFailed as e:
        msg = _staking_text(e)
    except ConnectionFailed as e:
        msg = f"cannot reach a node: {e} (is it running? set --rpc URL or ${ENV_RPC})"
    except RpcError as e:
        data = f" {json.dumps(e.data)}" if e.data is not None else ""
        msg = f"RPC error {e.code}: {e.message}{data}"
    except KeyboardInterrupt:
        msg = "interrupted"
    except BrokenPipeError:  # output piped into `head` and the like
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    print(f"error: {msg}", file=sys.stderr)
    return 1

