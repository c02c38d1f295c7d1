"""Double-sign protection: a validator's key signs a proposal or a vote only after it has
durably written down what it is about to sign (CometBFT privval FilePV).

The state file holds the last signed (height, round, step) and the hash of its sign bytes.
Rules, checked against it before every signature:

- a lower (height, round, step) than the last one is refused (SignRegression);
- the same (height, round, step) is signed again only for identical sign bytes, which gives
  the identical signature (ed25519 is deterministic, RFC 8032); different bytes are refused
  (DoubleSignRefused);
- a higher one is first written to the state file (temp file, fsync, os.replace, fsync of
  the directory), and only then signed.

So whatever instant the process dies at, the file already names every value whose signature
could have left it, and a restarted Signer refuses any other value for that step.  A missing
file is a fresh validator; a file that cannot be read, or belongs to another key or chain,
stops the start (a guess could double-sign).  A lock file keeps a second Signer, in this or
another process, off the same state file.
"""
from __future__ import annotations

import errno
import fcntl
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

from ledger import errors
from ledger.encoding import DecodeError, decode, encode
from ledger.files import write_durably
from ledger.hashing import hash_bytes
from ledger.keys import VOTE_DOMAIN, PrivateKey, signing_bytes

from ledger.votes import NIL, PRECOMMIT, PREVOTE, VOTE_VERSION, vote_payload

STATE_VERSION = 1
PROPOSAL = 32  # message type of a proposal (CometBFT SignedMsgType), beside PREVOTE and PRECOMMIT

# Steps within a round, in the order a validator signs them.
STEP_PROPOSE = 1
STEP_PREVOTE = 2
STEP_PRECOMMIT = 3
VOTE_STEP = {PREVOTE: STEP_PREVOTE, PRECOMMIT: STEP_PRECOMMIT}

HASH_SIZE = 32
MAX_STATE_FILE = 4096

# Test hook only: "before_replace" or "after_persist" makes the process SIGKILL itself at that
# point of a signature, to prove that a crash there never permits a conflicting signature.
CRASH_ENV = "GRADCHAIN_SIGNER_TEST_CRASH"


class SignerError(Exception):
    """Base of the signer's refusals."""


class DoubleSignRefused(SignerError):
    """Different sign bytes for a (height, round, step) that was already signed."""


class SignRegression(SignerError):
    """A (height, round, step) below the last one signed."""


class SignerStateCorrupt(SignerError):
    """The state file cannot be read: refuse to start rather than risk a double signature."""


class SignerStateMismatch(SignerError):
    """The state file belongs to another key or chain."""


class SignerLocked(SignerError):
    """Another Signer holds this state file."""


def proposal_payload(height: int, round_: int, pol_round: int, block_hash: bytes) -> bytes:
    """What a proposer signs: 6 fields and type PROPOSAL, so it can never equal a vote payload."""
    return encode([VOTE_VERSION, PROPOSAL, height, round_, pol_round, block_hash])


@dataclass(frozen=True, slots=True)
class SignState:
    """The last (height, round, step) signed and the hash of its sign bytes (b"" when fresh)."""

    height: int = 0
    round: int = 0
    step: int = 0
    sign_bytes_hash: bytes = b""

    @property
    def hrs(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)


def encode_state(state: SignState, address: bytes, chain_id: str) -> bytes:
    """The state file: a record and its SHA-256, so a torn or flipped byte is seen, not trusted."""
    record = encode([STATE_VERSION, address, chain_id, state.height, state.round, state.step,
                     state.sign_bytes_hash])
    return encode([record, hash_bytes(record)])


def decode_state(data: bytes, address: bytes, chain_id: str) -> SignState:
    """Parse a state file; SignerStateCorrupt or SignerStateMismatch if it cannot be trusted."""
    try:
        outer = decode(data, MAX_STATE_FILE)
        if type(outer) is not list or len(outer) != 2 or type(outer[0]) is not bytes \
                or outer[1] != hash_bytes(outer[0]):
            raise SignerStateCorrupt("checksum does not match")
        rec = decode(outer[0])
    except DecodeError as e:
        raise SignerStateCorrupt(f"not a signer state file: {e}") from None
    if type(rec) is not list or len(rec) != 7 or rec[0] != STATE_VERSION:
        raise SignerStateCorrupt("unknown state record layout")
    _, addr, cid, height, round_, step, h = rec
    if not (type(height) is int and type(round_) is int and type(step) is int and type(h) is bytes
            and height >= 1 and round_ >= 0 and step in (STEP_PROPOSE, STEP_PREVOTE, STEP_PRECOMMIT)
            and len(h) == HASH_SIZE):
        raise SignerStateCorrupt("state record fields are out of range")
    if addr != address or cid != chain_id:
        raise SignerStateMismatch("the state file belongs to another validator key or chain")
    return SignState(height, round_, step, h)


def _kill_self() -> None:
    """The crash tests' hook (CRASH_ENV): die here, as a power cut would."""
    os.kill(os.getpid(), signal.SIGKILL)


class Signer:
    """A validator key that never signs two different values for one (height, round, step)."""

    def __init__(self, key: PrivateKey, chain_id: str, path: str | Path):
        self.key, self.chain_id, self.path = key, chain_id, Path(path)
        self._mutex = threading.Lock()
        self._crash = os.environ.get(CRASH_ENV, "")
        self.on_full: Callable[[errors.StorageFull], None] | None = None  # told when the disk is full
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file: IO[str] | None = self._take_lock()
        try:
            self.state = self._load()
        except BaseException:
            self.close()
            raise

    def _take_lock(self) -> IO[str]:
        f = open(self.path.with_name(self.path.name + ".lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise SignerLocked(f"another signer is using {self.path}") from None
        return f

    def _load(self) -> SignState:
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_STATE_FILE + 1)
        except FileNotFoundError:
            return SignState()
        try:
            return decode_state(data, self.key.address, self.chain_id)
        except SignerError as e:
            raise type(e)(f"signer state {self.path}: {e}; refusing to start "
                          "(restore it, or remove it only if this key never signed on this chain)") from None

    def _persist(self, new: SignState) -> None:
        """Write the state before signing; a full disk is errors.StorageFull to on_full (the
        node stops) and a SignerError here: nothing is signed that is not on disk."""
        try:
            write_durably(self.path, encode_state(new, self.key.address, self.chain_id), 0o600,
                          _kill_self if self._crash == "before_replace" else None)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            full = errors.StorageFull(f"the disk holding the signer state {self.path} is full ({e.strerror}): "
                                      "free space on it, then restart the node")
            if self.on_full is not None:
                self.on_full(full)
            raise SignerError(str(full)) from None

    def close(self) -> None:
        """Release the lock; this Signer signs nothing more."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> Signer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sign_proposal(self, height: int, round_: int, pol_round: int, block_hash: bytes) -> bytes:
        """Sign a proposal of block_hash at (height, round); pol_round is -1 without a POL."""
        _check_hr(height, round_)
        if type(pol_round) is not int or not -1 <= pol_round < round_:
            raise ValueError("pol_round must be -1 or an earlier round")
        if type(block_hash) is not bytes or len(block_hash) != HASH_SIZE:
            raise ValueError("a proposal names a 32-byte block hash")
        return self._sign(height, round_, STEP_PROPOSE, proposal_payload(height, round_, pol_round, block_hash))

    def sign_vote(self, vote_type: int, height: int, round_: int, block_hash: bytes | None) -> bytes:
        """Sign a prevote or precommit for block_hash (None or NIL for no block) at (height, round)."""
        _check_hr(height, round_)
        block_hash = NIL if block_hash is None else block_hash
        if vote_type not in VOTE_STEP or type(vote_type) is not int:
            raise ValueError("vote type must be PREVOTE or PRECOMMIT")
        if type(block_hash) is not bytes or len(block_hash) not in (0, HASH_SIZE):
            raise ValueError("a vote names a 32-byte block hash or NIL")
        return self._sign(height, round_, VOTE_STEP[vote_type],
                          vote_payload(vote_type, height, round_, block_hash))

    def _sign(self, height: int, round_: int, step: int, payload: bytes) -> bytes:
        """Check the rules, persist, then sign."""
        sign_hash = hash_bytes(signing_bytes(VOTE_DOMAIN, self.chain_id, payload))
        with self._mutex:
            if self._lock_file is None:
                raise SignerError("this signer is closed")
            last = self.state
            hrs = (height, round_, step)
            if hrs < last.hrs:
                raise SignRegression(f"asked to sign height {height} round {round_} step {step}, "
                                     f"below the last signed {last.hrs}")
            if hrs == last.hrs:
                if sign_hash != last.sign_bytes_hash:
                    raise DoubleSignRefused(f"height {height} round {round_} step {step} is already "
                                            "signed for other bytes")
            else:
                new = SignState(height, round_, step, sign_hash)
                self._persist(new)
                self.state = new
                if self._crash == "after_persist":
                    _kill_self()
            return self.key.sign(VOTE_DOMAIN, self.chain_id, payload)


def _check_hr(height: int, round_: int) -> None:
    if type(height) is not int or not 1 <= height < 2**63:
        raise ValueError("height must be an integer from 1")
    if type(round_) is not int or not 0 <= round_ < 2**63:
        raise ValueError("round must be a non-negative integer")
