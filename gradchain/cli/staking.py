"""Staking: `bond` (refused when it would stop the chain, unless --force), `unbond`,
`evidence` (a double signature: the signer is slashed) and `validators`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from gradchain.cli.args import _nonneg_int, _positive_seconds, load_key_spec, parse_amount
from gradchain.cli.errors import CliError, _send_tx
from gradchain.cli.output import _emit_json, _rows
from gradchain.client import Client, Validators
from gradchain.errors import StakingFailed
from gradchain.units import format_grad
from ledger.keys import PrivateKey, address_hex, address_of


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
    key = load_key_spec(args.key, args.password_file)
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
    key = load_key_spec(args.key, args.password_file)
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


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`bond`, `unbond`, `validators` and `evidence`."""
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
