"""The encrypted key file (keystore, format version 1): an ed25519 seed sealed with
XSalsa20-Poly1305 (libsodium secretbox) under a key that argon2id derives from a password,
with the address and public key in clear so tools can list keys without the password.

The format is documented in docs/rpc.md ("Key files"), exactly enough for another
implementation to read it.  This module holds the format and where a password comes from
(a file, $GRADCHAIN_PASSWORD, a terminal prompt); ledger/keys.py reads and writes the files.
"""
from __future__ import annotations

import getpass
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.utils

KEYSTORE_TYPE = "gradchain-keystore"
VERSION = 1
KDF_NAME = "argon2id"
CIPHER_NAME = "xsalsa20-poly1305"
SALT_SIZE = argon2id.SALTBYTES  # 16
NONCE_SIZE = nacl.bindings.crypto_secretbox_NONCEBYTES  # 24
SEED_SIZE = 32
SEALED_SIZE = SEED_SIZE + nacl.bindings.crypto_secretbox_MACBYTES  # 16-byte tag, then the 32 bytes
PASSWORD_ENV = "GRADCHAIN_PASSWORD"


@dataclass(frozen=True)
class Limits:
    """argon2id's cost: passes over memory (opslimit) and bytes of memory (memlimit)."""

    opslimit: int
    memlimit: int


MODERATE = Limits(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)  # 3, 256 MiB: ~0.7 s here
INTERACTIVE = Limits(argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE)  # 2, 64 MiB: ~0.11 s
MINIMUM = Limits(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)  # 1, 8 KiB: tests only, no protection
DEFAULT_LIMITS = MODERATE
LIMITS_BY_NAME = {"moderate": MODERATE, "interactive": INTERACTIVE, "min": MINIMUM}
# What a file may ask of the reader: libsodium's minimum up to its SENSITIVE memory (1 GiB)
# and 16 passes, so a hostile or corrupt file cannot make loading a key take minutes or all RAM.
OPSLIMIT_RANGE = (argon2id.OPSLIMIT_MIN, 16)
MEMLIMIT_RANGE = (argon2id.MEMLIMIT_MIN, argon2id.MEMLIMIT_SENSITIVE)


class KeystoreError(ValueError):
    """A keystore that cannot be opened: corrupt, truncated, of an unknown version, asking for
    limits out of range, or no password given.  The message never holds a seed or a password."""


class WrongPassword(KeystoreError):
    """The password does not open the keystore (or its salt, nonce, limits or ciphertext were altered)."""


@dataclass(frozen=True)
class Keystore:
    """A parsed keystore: everything but the seed is in clear."""

    address: bytes
    public_key: bytes
    limits: Limits
    salt: bytes
    nonce: bytes
    sealed: bytes  # the secretbox: Poly1305 tag (16 bytes) || XSalsa20 ciphertext of the seed (32)


def check_limits(limits: Limits) -> None:
    """KeystoreError unless both limits are integers in OPSLIMIT_RANGE and MEMLIMIT_RANGE, and
    memlimit a multiple of 1024."""
    for name, v, (lo, hi) in (("opslimit", limits.opslimit, OPSLIMIT_RANGE),
                              ("memlimit", limits.memlimit, MEMLIMIT_RANGE)):
        if type(v) is not int or not lo <= v <= hi:
            raise KeystoreError(f"kdf {name} {v!r} is out of the range this gradchain accepts ({lo} to {hi})")
    if limits.memlimit % 1024:  # argon2id counts KiB: 8193 would mean what 8192 means
        raise KeystoreError(f"kdf memlimit {limits.memlimit} is not a whole number of KiB (a multiple of 1024)")


def _derive(password: bytes, salt: bytes, limits: Limits) -> bytes:
    return argon2id.kdf(nacl.bindings.crypto_secretbox_KEYBYTES, password, salt,
                        opslimit=limits.opslimit, memlimit=limits.memlimit)


def seal(seed: bytes, public_key: bytes, address: bytes, password: bytes,
         limits: Limits = DEFAULT_LIMITS) -> Keystore:
    """A new keystore of `seed` (fresh random salt and nonce)."""
    check_limits(limits)
    if len(seed) != SEED_SIZE:
        raise ValueError("an ed25519 seed is 32 bytes")
    salt, nonce = nacl.utils.random(SALT_SIZE), nacl.utils.random(NONCE_SIZE)
    sealed = nacl.bindings.crypto_secretbox(seed, nonce, _derive(password, salt, limits))
    return Keystore(address, public_key, limits, salt, nonce, sealed)


def unseal(ks: Keystore, password: bytes) -> bytes:
    """The seed; WrongPassword if the tag does not check."""
    try:
        return nacl.bindings.crypto_secretbox_open(ks.sealed, ks.nonce, _derive(password, ks.salt, ks.limits))
    except nacl.exceptions.CryptoError:
        raise WrongPassword("wrong password") from None


def to_json(ks: Keystore) -> dict:
    return {"type": KEYSTORE_TYPE, "version": VERSION,
            "address": "0x" + ks.address.hex(), "public_key": ks.public_key.hex(),
            "kdf": {"name": KDF_NAME, "opslimit": ks.limits.opslimit, "memlimit": ks.limits.memlimit,
                    "salt": ks.salt.hex()},
            "cipher": {"name": CIPHER_NAME, "nonce": ks.nonce.hex(), "ciphertext": ks.sealed.hex()}}


_HEX_RE = re.compile(r"(?:[0-9a-f]{2})*")


def _hex(obj: dict, field: str, size: int, where: str) -> bytes:
    v = obj.get(field)
    if not isinstance(v, str) or len(v) != 2 * size or not _HEX_RE.fullmatch(v):
        raise KeystoreError(f"is corrupt: {where}{field} is not {size} bytes of lowercase hex")
    return bytes.fromhex(v)


def from_json(doc: dict) -> Keystore:
    """Parse a keystore document (type already checked); KeystoreError naming what is wrong."""
    version = doc.get("version")
    if version != VERSION or type(version) is not int:
        raise KeystoreError(f"has version {version!r}; this gradchain reads version {VERSION} "
                            "(a newer gradchain wrote it?)")
    kdf, cipher = doc.get("kdf"), doc.get("cipher")
    if not isinstance(kdf, dict) or kdf.get("name") != KDF_NAME:
        raise KeystoreError(f"is corrupt: kdf is not {{\"name\": \"{KDF_NAME}\", ...}}")
    if not isinstance(cipher, dict) or cipher.get("name") != CIPHER_NAME:
        raise KeystoreError(f"is corrupt: cipher is not {{\"name\": \"{CIPHER_NAME}\", ...}}")
    address = doc.get("address")
    if not isinstance(address, str) or not address.startswith("0x"):
        raise KeystoreError("is corrupt: address is not 0x and 40 hex digits")
    limits = Limits(kdf.get("opslimit"), kdf.get("memlimit"))  # type: ignore[arg-type]
    check_limits(limits)
    return Keystore(_hex({"address": address[2:].lower()}, "address", 20, ""), _hex(doc, "public_key", 32, ""),
                    limits, _hex(kdf, "salt", SALT_SIZE, "kdf."), _hex(cipher, "nonce", NONCE_SIZE, "cipher."),
                    _hex(cipher, "ciphertext", SEALED_SIZE, "cipher."))


def read_password_file(path: Path) -> bytes:
    """A password file's bytes, less one trailing newline (\\n or \\r\\n)."""
    data = Path(path).read_bytes()
    return data.removesuffix(b"\n").removesuffix(b"\r") if data.endswith(b"\n") else data


def ask_password(keyfile: Path, password_file: Path | None = None, new: bool = False) -> bytes:
    """The password for `keyfile`: from `password_file`, else $GRADCHAIN_PASSWORD (when set and
    not empty), else a prompt on the terminal (asked twice when `new`).  KeystoreError when
    there is none (no terminal), it is empty, or the two entries differ."""
    if password_file is not None:
        try:
            pw = read_password_file(password_file)
        except OSError as e:
            raise KeystoreError(f"cannot read password file {password_file}: {e.strerror or e}") from None
    elif os.environ.get(PASSWORD_ENV):
        pw = os.environ[PASSWORD_ENV].encode()
    elif sys.stdin.isatty():
        what = "new keystore" if new else "keystore"
        try:
            pw = getpass.getpass(f"Password for {what} {keyfile}: ").encode()
            if new and getpass.getpass("Repeat the password: ").encode() != pw:
                raise KeystoreError("the two passwords differ; nothing written")
        except (KeyboardInterrupt, EOFError):
            raise KeystoreError(f"no password given for {keyfile}") from None
    else:
        what = f"the new keystore {keyfile}" if new else f"{keyfile}, an encrypted keystore,"
        raise KeystoreError(f"no password for {what} and no terminal to ask it on: set {PASSWORD_ENV} "
                            "(or, with the gradchain command, give --password-file FILE)")
    if not pw:
        raise KeystoreError(f"empty password for {keyfile}")
    return pw
