"""World state as seen while executing: committed values underneath, changes on top.

State keys are prefixed by what they hold: b"a" + address for an account, b"c" +
address for a contract's code, b"s" + address + encoded key for a contract's storage
(the value is the VM's encoding of the stored value, kept as bytes), b"v" + name for
staking records (ledger/staking.py, canonical msgpack), b"b" + root for a blob's record
(ledger/blob_records.py) and b"j" + id for a job's (ledger/jobs.py), both canonical msgpack.  A journal
of previous values gives atomic rollback of one transaction (or of a nested call, later)
and the written keys become the block's change set for the trie and LMDB.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ledger.encoding import decode, encode

ACCOUNT_PREFIX = b"a"
CODE_PREFIX = b"c"
STORAGE_PREFIX = b"s"
STAKING_PREFIX = b"v"
BLOB_PREFIX = b"b"
JOB_PREFIX = b"j"
ACCOUNT_VERSION = 1
CODE_VERSION = 1

_MISSING = object()


@dataclass(frozen=True, slots=True)
class Account:
    balance: int = 0
    nonce: int = 0


EMPTY_ACCOUNT = Account()


def account_key(address: bytes) -> bytes:
    return ACCOUNT_PREFIX + address


def encode_account(a: Account) -> bytes:
    return encode([ACCOUNT_VERSION, a.balance, a.nonce])


def decode_account(raw: bytes) -> Account:
    w = decode(raw)
    if not (isinstance(w, list) and len(w) == 3 and w[0] == ACCOUNT_VERSION):
        raise ValueError("stored account is corrupt")
    return Account(w[1], w[2])


def code_key(address: bytes) -> bytes:
    return CODE_PREFIX + address


def storage_key(address: bytes, key: bytes) -> bytes:
    return STORAGE_PREFIX + address + key


def encode_code(source: str) -> bytes:
    return encode([CODE_VERSION, source])


def decode_code(raw: bytes) -> str:
    w = decode(raw)
    if not (isinstance(w, list) and len(w) == 2 and w[0] == CODE_VERSION and type(w[1]) is str):
        raise ValueError("stored contract code is corrupt")
    return w[1]


def _same(raw: bytes) -> bytes:
    return raw


_ENCODERS: dict[bytes, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {
    ACCOUNT_PREFIX: (encode_account, decode_account),
    CODE_PREFIX: (encode_code, decode_code),
    STORAGE_PREFIX: (_same, _same),
    STAKING_PREFIX: (encode, decode),
    BLOB_PREFIX: (encode, decode),
    JOB_PREFIX: (encode, decode),
}


class State:
    """One block's view of the world. Read with the functions below, never directly."""

    __slots__ = ("_read", "_cache", "_written", "_journal", "_marks")

    def __init__(self, read: Callable[[bytes], bytes | None]):
        self._read = read  # committed value of a state key, or None
        self._cache: dict[bytes, Any] = {}  # decoded current values (None = absent)
        self._written: dict[bytes, None] = {}  # keys changed in this block, in write order
        self._journal: list[tuple[bytes, Any, bool]] = []
        self._marks: list[int] = []


def _load(state: State, key: bytes) -> Any:
    v = state._cache.get(key, _MISSING)
    if v is _MISSING:
        raw = state._read(key)
        v = None if raw is None else _ENCODERS[key[:1]][1](raw)
        state._cache[key] = v
    return v


def _store(state: State, key: bytes, value: Any) -> None:
    if state._marks:
        state._journal.append((key, state._cache.get(key, _MISSING), key in state._written))
    state._cache[key] = value
    state._written[key] = None


def get_account(state: State, address: bytes) -> Account:
    return _load(state, ACCOUNT_PREFIX + address) or EMPTY_ACCOUNT


def set_account(state: State, address: bytes, account: Account) -> None:
    """Write an account; an empty one (no balance, no nonce) is deleted from state."""
    _store(state, ACCOUNT_PREFIX + address, None if account == EMPTY_ACCOUNT else account)


def get_code(state: State, address: bytes) -> str | None:
    return _load(state, CODE_PREFIX + address)


def set_code(state: State, address: bytes, source: str) -> None:
    _store(state, CODE_PREFIX + address, source)


def get_storage(state: State, address: bytes, key: bytes) -> bytes | None:
    return _load(state, STORAGE_PREFIX + address + key)


def set_storage(state: State, address: bytes, key: bytes, value: bytes | None) -> None:
    """Write a contract's storage value (encoded); None deletes it."""
    _store(state, STORAGE_PREFIX + address + key, value)


def get_staking(state: State, name: bytes) -> Any:
    """A staking record (a msgpack value), or None."""
    return _load(state, STAKING_PREFIX + name)


def set_staking(state: State, name: bytes, value: Any) -> None:
    """Write a staking record; None deletes it."""
    _store(state, STAKING_PREFIX + name, value)


def get_record(state: State, prefix: bytes, name: bytes) -> Any:
    """A built-in module's record (BLOB_PREFIX, JOB_PREFIX; a msgpack value), or None."""
    assert prefix in (BLOB_PREFIX, JOB_PREFIX)
    return _load(state, prefix + name)


def set_record(state: State, prefix: bytes, name: bytes, value: Any) -> None:
    """Write a built-in module's record; None deletes it."""
    assert prefix in (BLOB_PREFIX, JOB_PREFIX)
    _store(state, prefix + name, value)


def set_raw(state: State, key: bytes, raw: bytes | None) -> None:
    """Write any state key from its stored encoding (None deletes it): devnet controls
    (consensus/devnet.py) that change state outside transactions.  ValueError for a key of
    no known kind or a value that does not decode."""
    codec = _ENCODERS.get(key[:1])
    if codec is None:
        raise ValueError(f"state key {key.hex()} has no known prefix")
    _store(state, key, None if raw is None else codec[1](raw))


def begin_transaction(state: State) -> None:
    """Open a rollback point; they nest (a call inside a call)."""
    state._marks.append(len(state._journal))


def commit_transaction(state: State) -> None:
    state._marks.pop()
    if not state._marks:
        state._journal.clear()


def rollback_transaction(state: State) -> None:
    """Undo every write since the matching begin_transaction."""
    mark = state._marks.pop()
    journal = state._journal
    while len(journal) > mark:
        key, old, was_written = journal.pop()
        if old is _MISSING:
            state._cache.pop(key, None)
        else:
            state._cache[key] = old
        if not was_written:
            state._written.pop(key, None)


def changes(state: State) -> dict[bytes, bytes | None]:
    """The block's change set: state key -> new encoded value, or None for deleted."""
    assert not state._marks, "changes() inside an open transaction"
    out: dict[bytes, bytes | None] = {}
    for key in state._written:
        v = state._cache[key]
        out[key] = None if v is None else _ENCODERS[key[:1]][0](v)
    return out
