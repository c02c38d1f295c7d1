"""The Python SDK: `Client(url)` speaks the node's JSON-RPC and checks what it can.

Errors are typed exceptions, never dicts with a flag: TxRejected (with the reason code),
NotFound, CommitTimeout, ProofError, and RpcError for the rest.  Account reads with
`prove=True` verify the Merkle proof against the state root of the block they name.
"""
from __future__ import annotations

import http.client
import itertools
import json
import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Sequence

from ledger import trie
from ledger.encoding import DecodeError, decode
from ledger.keys import PrivateKey, address_hex, parse_address
from ledger.state import account_key, decode_account
from ledger.tx import Transaction, transfer

DEFAULT_URL = "http://127.0.0.1:8545"


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class TxRejected(RpcError):
    """The node refused the transaction; `reason` is a stable code (e.g. nonce_too_low)."""

    @property
    def reason(self) -> str:
        return (self.data or {}).get("reason", "")


class NotFound(RpcError):
    pass


class CommitTimeout(RpcError):
    pass


class ProofError(Exception):
    """The node's answer does not match its Merkle proof."""


class ConnectionFailed(Exception):
    """No node answers at the URL."""


_CODES = {-32000: TxRejected, -32001: NotFound, -32002: CommitTimeout}


def _error(e: dict) -> RpcError:
    return _CODES.get(e.get("code"), RpcError)(e.get("code"), e.get("message", ""), e.get("data"))


@dataclass(frozen=True)
class AccountInfo:
    address: str
    balance: int
    nonce: int
    height: int
    pending_nonce: int | None = None
    proven: bool = False


class Client:
    """A synchronous client over one keep-alive HTTP connection (not thread-safe)."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 60.0):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"RPC URL must look like http://host:port, got {url!r}")
        self.url = url
        self._host, self._port = u.hostname, u.port or 80
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._ids = itertools.count(1)
        self._chain_id: str | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- transport --------------------------------------------------------------------

    def _post(self, body: bytes, timeout: float | None = None) -> Any:
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout or self._timeout)
            try:
                if timeout is not None:
                    self._conn.timeout = timeout
                    if self._conn.sock is not None:
                        self._conn.sock.settimeout(timeout)
                self._conn.request("POST", "/", body, {"Content-Type": "application/json"})
                resp = self._conn.getresponse()
                data = resp.read()
                break
            except (ConnectionError, http.client.HTTPException, socket.timeout, OSError) as e:
                self.close()
                if attempt or isinstance(e, socket.timeout):
                    raise ConnectionFailed(f"no answer from {self.url}: {e}") from None
        if resp.status == 204:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise RpcError(-32603, f"node answered HTTP {resp.status} with a body that is not JSON") from None

    def call(self, method: str, params: list | dict | None = None, timeout: float | None = None) -> Any:
        """Call any RPC method with positional (list) or named (dict) params."""
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                "params": [] if params is None else params}
        resp = self._post(json.dumps(body).encode(), timeout)
        if not isinstance(resp, dict) or not ("result" in resp or isinstance(resp.get("error"), dict)):
            raise RpcError(-32603, "node answered with something that is not a JSON-RPC response")
        if "error" in resp:
            raise _error(resp["error"])
        return resp["result"]

    def batch(self, calls: Sequence[tuple[str, list | dict]]) -> list[Any]:
        """Send many calls in one request; each result, or the RpcError, in order."""
        reqs = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        resp = self._post(json.dumps(reqs, separators=(",", ":")).encode())
        if isinstance(resp, dict):
            raise _error(resp["error"])
        by_id = {r["id"]: r for r in resp}
        return [_error(by_id[i]["error"]) if "error" in by_id[i] else by_id[i]["result"] for i in range(len(calls))]

    # ---- reads ------------------------------------------------------------------------

    def status(self) -> dict:
        return self.call("status")

    @property
    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = self.status()["chain_id"]
        return self._chain_id

    def block(self, height: int | None = None, hash: str | None = None, full: bool = False) -> dict:
        params: dict[str, Any] = {"full": full}
        if hash is not None:
            params["hash"] = hash
        elif height is not None:
            params["height"] = height
        return self.call("block", params)

    def tx(self, tx_hash: str | bytes) -> dict:
        return self.call("tx", {"hash": tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash})

    def account(self, address: str | bytes, height: int | None = None, prove: bool = False) -> AccountInfo:
        """An account at a height (default latest). With prove=True the Merkle proof is
        checked against the state root in that block's header; ProofError if it fails."""
        addr = address if isinstance(address, bytes) else parse_address(address)
        params: dict[str, Any] = {"address": address_hex(addr), "prove": prove}
        if height is not None:
            params["height"] = height
        r = self.call("account", params)
        if prove:
            self._check_proof(addr, r)
        return AccountInfo(r["address"], r["balance"], r["nonce"], r["height"], r.get("pending_nonce"), prove)

    def balance(self, address: str | bytes, height: int | None = None) -> int:
        return self.account(address, height).balance

    def _check_proof(self, addr: bytes, r: dict) -> None:
        header = self.block(height=r["height"])["header"]
        root = bytes.fromhex(header["state_root"])
        p = r.get("proof") or {}
        try:
            proof = decode(bytes.fromhex(p["proof"]))
            value = None if p["value"] is None else bytes.fromhex(p["value"])
        except (KeyError, TypeError, ValueError, DecodeError) as e:
            raise ProofError(f"malformed proof: {e}") from None
        if bytes.fromhex(r["state_root"]) != root or not trie.verify_proof(root, account_key(addr), value, proof):
            raise ProofError(f"the proof for {address_hex(addr)} does not verify against block {r['height']}")
        acct = decode_account(value) if value is not None else None
        if (acct.balance if acct else 0) != r["balance"] or (acct.nonce if acct else 0) != r["nonce"]:
            raise ProofError("the reported balance or nonce differs from the proven value")

    # ---- writes -----------------------------------------------------------------------

    def broadcast(self, tx: Transaction | bytes) -> str:
        """Submit; returns the hash once the mempool admitted it (TxRejected otherwise)."""
        raw = tx.raw if isinstance(tx, Transaction) else tx
        return self.call("broadcast_tx", {"tx": raw.hex()})["hash"]

    def broadcast_commit(self, tx: Transaction | bytes, timeout: float = 30) -> dict:
        """Submit and wait until the transaction is committed; returns its receipt."""
        raw = tx.raw if isinstance(tx, Transaction) else tx
        return self._call_commit(raw, timeout)

    def _call_commit(self, raw: bytes, timeout: float) -> dict:
        return self.call("broadcast_tx_commit", {"tx": raw.hex(), "timeout": timeout}, timeout=timeout + 10)

    def transfer(self, key: PrivateKey, to: str | bytes, amount: int, wait: bool = True,
                 gas_price: int = 1, nonce: int | None = None, timeout: float = 30) -> dict:
        """Sign and send a transfer, filling the nonce from the node's pending count."""
        to_addr = to if isinstance(to, bytes) else parse_address(to)
        if nonce is None:
            nonce = self.account(key.address).pending_nonce or 0
        tx = transfer(key, self.chain_id, nonce, to_addr, amount, gas_price)
        if wait:
            return self._call_commit(tx.raw, timeout)
        return {"hash": self.broadcast(tx)}

    def wait_for_tx(self, tx_hash: str, timeout: float = 30, poll: float = 0.1) -> dict:
        """Poll until a transaction is committed; CommitTimeout after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = self.tx(tx_hash)
                if r["status"] == "committed":
                    return r
            except NotFound:
                pass
            if time.monotonic() > deadline:
                raise CommitTimeout(-32002, f"transaction {tx_hash} not committed within {timeout} s")
            time.sleep(poll)
