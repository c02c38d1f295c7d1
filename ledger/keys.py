"""Ed25519 keys (PyNaCl), addresses, domain-separated signing, and key files.

Every signed message is `domain tag || chain id || payload`: a signature made for one
purpose (a transaction, a vote) or one chain can never be replayed as another.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.signing

from ledger.files import create_durably
from ledger.hashing import hash_bytes

PUBKEY_SIZE = 32
SIGNATURE_SIZE = 64
ADDRESS_SIZE = 20

TX_DOMAIN = b"gradchain/tx/v1\x00"
VOTE_DOMAIN = b"gradchain/vote/v1\x00"


def address_of(public_key: bytes) -> bytes:
    """An account's 20-byte address: the first 20 bytes of SHA-256 of its public key."""
    return hash_bytes(public_key)[:ADDRESS_SIZE]


def address_hex(address: bytes) -> str:
    return "0x" + address.hex()


def parse_address(text: str) -> bytes:
    """Parse '0x' + 40 hex digits (the 0x is optional); ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("address must be a string")
    s = text[2:] if text[:2].lower() == "0x" else text
    if len(s) != 2 * ADDRESS_SIZE:
        raise ValueError(f"address must be 40 hex digits, got {len(s)} characters")
    return parse_hex(s, "address")


_HEX = frozenset("0123456789abcdefABCDEF")


def parse_hex(s: str, what: str = "value") -> bytes:
    """Strict hex: digits only (bytes.fromhex alone would skip whitespace)."""
    if len(s) % 2 or not _HEX.issuperset(s):
        raise ValueError(f"{what} is not valid hex")
    return bytes.fromhex(s)


def signing_bytes(domain: bytes, chain_id: str, payload: bytes) -> bytes:
    cid = chain_id.encode()
    if len(cid) > 255:
        raise ValueError("chain id is over 255 bytes")
    return domain + len(cid).to_bytes(1, "big") + cid + payload


@dataclass(frozen=True)
class PrivateKey:
    """An ed25519 key pair held by a user or a validator."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ValueError("an ed25519 seed is 32 bytes")
        object.__setattr__(self, "_sk", nacl.signing.SigningKey(self.seed))

    @classmethod
    def generate(cls) -> "PrivateKey":
        return cls(os.urandom(32))

    @classmethod
    def from_label(cls, label: str) -> "PrivateKey":
        """A key derived from a public label: for devnets and tests only, never for value."""
        return cls(hash_bytes(b"gradchain insecure dev key\x00" + label.encode()))

    @property
    def public_key(self) -> bytes:
        return bytes(self._sk.verify_key)  # type: ignore[attr-defined]

    @property
    def address(self) -> bytes:
        return address_of(self.public_key)

    def sign(self, domain: bytes, chain_id: str, payload: bytes) -> bytes:
        return self._sk.sign(signing_bytes(domain, chain_id, payload)).signature  # type: ignore[attr-defined]

    def __repr__(self) -> str:  # never print the seed by accident
        return f"PrivateKey(address={address_hex(self.address)})"


def verify(public_key: bytes, signature: bytes, domain: bytes, chain_id: str, payload: bytes) -> bool:
    """True iff signature is public_key's signature of (domain, chain_id, payload)."""
    if len(public_key) != PUBKEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + signing_bytes(domain, chain_id, payload), public_key)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False


def save_key(key: PrivateKey, path: str | Path) -> None:
    """Write a key file readable by its owner only (0600), whole or not at all (a crash never
    leaves a torn key); never overwrite an existing key (FileExistsError)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"type": "ed25519", "seed": key.seed.hex(),
                       "public_key": key.public_key.hex(), "address": address_hex(key.address)}, indent=2)
    create_durably(path, (body + "\n").encode(), 0o600)


def load_key(path: str | Path) -> PrivateKey:
    """Read a key file written by save_key; ValueError with the reason if it is not one."""
    try:
        doc = json.loads(Path(path).read_text())
        if doc.get("type") != "ed25519":
            raise ValueError("it is not an ed25519 key file")
        key = PrivateKey(parse_hex(doc["seed"], "seed"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"cannot read key file {path}: {e}") from None
    if "public_key" in doc and doc["public_key"] != key.public_key.hex():
        raise ValueError(f"key file {path} is corrupt: public key does not match seed")
    return key
