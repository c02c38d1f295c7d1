"""Deploy examples/token.py on a running node and use it through the SDK.

    python node.py                      # in another terminal: a devnet on port 8545
    python examples/token_demo.py       # or: python examples/token_demo.py http://HOST:PORT

It deploys the token from dev account 0, sends tokens to dev account 1, reads balances
(one with a Merkle proof), lists the Transfer events, estimates gas, and shows two
reverts: one caught by the gas estimate before anything is sent, and one sent anyway
(with an explicit gas limit) so that it is committed as a failed transaction that
still pays for its gas.  Exit status 0 when every step did what it should.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Python puts this script's folder first on sys.path, where token.py (a contract) would
# shadow the standard library's `token` module: put the repository there instead.
sys.path[0] = str(ROOT)

from gradchain import Client, ConnectionFailed, Reverted, address_hex, devnet_keys  # noqa: E402

TOKENS = 10**18  # the token has 18 decimals: one whole token is 10**18 units


def whole(units: int) -> str:
    """Token units as whole tokens, with integer arithmetic only."""
    return f"{units // TOKENS:,}" + (f".{units % TOKENS:018d}".rstrip("0") if units % TOKENS else "")


def main(url: str) -> int:
    alice, bob = devnet_keys()[:2]
    client = Client(url)
    try:
        print(f"node {url}: chain {client.chain_id}, height {client.status()['height']}")
    except ConnectionFailed:
        print(f"error: no node answers at {url}; start one with `python node.py`", file=sys.stderr)
        return 1

    source = (ROOT / "examples" / "token.py").read_text()
    deployed = client.deploy(alice, source, ["Demo Token", "DEMO", 1_000_000 * TOKENS])
    token = deployed["address"]
    print(f"deployed the token at {token} in block {deployed['height']} "
          f"({deployed['receipt']['gas_used']:,} gas)")

    sent = client.send(alice, token, "transfer_to", bob.address, 250 * TOKENS)
    assert sent["result"] is True
    print(f"alice -> bob: 250 DEMO in block {sent['height']} ({sent['receipt']['gas_used']:,} gas)")

    for name, key in (("alice", alice), ("bob", bob)):
        print(f"  balance of {name}: {whole(client.view(token, 'balance_of', key.address))} DEMO")
    proven = client.storage(token, ("balance", bob.address), prove=True)
    assert proven == 250 * TOKENS
    print(f"  bob's balance read from storage with its Merkle proof checked: {whole(proven)} DEMO")

    print("Transfer events of the token:")
    for e in client.events(contract=token, name="Transfer"):
        sender = "mint" if e.data["sender"] is None else address_hex(e.data["sender"])
        print(f"  block {e.height}: {sender} -> {address_hex(e.data['to'])}: {whole(e.data['amount'])} DEMO")

    gas = client.estimate_gas(alice.address, token, "transfer_to", [bob.address, TOKENS])
    print(f"a transfer is estimated at {gas:,} gas")

    # bob holds 250 DEMO and tries to send 1,000: the simulation done to estimate gas
    # fails, so nothing is sent and nothing is paid
    try:
        client.send(bob, token, "transfer_to", alice.address, 1_000 * TOKENS)
        raise AssertionError("the overdraft went through")
    except Reverted as e:
        print(f"refused before sending: {e.message!r} in {e.function}, line {e.line} (receipt: {e.receipt})")

    # the same with an explicit gas limit: it is committed, fails, and pays its gas
    before = client.balance(bob.address)
    try:
        client.send(bob, token, "transfer_to", alice.address, 1_000 * TOKENS, gas_limit=100_000)
        raise AssertionError("the overdraft went through")
    except Reverted as e:
        paid = before - client.balance(bob.address)
        assert paid == e.gas_used, (paid, e.gas_used)
        print(f"committed as failed in block {e.height}: {e.message!r} in {e.function}, line {e.line}; "
              f"bob paid {e.gas_used:,} gas")
    assert client.view(token, "balance_of", bob.address) == 250 * TOKENS  # nothing moved
    print("done: every step did what it should")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GRADCHAIN_RPC", "http://127.0.0.1:8545")))
