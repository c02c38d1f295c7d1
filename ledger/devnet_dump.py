"""The devnet's state dump (devnet_dump / devnet_load): a versioned JSON document.

Anvil's dumps break across its versions; ours carry `version`, and every version ever
written keeps its reader in READERS, so a dump written today loads in every later release
(tests/data/devnet_dump_v1.json is a version 1 dump, loaded by the tests).

Version 1:
    {"format": "gradchain-state-dump", "version": 1, "chain_id": str, "height": int,
     "block_hash": hex, "state_root": hex, "entries": [[key hex, value hex], ...]}
`entries` is the whole state after block `height`, in key order: each state key and its
stored value as ledger/state.py writes them at version 1 (accounts, code, storage,
staking, blob and job records).  `state_root` is their root (ledger/trie.py), checked on
reading, so a dump that was cut or edited is refused.  A later version that changes an
encoding translates version 1 entries in its reader; it never changes this one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ledger.block import Header
from ledger.state import State, set_raw
from ledger.trie import root_from_items

DUMP_FORMAT = "gradchain-state-dump"
DUMP_VERSION = 1  # the version devnet_dump writes
MAX_DUMP_ENTRIES = 500_000  # state entries one dump may hold (either way)
_V1_FIELDS = {"format", "version", "chain_id", "height", "block_hash", "state_root", "entries"}


class DumpError(ValueError):
    """A document that is not a dump this release can load: says what is wrong."""


@dataclass(frozen=True)
class Dump:
    """A dump as read: the state it holds and where it came from."""

    version: int
    chain_id: str
    height: int
    state_root: bytes
    entries: dict[bytes, bytes]


def write_dump(chain_id: str, header: Header, items: Iterable[tuple[bytes, bytes]]) -> dict:
    """The current version's document of the state `items` after block `header`."""
    entries = [[k.hex(), v.hex()] for k, v in items]
    if len(entries) > MAX_DUMP_ENTRIES:
        raise DumpError(f"the state holds {len(entries)} entries, over the dump limit of {MAX_DUMP_ENTRIES}")
    return {"format": DUMP_FORMAT, "version": DUMP_VERSION, "chain_id": chain_id, "height": header.height,
            "block_hash": header.hash.hex(), "state_root": header.state_root.hex(), "entries": entries}


def _hex(v: Any, what: str) -> bytes:
    if type(v) is not str:
        raise DumpError(f"{what} must be a hex string")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise DumpError(f"{what} is not hex") from None


def _read_v1(doc: dict) -> Dump:
    unknown = set(doc) - _V1_FIELDS
    missing = _V1_FIELDS - set(doc)
    if unknown or missing:
        raise DumpError(f"a version 1 dump has exactly the fields {sorted(_V1_FIELDS)} "
                        f"(missing {sorted(missing)}, unknown {sorted(unknown)})")
    if type(doc["chain_id"]) is not str or type(doc["height"]) is not int or doc["height"] < 0:
        raise DumpError("chain_id must be a string and height a non-negative integer")
    root = _hex(doc["state_root"], "state_root")
    raw = doc["entries"]
    if type(raw) is not list or len(raw) > MAX_DUMP_ENTRIES:
        raise DumpError(f"entries must be a list of at most {MAX_DUMP_ENTRIES} [key, value] pairs")
    entries: dict[bytes, bytes] = {}
    check = State(lambda k: None)
    for i, e in enumerate(raw):
        if type(e) is not list or len(e) != 2:
            raise DumpError(f"entry {i} must be a [key hex, value hex] pair")
        k, v = _hex(e[0], f"entry {i} key"), _hex(e[1], f"entry {i} value")
        if k in entries:
            raise DumpError(f"entry {i}: key {e[0]} appears twice")
        try:
            set_raw(check, k, v)
        except (ValueError, TypeError) as err:
            raise DumpError(f"entry {i} (key {e[0]}): {err}") from None
        entries[k] = v
    if root_from_items(entries) != root:
        raise DumpError("the entries do not hash to the dump's state_root: the dump is cut or edited")
    return Dump(1, doc["chain_id"], doc["height"], root, entries)


READERS: dict[int, Callable[[dict], Dump]] = {1: _read_v1}


def read_dump(doc: Any) -> Dump:
    """Any version's document -> Dump; DumpError says why it cannot be loaded."""
    if not isinstance(doc, dict) or doc.get("format") != DUMP_FORMAT:
        raise DumpError(f'not a state dump: expected an object with "format": "{DUMP_FORMAT}"')
    version = doc.get("version")
    reader = READERS.get(version) if type(version) is int else None
    if reader is None:
        raise DumpError(f"dump version {version!r} is unknown to this node (it reads versions "
                        f"{sorted(READERS)}): load it with a newer gradchain")
    return reader(doc)
