"""The genesis file: chain id, time, parameters, validators and initial balances.

Block 0 is derived from it deterministically: its parent hash is the hash of the
genesis document, its state root the root of the initial balances, so every node that
reads the same file starts from the same block hash.

`peers` ("KEYHEX@host:port" of the validators' p2p listeners) is the one field outside the
hash: where nodes listen is not consensus, and may change without changing the chain.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ledger.units import COIN  # re-exported: base units in one GRAD
from ledger.encoding import encode
from ledger.hashing import EMPTY_HASH, hash_bytes
from ledger.block import Header
from ledger.keys import PrivateKey, address_hex, parse_address
from ledger.merkle import merkle_root
from ledger.files import write_durably
from ledger.params import ChainParams
from ledger.staking import genesis_staking
from ledger.state import STAKING_PREFIX, Account, account_key, encode_account
from ledger.trie import EMPTY_ROOT, update as trie_update
from ledger.tx import MAX_CHAIN_ID_LEN, U64_MAX

from ledger.validators import Validator, ValidatorSet

GENESIS_VERSION = 1
DEVNET_CHAIN_ID = "gradchain-devnet"
DEVNET_ACCOUNTS = 10
DEVNET_BALANCE = 1_000_000 * COIN
# The devnet validator's stake: far above what the prefunded accounts hold together, so a
# developer who bonds never takes the one-validator devnet below 2/3 (it would stop).
DEVNET_STAKE = 1_000_000_000 * COIN


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    params: ChainParams
    validators: ValidatorSet
    accounts: tuple[tuple[bytes, int], ...]  # (address, balance) in address order
    peers: tuple[str, ...] = ()  # "KEYHEX@host:port", not hashed (node.py parses them)

    @classmethod
    def from_json(cls, doc: dict) -> "Genesis":
        """Parse and check a genesis document; ValueError says what is wrong."""
        if not isinstance(doc, dict):
            raise ValueError("genesis must be a JSON object")
        unknown = set(doc) - {"chain_id", "genesis_time_ms", "params", "validators", "accounts", "peers"}
        if unknown:
            raise ValueError(f"genesis has unknown fields: {sorted(unknown)}")
        try:
            chain_id = doc["chain_id"]
            time_ms = doc["genesis_time_ms"]
            vals = doc["validators"]
            accts = doc.get("accounts", [])
            peers = doc.get("peers", [])
            params = ChainParams.from_json(doc.get("params", {}))
        except KeyError as e:
            raise ValueError(f"genesis is missing the field {e.args[0]!r}") from None
        if type(chain_id) is not str or not 0 < len(chain_id.encode()) <= MAX_CHAIN_ID_LEN or not chain_id.isprintable():
            raise ValueError(f"genesis chain_id must be a printable string of 1 to {MAX_CHAIN_ID_LEN} UTF-8 bytes")
        if type(time_ms) is not int or not 0 <= time_ms <= U64_MAX:
            raise ValueError("genesis_time_ms must be a non-negative integer")
        try:
            validators = ValidatorSet(tuple(Validator(bytes.fromhex(v["public_key"]), v["stake"]) for v in vals))
            balances: dict[bytes, int] = {}
            for a in accts:
                addr, bal = parse_address(a["address"]), a["balance"]
                if type(bal) is not int or not 0 < bal <= U64_MAX:
                    raise ValueError(f"balance of {a['address']} must be a positive integer below 2**64")
                if addr in balances:
                    raise ValueError(f"account {a['address']} appears twice")
                balances[addr] = bal
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"malformed genesis validator or account entry: {e}") from None
        if any(len(v.public_key) != 32 for v in validators.validators):
            raise ValueError("validator public keys are 32 bytes of hex")
        if sum(balances.values()) > U64_MAX:
            raise ValueError("total supply must stay below 2**64 base units")
        if type(peers) is not list or any(type(p) is not str or "@" not in p for p in peers):
            raise ValueError('genesis peers must be a list of "KEYHEX@host:port" strings')
        return cls(chain_id, time_ms, params, validators, tuple(sorted(balances.items())), tuple(peers))

    def to_json(self) -> dict:
        return {"chain_id": self.chain_id, "genesis_time_ms": self.genesis_time_ms,
                "params": self.params.to_json(),
                "validators": [{"address": address_hex(v.address), "public_key": v.public_key.hex(),
                                "stake": v.stake} for v in self.validators.validators],
                "accounts": [{"address": address_hex(a), "balance": b} for a, b in self.accounts],
                **({"peers": list(self.peers)} if self.peers else {})}

    def encode(self) -> bytes:
        return encode([GENESIS_VERSION, self.chain_id, self.genesis_time_ms, self.params.to_wire(),
                       [[v.public_key, v.stake] for v in self.validators.validators],
                       [[a, b] for a, b in self.accounts]])

    @property
    def hash(self) -> bytes:
        return hash_bytes(self.encode())

    def initial_state(self) -> tuple[dict[bytes, bytes | None], bytes, dict[bytes, bytes]]:
        """(changes, state root, trie nodes) of the state before block 1."""
        changes: dict[bytes, bytes | None] = {account_key(a): encode_account(Account(b, 0)) for a, b in self.accounts}
        changes.update((STAKING_PREFIX + k, encode(v)) for k, v in genesis_staking(self.validators).items())
        root, nodes = trie_update(lambda h: (_ for _ in ()).throw(KeyError(h)), EMPTY_ROOT, changes)
        return changes, root, nodes

    def header(self, state_root: bytes) -> Header:
        """Block 0."""
        vh = self.validators.hash
        return Header(self.chain_id, 0, self.genesis_time_ms, self.hash, bytes(20), merkle_root([]),
                      merkle_root([]), state_root, vh, vh, EMPTY_HASH)


def load_genesis(path: str | Path) -> Genesis:
    try:
        doc = json.loads(Path(path).read_bytes())  # UTF-8 whatever the locale (json reads bytes as RFC 8259 says)
    except (OSError, ValueError) as e:  # a JSONDecodeError or a UnicodeDecodeError
        raise ValueError(f"cannot read genesis file {path}: {e}") from None
    return Genesis.from_json(doc)


def write_genesis(genesis: Genesis, path: str | Path) -> None:
    """Write a genesis file atomically: a crash leaves no file or the whole file."""
    write_durably(path, (json.dumps(genesis.to_json(), indent=2) + "\n").encode())


MAX_DEVNET_ACCOUNTS = 1000  # dev accounts a devnet may fund (each is printed in the banner)
MAX_SEED_BYTES = 256  # the length of a devnet seed phrase (UTF-8)


def devnet_key(i: int, seed: str | None = None) -> PrivateKey:
    """Devnet account i's key.

    Without a seed, PrivateKey.from_label("devnet account i") (every devnet's keys, as Anvil's
    are); with one (any phrase, node.py --seed), SHA-256 of a domain tag, the phrase's UTF-8
    bytes, a zero byte and i as 4 bytes big-endian: the same phrase gives the same keys."""
    if seed is None:
        return PrivateKey.from_label(f"devnet account {i}")
    return PrivateKey(hash_bytes(b"gradchain devnet seed\x00" + seed.encode() + b"\x00" + i.to_bytes(4, "big")))


def devnet_keys(n: int = DEVNET_ACCOUNTS, seed: str | None = None) -> list[PrivateKey]:
    """The devnet's first n prefunded accounts (devnet_key 0 .. n-1)."""
    return [devnet_key(i, seed) for i in range(n)]


def devnet_validator_key() -> PrivateKey:
    return PrivateKey.from_label("devnet validator 0")


def devnet_genesis(time_ms: int, n_accounts: int = DEVNET_ACCOUNTS,
                   validator: PrivateKey | None = None, balance: int = DEVNET_BALANCE,
                   seed: str | None = None) -> Genesis:
    """A one-validator devnet: n_accounts dev keys (of `seed`) funded with `balance` base units each."""
    v = validator or devnet_validator_key()
    return Genesis(DEVNET_CHAIN_ID, time_ms, ChainParams(), ValidatorSet((Validator(v.public_key, DEVNET_STAKE),)),
                   tuple(sorted((k.address, balance) for k in devnet_keys(n_accounts, seed))))
