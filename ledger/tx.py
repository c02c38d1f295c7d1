"""Transactions: fields, wire format, signing, and stateless validation.

Wire form (canonical msgpack array):
    [version, chain_id, sender_pubkey, nonce, gas_limit, gas_price, kind, payload, signature]
The signature covers the same array without its last element, under TX_DOMAIN and the
chain id (ledger.keys.signing_bytes).  The transaction hash is SHA-256 of the wire bytes.
`kind` selects how `payload` (a kind-specific array) is read; only TRANSFER exists yet,
later kinds (deploy, call, stake, ...) add their own payload layouts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from ledger import errors
from ledger.encoding import DecodeError, decode, encode
from ledger.hashing import hash_bytes
from ledger.keys import (ADDRESS_SIZE, PUBKEY_SIZE, SIGNATURE_SIZE, TX_DOMAIN, PrivateKey,
                         address_of, verify)

TX_VERSION = 1
U64_MAX = 2**64 - 1
MAX_CHAIN_ID_LEN = 64  # in UTF-8 bytes: the signing prefix stores it in one byte


class TxKind(IntEnum):
    TRANSFER = 1


# Gas every transaction pays before it does anything (Ethereum's figure, for familiarity).
INTRINSIC_GAS = {TxKind.TRANSFER: 21_000}


@dataclass(frozen=True, slots=True)
class Transfer:
    """Payload of a TRANSFER: move `amount` base units to `to`."""

    to: bytes
    amount: int


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
        return self.payload.amount if self.kind == TxKind.TRANSFER else 0


def _payload_to_wire(kind: int, payload: Any) -> list:
    if kind == TxKind.TRANSFER:
        return [payload.to, payload.amount]
    raise ValueError(f"unknown transaction kind {kind}")


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
    raise errors.MalformedTransaction(f"unknown transaction kind {kind}")


def _body(chain_id: str, sender: bytes, nonce: int, gas_limit: int, gas_price: int,
          kind: int, payload_wire: list) -> list:
    return [TX_VERSION, chain_id, sender, nonce, gas_limit, gas_price, kind, payload_wire]


def sign_transaction(key: PrivateKey, chain_id: str, nonce: int, kind: int, payload: Any,
                     gas_limit: int | None = None, gas_price: int = 1) -> Transaction:
    """Build and sign a transaction (gas_limit defaults to the kind's intrinsic gas)."""
    if gas_limit is None:
        gas_limit = INTRINSIC_GAS[TxKind(kind)]
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
    """The bytes the sender signed (without domain tag and chain id prefix)."""
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
    intrinsic = INTRINSIC_GAS[TxKind(tx.kind)]
    if tx.gas_limit < intrinsic:
        raise errors.GasLimitTooLow(f"gas limit {tx.gas_limit} is below the intrinsic gas {intrinsic}")
    if tx.gas_limit > max_gas:
        raise errors.GasLimitTooHigh(f"gas limit {tx.gas_limit} is above the block gas limit {max_gas}")


def tx_to_json(tx: Transaction) -> dict:
    """A readable view of a transaction for RPC answers."""
    from ledger.keys import address_hex
    out = {"hash": tx.hash.hex(), "chain_id": tx.chain_id, "from": address_hex(tx.sender_address),
           "sender_public_key": tx.sender.hex(), "nonce": tx.nonce, "gas_limit": tx.gas_limit,
           "gas_price": tx.gas_price, "kind": TxKind(tx.kind).name.lower(), "signature": tx.signature.hex()}
    if tx.kind == TxKind.TRANSFER:
        out["to"] = address_hex(tx.payload.to)
        out["amount"] = tx.payload.amount
    return out
