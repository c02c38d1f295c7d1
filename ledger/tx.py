"""Transactions: fields, wire format, signing, and stateless validation.

Wire form (canonical msgpack array):
    [version, chain_id, sender_pubkey, nonce, gas_limit, gas_price, kind, payload, signature]
The signature covers the same array without its last element, under TX_DOMAIN and the
chain id (ledger.keys.signing_bytes).  The transaction hash is SHA-256 of the wire bytes.
`kind` selects how `payload` (a kind-specific array) is read:
    TRANSFER [to, amount]
    DEPLOY   [source, args, value]            -> a contract at contract_address(sender, nonce)
    CALL     [contract, function, args, value]
    BOND     [amount]                         -> the sender's key becomes (or stays) a validator
    UNBOND   [amount]                         -> stake paid back after the unbonding delay
    EVIDENCE [evidence]                       -> ledger.evidence bytes: two conflicting votes
    BLOB     [[root, size, chunk_bytes], pin_blocks]  -> a blob whose chunks travel beside the tx
    JOB      [action, body, value]            -> a training-job action (ledger/jobs.py)
`args` is bin: the contract arguments as a list in the VM's value encoding
(vm.codec), which carries what canonical msgpack does not (big ints, tuples, Decimal).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from vm import gas as vm_gas
from vm.errors import VMError
from vm.limits import MAX_ARGS_BYTES
from vm.codec import decode_value, encode_value, measure

from ledger.units import format_grad
from ledger import errors, evidence
from ledger.blobs import BlobError, BlobRef
from ledger.encoding import DecodeError, decode, encode
from ledger.hashing import hash_bytes
from ledger.keys import (ADDRESS_SIZE, PUBKEY_SIZE, SIGNATURE_SIZE, TX_DOMAIN, PrivateKey,
                         address_of, verify)

TX_VERSION = 1
U64_MAX = 2**64 - 1
MAX_CHAIN_ID_LEN = 64  # in UTF-8 bytes: the signing prefix stores it in one byte


class TxKind(IntEnum):
    TRANSFER = 1
    DEPLOY = 2
    CALL = 3
    BOND = 4
    UNBOND = 5
    EVIDENCE = 6
    BLOB = 7
    JOB = 8


# Gas every transaction pays before it does anything (Ethereum's figures, for familiarity);
# deploys and calls add a price per byte of what they carry (intrinsic_gas).
# Staking kinds pay a flat price: a few state records (and two signature checks for evidence).
INTRINSIC_GAS = {TxKind.TRANSFER: 21_000, TxKind.DEPLOY: vm_gas.DEPLOY_TX, TxKind.CALL: vm_gas.CALL_TX,
                 TxKind.BOND: 50_000, TxKind.UNBOND: 50_000, TxKind.EVIDENCE: 100_000}
MAX_FUNCTION_NAME = 64
# a blob's data is kept for the retention window, not forever: far cheaper than call data
BLOB_TX = 50_000
BLOB_PER_KIB = 128            # each KiB (or part) of the blob: hashed, stored and served by every node
BLOB_PIN_PER_MIB_BLOCK = 16   # each MiB (or part) kept one block beyond the retention window
MAX_PIN_BLOCKS = 2**32 - 1
MAX_JOB_ACTION = 12            # ledger.jobs.CONTEST
JOB_TX = 30_000               # a JOB transaction, beside its data and the work of its action (ledger/jobs.py)


@dataclass(frozen=True, slots=True)
class Transfer:
    """Payload of a TRANSFER: move `amount` base units to `to`."""

    to: bytes
    amount: int


@dataclass(frozen=True, slots=True)
class Deploy:
    """Payload of a DEPLOY: contract source, constructor arguments, coins sent with it."""

    source: str
    args: bytes  # vm.codec encoding of a list
    value: int


@dataclass(frozen=True, slots=True)
class Call:
    """Payload of a CALL: run an exported function of a contract."""

    contract: bytes
    function: str
    args: bytes  # vm.codec encoding of a list
    value: int


@dataclass(frozen=True, slots=True)
class Bond:
    """Payload of a BOND: stake `amount` more; the sender's public key is the validator key."""

    amount: int


@dataclass(frozen=True, slots=True)
class Unbond:
    """Payload of an UNBOND: take `amount` out of the sender's stake."""

    amount: int


@dataclass(frozen=True, slots=True)
class Blob:
    """Payload of a BLOB: the blob's name; its chunks are not in the transaction (ledger/blobs.py)."""

    ref: BlobRef
    pin_blocks: int  # kept this many blocks beyond the retention window


@dataclass(frozen=True, slots=True)
class Job:
    """Payload of a JOB: one action of the job protocol (ledger/jobs.py, docs/jobs.md)."""

    action: int
    body: list  # the action's fields, canonical msgpack values
    value: int  # coins the action takes from the sender (a reward, a bond)
    raw_body: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Payload of an EVIDENCE: a double signature, proven (ledger.evidence)."""

    evidence: Any  # ledger.evidence.DuplicateVoteEvidence
    raw: bytes


def encode_args(args: list | tuple) -> bytes:
    """Contract arguments as a transaction carries them."""
    return encode_value(list(args), MAX_ARGS_BYTES)


def decode_args(raw: bytes) -> list:
    return decode_value(raw, MAX_ARGS_BYTES)


def contract_address(sender: bytes, nonce: int) -> bytes:
    """Where a DEPLOY by `sender` with `nonce` puts its contract (as Ethereum's CREATE)."""
    return hash_bytes(b"gradchain/contract\x00" + sender + nonce.to_bytes(8, "big"))[:ADDRESS_SIZE]


@dataclass(frozen=True, slots=True)
class Transaction:
    chain_id: str
    sender: bytes  # ed25519 public key
    nonce: int
    gas_limit: int
    gas_price: int
    kind: int
    payload: Any  # decoded kind-specific payload (Transfer for TRANSFER)
    signature: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)
    hash: bytes = field(default=b"", compare=False, repr=False)
    sender_address: bytes = field(default=b"", compare=False, repr=False)

    @property
    def max_fee(self) -> int:
        return self.gas_limit * self.gas_price

    @property
    def value(self) -> int:
        """Coins the transaction moves out of the sender besides its fee."""
        if self.kind in (TxKind.TRANSFER, TxKind.BOND):
            return self.payload.amount
        return self.payload.value if self.kind in (TxKind.DEPLOY, TxKind.CALL, TxKind.JOB) else 0


def intrinsic_gas(kind: int, payload: Any) -> int:
    """Gas a transaction pays before it runs: a base by kind, its data by the byte, and
    its contract arguments by the element (decoding a deeply nested argument costs far
    more than its bytes say: `[[]] * 60000` is 60 KB and 60,000 lists)."""
    if kind == TxKind.DEPLOY:
        return (vm_gas.DEPLOY_TX + len(payload.source.encode()) * vm_gas.DEPLOY_PER_SOURCE_BYTE
                + len(payload.args) * vm_gas.TX_DATA_PER_BYTE + arg_units(payload.args) * vm_gas.TX_ARG_PER_UNIT)
    if kind == TxKind.CALL:
        return (vm_gas.CALL_TX + (len(payload.args) + len(payload.function)) * vm_gas.TX_DATA_PER_BYTE
                + arg_units(payload.args) * vm_gas.TX_ARG_PER_UNIT)
    if kind == TxKind.JOB:
        return JOB_TX + len(payload.raw_body or encode(payload.body)) * vm_gas.TX_DATA_PER_BYTE
    if kind == TxKind.BLOB:
        size = payload.ref.size
        return BLOB_TX + -(-size // 1024) * BLOB_PER_KIB + -(-size // (1 << 20)) * payload.pin_blocks * BLOB_PIN_PER_MIB_BLOCK
    return INTRINSIC_GAS[TxKind(kind)]


@functools.lru_cache(maxsize=4096)
def arg_units(args: bytes) -> int:
    """The size of encoded contract arguments in vm.codec.measure units (cached: it is
    asked at admission, in block checks and when the transaction runs)."""
    return measure(decode_args(args), 2 * MAX_ARGS_BYTES)


def _payload_to_wire(kind: int, payload: Any) -> list:
    if kind == TxKind.TRANSFER:
        return [payload.to, payload.amount]
    if kind == TxKind.DEPLOY:
        return [payload.source, payload.args, payload.value]
    if kind == TxKind.CALL:
        return [payload.contract, payload.function, payload.args, payload.value]
    if kind in (TxKind.BOND, TxKind.UNBOND):
        return [payload.amount]
    if kind == TxKind.EVIDENCE:
        return [payload.raw]
    if kind == TxKind.BLOB:
        return [payload.ref.to_wire(), payload.pin_blocks]
    if kind == TxKind.JOB:
        return [payload.action, payload.body, payload.value]
    raise ValueError(f"unknown transaction kind {kind}")


def _check_args(args: Any) -> None:
    if type(args) is not bytes:
        raise errors.MalformedTransaction("contract arguments must be bytes")
    try:
        decoded = decode_args(args)
    except VMError as e:
        raise errors.MalformedTransaction(f"contract arguments are not a valid value: {e.message}") from None
    if type(decoded) is not list:
        raise errors.MalformedTransaction("contract arguments must encode a list")


def _check_value(value: Any) -> None:
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise errors.MalformedTransaction("value must be an integer in [0, 2**64)")


def _payload_from_wire(kind: int, wire: Any) -> Any:
    if kind == TxKind.TRANSFER:
        if not (isinstance(wire, list) and len(wire) == 2):
            raise errors.MalformedTransaction("transfer payload must be [to, amount]")
        to, amount = wire
        if type(to) is not bytes or len(to) != ADDRESS_SIZE:
            raise errors.MalformedTransaction("transfer recipient must be a 20-byte address")
        if type(amount) is not int or not 0 <= amount <= U64_MAX:
            raise errors.MalformedTransaction("transfer amount must be an integer in [0, 2**64)")
        return Transfer(to, amount)
    if kind == TxKind.DEPLOY:
        if not (isinstance(wire, list) and len(wire) == 3):
            raise errors.MalformedTransaction("deploy payload must be [source, args, value]")
        source, args, value = wire
        if type(source) is not str or not source:
            raise errors.MalformedTransaction("deploy source must be non-empty text")
        _check_args(args)
        _check_value(value)
        return Deploy(source, args, value)
    if kind == TxKind.CALL:
        if not (isinstance(wire, list) and len(wire) == 4):
            raise errors.MalformedTransaction("call payload must be [contract, function, args, value]")
        contract, function, args, value = wire
        if type(contract) is not bytes or len(contract) != ADDRESS_SIZE:
            raise errors.MalformedTransaction("call contract must be a 20-byte address")
        if type(function) is not str or not 0 < len(function) <= MAX_FUNCTION_NAME:
            raise errors.MalformedTransaction(f"call function must be a name of 1 to {MAX_FUNCTION_NAME} characters")
        _check_args(args)
        _check_value(value)
        return Call(contract, function, args, value)
    if kind in (TxKind.BOND, TxKind.UNBOND):
        if not (isinstance(wire, list) and len(wire) == 1):
            raise errors.MalformedTransaction("bond and unbond payloads are [amount]")
        amount = wire[0]
        if type(amount) is not int or not 0 < amount <= U64_MAX:
            raise errors.MalformedTransaction("a staked amount must be an integer in (0, 2**64)")
        return (Bond if kind == TxKind.BOND else Unbond)(amount)
    if kind == TxKind.EVIDENCE:
        if not (isinstance(wire, list) and len(wire) == 1 and type(wire[0]) is bytes):
            raise errors.MalformedTransaction("an evidence payload is [evidence bytes]")
        try:
            ev = evidence.decode(wire[0])
            evidence.validate_basic(ev)
        except evidence.EvidenceError as e:
            raise errors.MalformedTransaction(f"evidence: {e}") from None
        return Evidence(ev, wire[0])
    if kind == TxKind.BLOB:
        if not (isinstance(wire, list) and len(wire) == 2):
            raise errors.MalformedTransaction("a blob payload is [[root, size, chunk_bytes], pin_blocks]")
        try:
            ref = BlobRef.from_wire(wire[0])
        except BlobError as e:
            raise errors.MalformedTransaction(f"blob: {e}") from None
        if type(wire[1]) is not int or not 0 <= wire[1] <= MAX_PIN_BLOCKS:
            raise errors.MalformedTransaction(f"pin_blocks must be an integer in [0, {MAX_PIN_BLOCKS}]")
        return Blob(ref, wire[1])
    if kind == TxKind.JOB:
        if not (isinstance(wire, list) and len(wire) == 3):
            raise errors.MalformedTransaction("a job payload is [action, body, value]")
        action, body, value = wire
        if type(action) is not int or not 1 <= action <= MAX_JOB_ACTION:
            raise errors.MalformedTransaction(f"a job action is an integer in [1, {MAX_JOB_ACTION}]")
        if not isinstance(body, list):
            raise errors.MalformedTransaction("a job body is a list")
        _check_value(value)
        return Job(action, body, value, encode(body))
    raise errors.MalformedTransaction(f"unknown transaction kind {kind}")


def _body(chain_id: str, sender: bytes, nonce: int, gas_limit: int, gas_price: int,
          kind: int, payload_wire: list) -> list:
    return [TX_VERSION, chain_id, sender, nonce, gas_limit, gas_price, kind, payload_wire]


def sign_transaction(key: PrivateKey, chain_id: str, nonce: int, kind: int, payload: Any,
                     gas_limit: int | None = None, gas_price: int = 1) -> Transaction:
    """Build and sign a transaction (gas_limit defaults to the kind's intrinsic gas)."""
    if gas_limit is None:
        gas_limit = intrinsic_gas(kind, payload)
    body = _body(chain_id, key.public_key, nonce, gas_limit, gas_price, kind,
                 _payload_to_wire(kind, payload))
    sig = key.sign(TX_DOMAIN, chain_id, encode(body))
    raw = encode(body + [sig])
    return Transaction(chain_id, key.public_key, nonce, gas_limit, gas_price, kind, payload, sig,
                       raw, hash_bytes(raw), key.address)


def transfer(key: PrivateKey, chain_id: str, nonce: int, to: bytes, amount: int,
             gas_price: int = 1, gas_limit: int | None = None) -> Transaction:
    """A signed coin transfer."""
    return sign_transaction(key, chain_id, nonce, TxKind.TRANSFER, Transfer(to, amount),
                            gas_limit, gas_price)


def deploy(key: PrivateKey, chain_id: str, nonce: int, source: str, args: list | tuple = (),
           value: int = 0, gas_limit: int | None = None, gas_price: int = 1) -> Transaction:
    """A signed contract deployment (gas_limit defaults to the intrinsic gas only)."""
    return sign_transaction(key, chain_id, nonce, TxKind.DEPLOY, Deploy(source, encode_args(args), value),
                            gas_limit, gas_price)


def call(key: PrivateKey, chain_id: str, nonce: int, contract: bytes, function: str,
         args: list | tuple = (), value: int = 0, gas_limit: int | None = None, gas_price: int = 1) -> Transaction:
    """A signed call of a contract's exported function."""
    return sign_transaction(key, chain_id, nonce, TxKind.CALL, Call(contract, function, encode_args(args), value),
                            gas_limit, gas_price)


def bond(key: PrivateKey, chain_id: str, nonce: int, amount: int, gas_price: int = 1) -> Transaction:
    """A signed bond: `key` becomes a validator (or adds stake) from the height after next."""
    return sign_transaction(key, chain_id, nonce, TxKind.BOND, Bond(amount), None, gas_price)


def unbond(key: PrivateKey, chain_id: str, nonce: int, amount: int, gas_price: int = 1) -> Transaction:
    """A signed unbond of `amount` of key's stake."""
    return sign_transaction(key, chain_id, nonce, TxKind.UNBOND, Unbond(amount), None, gas_price)


def submit_evidence(key: PrivateKey, chain_id: str, nonce: int, evidence_bytes: bytes,
                    gas_price: int = 1) -> Transaction:
    """A signed EVIDENCE transaction carrying ledger.evidence bytes (anyone may send one)."""
    ev = evidence.decode(evidence_bytes)
    return sign_transaction(key, chain_id, nonce, TxKind.EVIDENCE, Evidence(ev, evidence_bytes), None, gas_price)


def decode_transaction(raw: bytes, max_size: int) -> Transaction:
    """Parse wire bytes into a Transaction, checking shape and types (not the signature)."""
    if len(raw) > max_size:
        raise errors.TransactionTooLarge(f"transaction is {len(raw)} bytes, over the limit of {max_size}")
    try:
        obj = decode(raw)
    except DecodeError as e:
        raise errors.MalformedTransaction(f"transaction is not canonical msgpack: {e}") from None
    if not isinstance(obj, list) or len(obj) != 9:
        raise errors.MalformedTransaction("transaction must be an array of 9 fields")
    version, chain_id, sender, nonce, gas_limit, gas_price, kind, payload, sig = obj
    if version != TX_VERSION or type(version) is not int:
        raise errors.MalformedTransaction(f"unknown transaction version {version!r}")
    if type(chain_id) is not str or not 0 < len(chain_id.encode()) <= MAX_CHAIN_ID_LEN:
        raise errors.MalformedTransaction(f"chain id must be a string of 1 to {MAX_CHAIN_ID_LEN} UTF-8 bytes")
    if type(sender) is not bytes or len(sender) != PUBKEY_SIZE:
        raise errors.MalformedTransaction("sender must be a 32-byte ed25519 public key")
    for name, v in (("nonce", nonce), ("gas limit", gas_limit), ("gas price", gas_price), ("kind", kind)):
        if type(v) is not int or not 0 <= v <= U64_MAX:
            raise errors.MalformedTransaction(f"{name} must be an integer in [0, 2**64)")
    if type(sig) is not bytes or len(sig) != SIGNATURE_SIZE:
        raise errors.MalformedTransaction("signature must be 64 bytes")
    decoded_payload = _payload_from_wire(kind, payload)
    return Transaction(chain_id, sender, nonce, gas_limit, gas_price, kind, decoded_payload, sig,
                       raw, hash_bytes(raw), address_of(sender))


def signed_body(tx: Transaction) -> bytes:
    """The bytes the sender signed (without domain tag and chain id prefix).  From the wire
    bytes when there are some: they are canonical, so the 8-field body is the 9-field array
    with its header one less and the signature (bin8 of 64 bytes, 66 bytes) cut off."""
    raw = tx.raw
    if raw[:1] == b"\x99" and raw[-66:-64] == b"\xc4\x40":
        return b"\x98" + raw[1:-66]
    return encode(_body(tx.chain_id, tx.sender, tx.nonce, tx.gas_limit, tx.gas_price, tx.kind,
                        _payload_to_wire(tx.kind, tx.payload)))


def verify_signature(tx: Transaction) -> None:
    """Raise BadSignature unless the sender signed this transaction. Costly: do it once."""
    if not verify(tx.sender, tx.signature, TX_DOMAIN, tx.chain_id, signed_body(tx)):
        raise errors.BadSignature("signature does not match the sender's public key")


def validate_transaction(tx: Transaction, chain_id: str, max_gas: int) -> None:
    """Stateless checks that need the chain's parameters but not its state."""
    if tx.chain_id != chain_id:
        raise errors.WrongChainId(f"transaction is for chain {tx.chain_id!r}, this is {chain_id!r}")
    intrinsic = intrinsic_gas(tx.kind, tx.payload)
    if tx.gas_limit < intrinsic:
        raise errors.GasLimitTooLow(f"gas limit {tx.gas_limit} is below the intrinsic gas {intrinsic}")
    if tx.gas_limit > max_gas:
        raise errors.GasLimitTooHigh(f"gas limit {tx.gas_limit} is above the block gas limit {max_gas}")


def check_nonce_and_funds(tx: Transaction, next_nonce: int, balance: int, pending: int = 0) -> None:
    """The stateful rule, for the chain and the mempool alike: the nonce is the sender's next
    one, and its balance, less the worst-case cost of its `pending` transactions (the
    mempool's; none in a block), pays this one's worst case (value + gas limit x price)."""
    if tx.nonce < next_nonce:
        raise errors.NonceTooLow(f"nonce {tx.nonce} is too low: the next nonce of this sender is {next_nonce}")
    if tx.nonce > next_nonce:
        raise errors.NonceTooHigh(f"nonce {tx.nonce} is too high: the next nonce of this sender is {next_nonce}")
    cost = tx.max_fee + tx.value
    if balance - pending < cost:
        less = f" minus pending {format_grad(pending)}" if pending else ""
        raise errors.InsufficientFunds(f"balance {format_grad(balance)}{less} cannot pay {format_grad(cost)} "
                                       f"(value {format_grad(tx.value)} + gas {tx.gas_limit} x price "
                                       f"{tx.gas_price} base units)")


def job(key: PrivateKey, chain_id: str, nonce: int, action: int, body: list, value: int = 0,
        gas_limit: int | None = None, gas_price: int = 1) -> Transaction:
    """A signed JOB action (gas_limit defaults to the intrinsic gas: enough for the cheap
    actions; result, challenge, settle and finalize need more, ledger/jobs.py)."""
    return sign_transaction(key, chain_id, nonce, TxKind.JOB, Job(action, body, value, encode(body)), gas_limit,
                            gas_price)


def put_blob(key: PrivateKey, chain_id: str, nonce: int, ref: BlobRef, pin_blocks: int = 0,
             gas_price: int = 1) -> Transaction:
    """A signed BLOB transaction; the node it goes to must hold the blob's chunks already."""
    return sign_transaction(key, chain_id, nonce, TxKind.BLOB, Blob(ref, pin_blocks), None, gas_price)


def tx_to_json(tx: Transaction) -> dict:
    """A readable view of a transaction for RPC answers."""
    from ledger.keys import address_hex
    from vm.json_values import to_json
    out = {"hash": tx.hash.hex(), "chain_id": tx.chain_id, "from": address_hex(tx.sender_address),
           "sender_public_key": tx.sender.hex(), "nonce": tx.nonce, "gas_limit": tx.gas_limit,
           "gas_price": tx.gas_price, "kind": TxKind(tx.kind).name.lower(), "signature": tx.signature.hex()}
    p = tx.payload
    if tx.kind == TxKind.TRANSFER:
        out["to"] = address_hex(p.to)
        out["amount"] = p.amount
    elif tx.kind == TxKind.DEPLOY:
        out.update(source=p.source, args=to_json(decode_args(p.args)), value=p.value,
                   contract_address=address_hex(contract_address(tx.sender_address, tx.nonce)))
    elif tx.kind == TxKind.CALL:
        out.update(to=address_hex(p.contract), function=p.function, args=to_json(decode_args(p.args)),
                   value=p.value)
    elif tx.kind in (TxKind.BOND, TxKind.UNBOND):
        out["amount"] = p.amount
    elif tx.kind == TxKind.JOB:
        out["job"] = {"action": p.action, "body": to_json(p.body), "value": p.value}
    elif tx.kind == TxKind.BLOB:
        out["blob"] = {"root": p.ref.root.hex(), "size": p.ref.size, "chunk_bytes": p.ref.chunk_bytes,
                       "pin_blocks": p.pin_blocks}
    elif tx.kind == TxKind.EVIDENCE:
        ev = p.evidence
        a, b = ev.vote_a.vote, ev.vote_b.vote
        out["evidence"] = {"validator": address_hex(ev.validator), "height": ev.height, "round": a.round,
                           "type": a.type, "block_hashes": [(v.value or b"").hex() for v in (a, b)]}
    return out
