"""CliError, the one `error:` line with exit status 1, and what the groups share of failing:
a failed contract run in words (contract_failure_text: contracts, staking and main's
handler) and _send_tx, which says plainly when nothing was sent or the commit timed out."""
from __future__ import annotations

import argparse
from typing import Any

from gradchain.errors import CommitTimeout, ContractFailed


class CliError(Exception):
    """A failure to report as one `error:` line (exit status 1)."""


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
