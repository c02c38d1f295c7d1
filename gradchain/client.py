"""The Python SDK: `Client(url)` speaks the node's JSON-RPC and checks what it can.

Errors are typed exceptions (gradchain.errors, the same that gradchain.testing raises),
never dicts with a flag: TxRejected (with the reason code), NotFound, CommitTimeout,
ProofError, ContractFailed (Reverted, OutOfGas) for a contract run that failed, and
RpcError for the rest.  Reads with `prove=True` verify the Merkle proof against the
state root of the block they name.

Contracts: `deploy`, `send` (a CALL transaction), `view` (a free read-only call),
`storage`, `estimate_gas`, `events`.  Values go in as Python values (int, str, bytes,
bool, None, list, tuple, dict, vm.decimals.Decimal) and come back exactly so: the node
sends their canonical encoding beside the JSON view, and the client decodes that.

Blobs (docs/rpc.md "Blobs"): `put_blob` (bytes, a file streamed chunk by chunk, or (x, y)
numpy arrays as a data set), `get_blob`, `blob_chunk` and `blob`; every chunk a node
sends is checked against the blob's root with its proof (ProofError otherwise).

Staking (ledger/staking.py): `bond`, `unbond`, `submit_evidence`, and `validators` (the
set that signs a height and the bonded table that signs two heights later).  A staking
transaction the chain refuses raises StakingFailed carrying its receipt.
"""
from __future__ import annotations

import http.client
import itertools
import json
import os
import socket
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from gradchain.blobs import checked_chunk, parse_ref_root, upload_of
from gradchain.errors import (CommitTimeout, ConnectionFailed, ContractFailed, NotFound, ProofError,
                              RpcError, StakingFailed, TxRejected, contract_failure)
from ledger import evidence as evidence_codec
from ledger import trie
from ledger.blobs import CHUNK_BYTES, BlobError, BlobRef
from ledger.encoding import DecodeError, decode
from ledger.keys import PrivateKey, address_hex, parse_address
from ledger.state import account_key, decode_account, storage_key
from ledger.tx import U64_MAX, Transaction, bond as bond_tx, call as call_tx, deploy as deploy_tx, transfer
from ledger.tx import put_blob as blob_tx
from ledger.tx import submit_evidence as evidence_tx, unbond as unbond_tx
from vm.limits import MAX_EVENT_BYTES, MAX_OUTPUT_BYTES, MAX_STORAGE_KEY_BYTES, MAX_STORAGE_VALUE_BYTES
from vm.codec import decode_value, encode_value
from vm.decimals import Decimal
from vm.json_values import to_json
from vm.tensors import Model, Tensor

DEFAULT_URL = "http://127.0.0.1:8545"
ENV_RPC = "GRADCHAIN_RPC"  # the node's URL for the SDK and the CLI alike


def default_url() -> str:
    """$GRADCHAIN_RPC where it is set and not empty, else DEFAULT_URL: what Client() and the CLI
    use when no URL is given."""
    return os.environ.get(ENV_RPC) or DEFAULT_URL
GAS_MARGIN_PERCENT = 25  # send/deploy without gas_limit: the simulated gas plus this much
# blob batches: within the node's 16 MiB body (chunks travel as hex) and 4 MiB batch reply,
# and its per-batch work (net/rpc/limits.py: put_blob_chunk 10, blob_chunk 2 of 1,000)
BLOB_BATCH_BODY = 8 << 20
BLOB_BATCH_REPLY = 3 << 20
BLOB_BATCH_PUTS = 100
BLOB_BATCH_GETS = 500


CONTRACT_FAILED = -32003


def _contract_failed(data: dict, **kw: Any) -> ContractFailed:
    code = data.get("code") or "error"
    return contract_failure(code)(data.get("message") or "", code, data.get("contract"),
                                  data.get("function"), data.get("line"), data.get("gas_used", 0),
                                  data.get("logs") or (), issues=data.get("issues") or (), **kw)


_CODES = {-32000: TxRejected, -32001: NotFound, -32002: CommitTimeout}


def _error(e: dict) -> Exception:
    if e.get("code") == CONTRACT_FAILED and isinstance(e.get("data"), dict):
        return _contract_failed(e["data"])
    return _CODES.get(e.get("code"), RpcError)(e.get("code"), e.get("message", ""), e.get("data"))


def rpc_request(rid: int, method: str, params: list | dict | None) -> bytes:
    """One JSON-RPC 2.0 request as the node reads it (Client and AsyncClient send these)."""
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": [] if params is None else params},
                      separators=(",", ":")).encode()


def rpc_result(resp: Any) -> Any:
    """The result of one JSON-RPC answer, or its error raised as the SDK's exception."""
    if not isinstance(resp, dict) or not ("result" in resp or isinstance(resp.get("error"), dict)):
        raise RpcError(-32603, "node answered with something that is not a JSON-RPC response")
    if "error" in resp:
        raise _error(resp["error"])
    return resp["result"]


def _decode(hex_: str, limit: int) -> Any:
    return decode_value(bytes.fromhex(hex_), limit)


@dataclass(frozen=True)
class StorageInfo:
    contract: str
    key: Any
    value: Any  # None when absent (see `present`)
    present: bool
    height: int
    state_root: str
    proven: bool = False


@dataclass(frozen=True)
class Event:
    """One event of a committed transaction, its data decoded exactly."""

    height: int
    tx_hash: str
    tx_index: int
    index: int  # position among its transaction's events
    contract: str
    name: str
    data: dict


@dataclass(frozen=True)
class ValidatorInfo:
    address: str  # "0x..."
    public_key: str  # hex
    stake: int  # base units


@dataclass(frozen=True)
class Validators:
    """Who validates around block `height` (ledger/staking.py): `signing` is the set that
    signed block `height` (`hash` is its validators_hash, `total_stake` its stake);
    `next` signs block `height + 1`; `bonded` is the table after that block, which signs from
    block `height + 2` -- a bond, unbond or slash of block `height` shows there at once and in
    `signing` two blocks later."""

    height: int
    hash: str
    total_stake: int
    signing: tuple[ValidatorInfo, ...]
    next: tuple[ValidatorInfo, ...]
    bonded: tuple[ValidatorInfo, ...]

    @property
    def bonded_stake(self) -> int:
        return sum(v.stake for v in self.bonded)

    def signing_stake(self, address: str | bytes) -> int:
        """The stake of `address` in the signing set (0 if it is not in it)."""
        return _stake_of(self.signing, address)

    def bonded_stake_of(self, address: str | bytes) -> int:
        """The stake of `address` in the bonded table (0 if it is not bonded)."""
        return _stake_of(self.bonded, address)


def _stake_of(vals: tuple[ValidatorInfo, ...], address: str | bytes) -> int:
    a = _addr(address)
    return next((v.stake for v in vals if v.address == a), 0)


def _validator_infos(rows: list[dict]) -> tuple[ValidatorInfo, ...]:
    return tuple(ValidatorInfo(r["address"], r["public_key"], r["stake"]) for r in rows)


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

    def __init__(self, url: str | None = None, timeout: float = 60.0):
        url = default_url() if url is None else url
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"RPC URL must look like http://host:port, got {url!r}")
        self.url = url
        self._host, self._port = u.hostname, u.port or 80
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._ids = itertools.count(1)
        self._chain_id: str | None = None
        self._max_block_gas: int | None = None

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
        """Call any RPC method with positional (list) or named (dict) params (the raw RPC;
        `view` is the contract read)."""
        return rpc_result(self._post(rpc_request(next(self._ids), method, params), timeout))

    def batch(self, calls: Sequence[tuple[str, list | dict]]) -> list[Any]:
        """Send many calls in one request; each result, or its exception, in order."""
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

    @property
    def max_block_gas(self) -> int:
        if self._max_block_gas is None:
            self._max_block_gas = self.call("genesis")["genesis"]["params"]["max_block_gas"]
        return self._max_block_gas

    def block(self, height: int | None = None, hash: str | None = None, full: bool = False) -> dict:
        params: dict[str, Any] = {"full": full}
        if hash is not None:
            params["hash"] = hash
        elif height is not None:
            params["height"] = height
        return self.call("block", params)

    def tx(self, tx_hash: str | bytes) -> dict:
        return self.call("tx", {"hash": tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash})

    def trace_tx(self, tx_hash: str | bytes) -> dict:
        """A committed transaction re-executed with its call tree: calls with arguments,
        results, gas (inclusive and own), events, print output, ml calls with shapes, and the
        revert point (docs/rpc.md "trace_tx"; gradchain.tracing.trace_text prints it)."""
        return self.call("trace_tx", {"hash": tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash})

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

    def validators(self, height: int | None = None) -> Validators:
        """The set that signed block `height` (default latest) and the bonded table after
        it, which signs from `height + 2` (see Validators)."""
        r = self.call("validators", {} if height is None else {"height": height})
        return Validators(r["height"], r["hash"], r["total_stake"], _validator_infos(r["validators"]),
                          _validator_infos(r["next"]), _validator_infos(r["bonded"]))

    def _verified(self, r: dict, key: bytes, what: str) -> bytes | None:
        """The proven value of state key `key` in answer `r`, checked against the state
        root in the header of the block it names (fetched separately); ProofError else."""
        header = self.block(height=r["height"])["header"]
        root = bytes.fromhex(header["state_root"])
        p = r.get("proof") or {}
        try:
            proof = decode(bytes.fromhex(p["proof"]))
            value = None if p["value"] is None else bytes.fromhex(p["value"])
        except (KeyError, TypeError, ValueError, DecodeError) as e:
            raise ProofError(f"malformed proof: {e}") from None
        if bytes.fromhex(r["state_root"]) != root or not trie.verify_proof(root, key, value, proof):
            raise ProofError(f"the proof for {what} does not verify against block {r['height']}")
        return value

    def _check_proof(self, addr: bytes, r: dict) -> None:
        value = self._verified(r, account_key(addr), address_hex(addr))
        acct = decode_account(value) if value is not None else None
        if (acct.balance if acct else 0) != r["balance"] or (acct.nonce if acct else 0) != r["nonce"]:
            raise ProofError("the reported balance or nonce differs from the proven value")

    # ---- contract reads ---------------------------------------------------------------

    def view(self, contract: str | bytes, function: str, *args: Any, height: int | None = None,
             sender: str | bytes | None = None, gas: int | None = None) -> Any:
        """A free read-only call against the state after block `height` (default latest);
        returns the function's result as a Python value, or raises ContractFailed."""
        params: dict[str, Any] = {"contract": _addr(contract), "function": function, "args": _json_args(args)}
        if height is not None:
            params["height"] = height
        if sender is not None:
            params["sender"] = _addr(sender)
        if gas is not None:
            params["gas"] = gas
        return _decode(self.call("call", params)["output"], MAX_OUTPUT_BYTES)

    def storage(self, contract: str | bytes, key: Any, height: int | None = None, prove: bool = False) -> Any:
        """What `storage[key]` holds in the contract after block `height` (None when
        absent; a tuple key reads a nested map: ("balance", owner)).  With prove=True the
        Merkle proof is checked against that block's state root (ProofError if not)."""
        return self.storage_info(contract, key, height, prove).value

    def storage_info(self, contract: str | bytes, key: Any, height: int | None = None,
                     prove: bool = False) -> StorageInfo:
        """`storage` with the block it was read at and that block's state root."""
        addr = parse_address(contract) if isinstance(contract, str) else contract
        params: dict[str, Any] = {"contract": address_hex(addr), "key": json_arg(key), "prove": prove}
        if height is not None:
            params["height"] = height
        r = self.call("storage", params)
        raw = None if r["raw"] is None else bytes.fromhex(r["raw"])
        if prove:
            skey = storage_key(addr, encode_value(key, MAX_STORAGE_KEY_BYTES))
            if self._verified(r, skey, f"storage key {key!r} of {address_hex(addr)}") != raw:
                raise ProofError("the reported storage value differs from the proven value")
        value = None if raw is None else decode_value(raw, MAX_STORAGE_VALUE_BYTES)
        return StorageInfo(r["contract"], key, value, raw is not None, r["height"], r["state_root"], prove)

    def code(self, address: str | bytes, height: int | None = None) -> dict:
        """A contract's source, code hash and exported functions (NotFound if none)."""
        params: dict[str, Any] = {"address": _addr(address)}
        if height is not None:
            params["height"] = height
        return self.call("code", params)

    def estimate(self, sender: str | bytes, contract: str | bytes | None = None, function: str | None = None,
                 args: Sequence[Any] = (), value: int = 0, source: str | None = None) -> dict:
        """What the transaction would cost now: {"gas" (intrinsic + simulated run),
        "intrinsic_gas", "ml_compile_gas" (of "gas", ML_COMPILE for ML programs used on chain
        for the first time: later uses do not pay it)}, for a CALL of contract.function(*args)
        or a DEPLOY of `source`.  ContractFailed if it fails."""
        params: dict[str, Any] = {"from": _addr(sender), "args": _json_args(args), "value": value}
        if source is not None:
            params["source"] = source
        else:
            params.update(contract=None if contract is None else _addr(contract), function=function)
        return self.call("estimate_gas", params)

    def estimate_gas(self, sender: str | bytes, contract: str | bytes | None = None, function: str | None = None,
                     args: Sequence[Any] = (), value: int = 0, source: str | None = None) -> int:
        """estimate(...)["gas"]."""
        return self.estimate(sender, contract, function, args, value, source)["gas"]

    def events(self, contract: str | bytes | None = None, name: str | None = None, from_height: int | None = None,
               to_height: int | None = None, limit: int = 1000) -> list[Event]:
        """Events of committed transactions, oldest first (one query: at most 10,000
        blocks, default the latest ones; see docs/rpc.md for paging)."""
        params: dict[str, Any] = {"limit": limit}
        for k, v in (("contract", None if contract is None else _addr(contract)), ("name", name),
                     ("from_height", from_height), ("to_height", to_height)):
            if v is not None:
                params[k] = v
        r = self.call("events", params)
        return [Event(e["height"], e["tx_hash"], e["tx_index"], e["index"], e["contract"], e["name"],
                      _decode(e["data_raw"], MAX_EVENT_BYTES)) for e in r["events"]]

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

    def _sign_and_send(self, key: PrivateKey, make: Callable[[int], Transaction], nonce: int | None,
                       wait: bool, timeout: float, failed: Callable[[dict], Exception] | None = None) -> dict:
        """The path of every write: fill the nonce from the node's pending count, sign with
        make(nonce), send.  With wait: the commit answer {"hash", "height", "index",
        "receipt"}, and failed(answer) is raised when the receipt says `failed` (None:
        returned as it is); without: {"hash"} once the mempool admitted it."""
        if nonce is None:
            nonce = self.account(key.address).pending_nonce or 0
        tx = make(nonce)
        if not wait:
            return {"hash": self.broadcast(tx)}
        r = self._call_commit(tx.raw, timeout)
        if failed is not None and r["receipt"]["status"] != "success":
            raise failed(r)
        return r

    def transfer(self, key: PrivateKey, to: str | bytes, amount: int, wait: bool = True,
                 gas_price: int = 1, nonce: int | None = None, timeout: float = 30) -> dict:
        """Sign and send a transfer, filling the nonce from the node's pending count (a
        failed transfer's receipt is returned, not raised)."""
        to_addr = to if isinstance(to, bytes) else parse_address(to)
        return self._sign_and_send(key, lambda n: transfer(key, self.chain_id, n, to_addr, amount, gas_price),
                                   nonce, wait, timeout)

    # ---- staking ----------------------------------------------------------------------

    def bond(self, key: PrivateKey, amount: int, wait: bool = True, gas_price: int = 1,
             nonce: int | None = None, timeout: float = 30) -> dict:
        """Stake `amount` base units of key's balance: key's public key becomes a validator
        (or adds stake), in the bonded table at once and signing two blocks after the one
        that holds this transaction.  With wait: the commit answer, or StakingFailed."""
        _check_stake_amount(amount)
        return self._sign_and_send(key, lambda n: bond_tx(key, self.chain_id, n, amount, gas_price),
                                   nonce, wait, timeout, _staking_failed)

    def unbond(self, key: PrivateKey, amount: int, wait: bool = True, gas_price: int = 1,
               nonce: int | None = None, timeout: float = 30) -> dict:
        """Take `amount` base units out of key's stake; they are paid back to key's account
        `unbonding_blocks` (a chain parameter) after the block that holds this transaction.
        StakingFailed when key is not bonded or holds less stake."""
        _check_stake_amount(amount)
        return self._sign_and_send(key, lambda n: unbond_tx(key, self.chain_id, n, amount, gas_price),
                                   nonce, wait, timeout, _staking_failed)

    def submit_evidence(self, key: PrivateKey, evidence: bytes, wait: bool = True, gas_price: int = 1,
                        nonce: int | None = None, timeout: float = 30) -> dict:
        """Send proof of a double signature (ledger.evidence bytes; anyone may, `key` pays the
        fee).  With wait, the answer has "slashed": {"validator", "burned", "unbonding"};
        StakingFailed when the chain refuses it (too old, signer not bonded, bad
        signature); ledger.evidence.EvidenceError before sending when the bytes are not
        well-formed evidence."""
        evidence_codec.validate_basic(evidence_codec.decode(evidence))
        r = self._sign_and_send(key, lambda n: evidence_tx(key, self.chain_id, n, evidence, gas_price),
                                nonce, wait, timeout, _staking_failed)
        if wait:
            ev = next(e for e in r["receipt"]["events"] if e["name"] == "Slashed")
            data = _decode(ev["data_raw"], MAX_EVENT_BYTES)
            r["slashed"] = {"validator": address_hex(data["validator"]), "burned": data["burned"],
                            "unbonding": data["unbonding"]}
        return r

    def _gas_limit(self, gas_limit: int | None, estimate: Any) -> tuple[int, dict | None]:
        """(gas_limit, None), or (the simulated gas plus GAS_MARGIN_PERCENT, at most the block
        gas limit, and the estimate): state may change before the block runs it, and unused
        gas is refunded."""
        if gas_limit is not None:
            return gas_limit, None
        est = estimate()
        gas = est["gas"]
        return min(gas + gas * GAS_MARGIN_PERCENT // 100, self.max_block_gas), est


    def deploy(self, key: PrivateKey, source: str, args: Sequence[Any] = (), value: int = 0,
               gas_limit: int | None = None, gas_price: int = 1, nonce: int | None = None,
               timeout: float = 30) -> dict:
        """Deploy a contract and wait for the commit: {"address", "hash", "height",
        "receipt", "estimate" (estimate()'s answer, None with a gas_limit)}.  gas_limit=None: simulated first (see GAS_MARGIN_PERCENT), so a
        constructor that would fail raises ContractFailed before anything is sent."""
        limit, est = self._gas_limit(gas_limit, lambda: self.estimate(key.address, args=args, value=value,
                                                                        source=source))
        r = self._sign_and_send(key, lambda n: deploy_tx(key, self.chain_id, n, source, list(args), value, limit,
                                                         gas_price), nonce, True, timeout, _receipt_failed)
        return {"address": r["receipt"]["contract_address"], "hash": r["hash"], "height": r["height"],
                "receipt": r["receipt"], "estimate": est}

    def send(self, key: PrivateKey, contract: str | bytes, function: str, *args: Any, value: int = 0,
             gas_limit: int | None = None, gas_price: int = 1, nonce: int | None = None, wait: bool = True,
             timeout: float = 30) -> dict:
        """Call contract.function(*args) in a transaction.  With wait (default): waits for
        the commit and returns {"result" (the Python value), "hash", "height", "receipt",
        "estimate" (estimate()'s answer, None with a gas_limit)}, or raises ContractFailed (Reverted, OutOfGas) carrying the receipt.  Without:
        {"hash", "estimate"} once the mempool admitted it.  gas_limit=None: estimated by simulation
        plus GAS_MARGIN_PERCENT; a call that fails in simulation raises before sending."""
        addr = parse_address(contract) if isinstance(contract, str) else contract
        limit, est = self._gas_limit(gas_limit, lambda: self.estimate(key.address, addr, function, args, value))
        r = self._sign_and_send(key, lambda n: call_tx(key, self.chain_id, n, addr, function, list(args), value,
                                                       limit, gas_price), nonce, wait, timeout, _receipt_failed)
        r["estimate"] = est
        if wait:
            out = r["receipt"]["output"]
            r["result"] = None if out is None else _decode(out, MAX_OUTPUT_BYTES)
        return r

    # ---- blobs ------------------------------------------------------------------------

    def blob(self, root: str | bytes | BlobRef, indices: bool = False) -> dict:
        """What the node knows of a blob: {root, size, chunk_bytes, chunks, present,
        complete, expiry (None where no block recorded it)}, with `indices` the indices of
        the chunks it holds.  NotFound for a blob it neither holds nor has on chain."""
        return self.call("blob", {"root": parse_ref_root(root).hex(), "indices": indices})

    def put_blob(self, data: Any, key: PrivateKey, chunk_bytes: int = CHUNK_BYTES, pin_blocks: int = 0,
                 timeout: float = 60, gas_price: int = 1, nonce: int | None = None) -> BlobRef:
        """Upload a blob and record it on chain; returns its name.  `data`: bytes, a file
        path (read one chunk at a time, twice: to hash, then to send), or (x, y) numpy
        arrays (a data set, gradchain.blobs.dataset_bytes).  Chunks the node already holds
        are skipped; then a BLOB transaction signed by `key` (keeping the data the chain's
        retention window plus `pin_blocks` blocks) is sent and its commit awaited.
        ValueError for data that cannot be a blob; TxRejected, RpcError from the node."""
        up = upload_of(data, chunk_bytes)
        ref = up.ref
        try:
            held = self.blob(ref)
        except NotFound:
            held = None
        if held is not None and (held["size"], held["chunk_bytes"]) != (ref.size, ref.chunk_bytes):
            raise ValueError(f"the node knows blob {ref.root.hex()} as {held['size']} bytes in chunks of "
                             f"{held['chunk_bytes']}, not {ref.size} in chunks of {ref.chunk_bytes}")
        if held is None or not held["complete"]:
            have = set(self.blob(ref, indices=True)["indices"]) if held and held["present"] else set()
            self._put_chunks(up, [i for i in range(ref.chunks) if i not in have])
        r = self._sign_and_send(key, lambda n: blob_tx(key, self.chain_id, n, ref, pin_blocks, gas_price),
                                nonce, True, timeout)
        if r["receipt"]["status"] != "success":
            raise RpcError(-32000, f"BLOB transaction {r['hash']} failed in block {r['height']}: "
                           f"{r['receipt'].get('error')}", r)
        return ref

    def _put_chunks(self, up: Any, indices: list[int]) -> None:
        """put_blob_chunk of each index, in batches within the node's bounds.  The body is
        put together as text: hex needs no JSON escaping, and json.dumps would scan each
        chunk's 2 MiB of it once more."""
        ref = up.ref
        blob = json.dumps({"root": ref.root.hex(), "size": ref.size, "chunk_bytes": ref.chunk_bytes})
        per = max(1, min(BLOB_BATCH_PUTS, BLOB_BATCH_BODY // (2 * ref.chunk_bytes + 70 * len(up.levels) + 300)))
        for start in range(0, len(indices), per):
            batch = indices[start:start + per]
            reqs = [f'{{"jsonrpc":"2.0","id":{n},"method":"put_blob_chunk","params":{{"blob":{blob},"index":{i},'
                    f'"chunk":"{up.read(i).hex()}","proof":{json.dumps([h.hex() for h in up.proof(i)])}}}}}'
                    for n, i in enumerate(batch)]
            resp = self._post(("[" + ",".join(reqs) + "]").encode())
            if isinstance(resp, dict):
                raise _error(resp.get("error") or {})
            for r in resp if isinstance(resp, list) else ():
                if isinstance(r, dict) and isinstance(r.get("error"), dict):
                    raise _error(r["error"])
            if not isinstance(resp, list) or len(resp) != len(batch):
                raise RpcError(-32603, "node answered a put_blob_chunk batch with something else than one "
                                       "answer per chunk")

    def _blob_ref(self, root: str | bytes | BlobRef) -> BlobRef:
        if isinstance(root, BlobRef):
            return root
        r = self.blob(root)
        try:
            return BlobRef(parse_ref_root(root), r["size"], r["chunk_bytes"])
        except (KeyError, TypeError, BlobError) as e:  # a node's answer that is no blob shape
            raise ProofError(f"the node's blob answer is not a valid blob shape: {e}") from None

    def blob_chunk(self, root: str | bytes | BlobRef, index: int) -> bytes:
        """Chunk `index` of a blob, checked against the root with its proof (ProofError if
        it does not check).  A BlobRef saves asking the node for the blob's shape."""
        ref = self._blob_ref(root)
        return checked_chunk(ref, index, self.call("blob_chunk", {"root": ref.root.hex(), "index": index}))

    def get_blob(self, root: str | bytes | BlobRef, path: str | os.PathLike | None = None) -> bytes | Path:
        """Every chunk of a blob, each checked against the root with its proof (ProofError
        at the first that does not).  Without `path`: the bytes.  With it: written there
        (through PATH.part, renamed once every chunk checked) and the Path returned."""
        ref = self._blob_ref(root)
        if path is None:
            return b"".join(self._get_chunks(ref))
        dest = Path(path)
        part = dest.with_name(dest.name + ".part")
        try:
            with open(part, "wb") as f:
                for chunk in self._get_chunks(ref):
                    f.write(chunk)
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
        return dest

    def _get_chunks(self, ref: BlobRef):
        depth = max(1, ref.chunks - 1).bit_length()
        per = max(1, min(BLOB_BATCH_GETS, BLOB_BATCH_REPLY // (2 * ref.chunk_bytes + 70 * depth + 100)))
        for start in range(0, ref.chunks, per):
            idx = range(start, min(ref.chunks, start + per))
            answers = self.batch([("blob_chunk", {"root": ref.root.hex(), "index": i}) for i in idx])
            for i, a in zip(idx, answers):
                if isinstance(a, Exception):
                    raise a
                yield checked_chunk(ref, i, a)

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


def _receipt_failed(r: dict) -> ContractFailed:
    """The ContractFailed of a committed contract transaction whose receipt says failed."""
    rc = r["receipt"]
    f = rc.get("failure") or {}
    code = f.get("code") or "error"
    return contract_failure(code)(
        _reason(rc["error"], code, f.get("function"), f.get("line")), code, f.get("contract"),
        f.get("function"), f.get("line"), rc["gas_used"], rc.get("logs") or (), receipt=rc,
        tx_hash=r["hash"], height=r["height"])


def _staking_failed(r: dict) -> StakingFailed:
    rc = r["receipt"]
    return StakingFailed(rc.get("error") or "no reason given", rc, r["hash"], r["height"])


def _check_stake_amount(amount: int) -> None:
    """A staked amount is in (0, 2**64): the node would refuse the transaction as malformed."""
    if type(amount) is not int or not 0 < amount <= U64_MAX:
        raise ValueError(f"a staked amount must be an integer in (0, 2**64) base units, got {amount!r}")


def _addr(a: str | bytes) -> str:
    return address_hex(a) if isinstance(a, bytes) else address_hex(parse_address(a))


def json_arg(v: Any) -> Any:
    """A Python contract value as the RPC's JSON argument form (vm.json_values.from_json_arg
    reads it back exactly): bytes, Decimal, tuples and dicts whose keys are not all str
    become their tagged objects.  TypeError for anything that is not a contract value."""
    if isinstance(v, bytes):
        return {"bytes": "0x" + v.hex()}
    if isinstance(v, tuple):
        return {"tuple": [json_arg(x) for x in v]}
    if isinstance(v, list):
        return [json_arg(x) for x in v]
    if isinstance(v, dict):
        if all(type(k) is str for k in v) and not (len(v) == 1 and next(iter(v)) in _TAGS):
            return {k: json_arg(x) for k, x in v.items()}
        return {"dict": [[json_arg(k), json_arg(x)] for k, x in v.items()]}
    if v is None or type(v) in (bool, int, str):
        return v
    if type(v) is Decimal:
        return {"decimal": str(v)}
    if type(v) is Tensor or type(v) is Model:
        return to_json(v)
    raise TypeError(f"a {type(v).__name__} is not a contract value (int, str, bytes, bool, None, list, "
                    "tuple, dict, gradchain.Decimal, Tensor, Model)")


_TAGS = ("bytes", "decimal", "tuple", "dict", "tensor", "model")


def _json_args(args: Sequence[Any]) -> list:
    return [json_arg(a) for a in args]


def _reason(error: str, code: str, function: str | None, line: int | None) -> str:
    """The message of a receipt's error, which reads "CODE: MESSAGE (in FUNCTION, line N)"."""
    msg = error.removeprefix(f"{code}: ")
    return msg.removesuffix(f" (in {function}, line {line})") if function and line else msg
