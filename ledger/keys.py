"""Ed25519 keys (PyNaCl), addresses, domain-separated signing, and key files (plaintext, or
the encrypted keystore of ledger/keystore.py: load_key tells them apart).

Every signed message is `domain tag || chain id || payload`: a signature made for one
purpose (a transaction, a vote) or one chain can never be replayed as another.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.signing

from ledger import keystore
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


Password = str | bytes | Callable[[Path], str | bytes] | None
"""What load_key takes: the password itself, a function asked for it (called only when the
file is a keystore, with its path: keystore.ask_password reads --password-file, the
environment or the terminal), or None (a keystore then fails)."""


def save_key(key: PrivateKey, path: str | Path, password: str | bytes | None = None,
             limits: keystore.Limits = keystore.DEFAULT_LIMITS) -> None:
    """Write a key file readable by its owner only (0600), whole or not at all (a crash never
    leaves a torn key); never overwrite an existing key (FileExistsError).  With a password,
    an encrypted keystore (ledger/keystore.py, argon2id at `limits`); without, the plaintext
    file (devnets and tests)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if password is None:
        doc = {"type": "ed25519", "seed": key.seed.hex(),
               "public_key": key.public_key.hex(), "address": address_hex(key.address)}
    else:
        pw = password.encode() if isinstance(password, str) else password
        doc = keystore.to_json(keystore.seal(key.seed, key.public_key, key.address, pw, limits))
    create_durably(path, (json.dumps(doc, indent=2) + "\n").encode(), 0o600)


def _read_doc(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:  # UnicodeDecodeError and a truncated file included
        raise ValueError(f"cannot read key file {path}: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"cannot read key file {path}: it is not a key file (not a JSON object)")
    return doc


def read_keystore(path: str | Path) -> keystore.Keystore | None:
    """The keystore at `path` parsed without its password (its address and public key are in
    clear), or None when it is a plaintext key file; ValueError when it is neither."""
    return _keystore_of(Path(path), _read_doc(Path(path)))


def _keystore_of(path: Path, doc: dict) -> keystore.Keystore | None:
    if doc.get("type") != keystore.KEYSTORE_TYPE:
        return None
    try:
        return keystore.from_json(doc)
    except keystore.KeystoreError as e:
        raise keystore.KeystoreError(f"keystore {path} {e}") from None


def load_key(path: str | Path, password: Password = None) -> PrivateKey:
    """Read a key file written by save_key, plaintext or keystore (told apart by its `type`);
    ValueError with the reason if it is not one, keystore.WrongPassword ("wrong password for
    keystore FILE") if the password does not open it."""
    path = Path(path)
    doc = _read_doc(path)
    ks = _keystore_of(path, doc)
    if ks is not None:
        return _open_keystore(path, ks, password)
    try:
        if doc.get("type") != "ed25519":
            raise ValueError("it is not an ed25519 key file")
        key = PrivateKey(parse_hex(doc["seed"], "seed"))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"cannot read key file {path}: {e}") from None
    if "public_key" in doc and doc["public_key"] != key.public_key.hex():
        raise ValueError(f"key file {path} is corrupt: public key does not match seed")
    return key


def _open_keystore(path: Path, ks: keystore.Keystore, password: Password) -> PrivateKey:
    if password is None:
        raise keystore.KeystoreError(f"{path} is an encrypted keystore: give its password")
    pw = password(path) if callable(password) else password
    try:
        key = PrivateKey(keystore.unseal(ks, pw.encode() if isinstance(pw, str) else pw))
    except keystore.WrongPassword:
        raise keystore.WrongPassword(f"wrong password for keystore {path}") from None
    if key.public_key != ks.public_key or key.address != ks.address:
        raise keystore.KeystoreError(f"keystore {path} is corrupt: its address {address_hex(ks.address)} or public "
                                     f"key is not that of the key it holds ({address_hex(key.address)})")
    return key
