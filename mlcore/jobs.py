"""The numeric core of training jobs (docs/mlcore.md section 9): the batch order, checkpoints and
their hashes, segments of k steps, and the worker's loop.

A job is trained off chain and settled on chain by bisection over its checkpoints, so every node
must be able to re-execute any one segment of k steps from a checkpoint and get the worker's bits.
Everything here is exact and host-independent: the batch order is an integer Fisher-Yates shuffle
driven by the one SplitMix64 of mlcore.fixed, a checkpoint has one canonical byte encoding, and a
segment is one mlcore.programs.train call that gives the same bits as the same steps inside one
long run.  Nothing of the project but mlcore is imported (tests/test_layering.py).
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from mlcore import programs
from mlcore.fixed import GOLDEN, MASK64, WEIGHTS, rng_key
from mlcore.limits import MAX_ROWS, MAX_STEPS
from mlcore.models import KINDS, Arch, check_hyper, host_random_bits

ORDER_STREAM = 0x6F72646572  # b"order": the rng_key stream of the batch order (init uses streams = layer index)
MAX_BATCHES = (1 << 31) - 1   # batches of a data set (batch indices are int32)
MAX_JOB_STEPS = 1 << 32       # training steps of a job
CHECKPOINT_MAGIC = b"GCCK"
CHECKPOINT_VERSION = 1
_HEADER = struct.Struct("<4sHBB")  # magic, version, kind code, number of layer widths
_WORDS_CHUNK = 1 << 16             # draw words computed per numpy pass

Params = tuple[np.ndarray, ...]
Checkpoint = tuple[Params, Params]  # (params, velocity)


class CheckpointError(ValueError):
    """Bytes that are not the canonical encoding of a checkpoint of the given architecture."""


def _int(name: str, v, lo: int, hi: int) -> int:
    """A plain int (numpy ints too; not bool) in [lo, hi], else ValueError naming it."""
    if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)) or not lo <= v <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {v!r}")
    return int(v)


# ---- the batch order ------------------------------------------------------------------------------

def order_key(seed: int, epoch: int) -> int:
    """The SplitMix64 key of one epoch's shuffle: rng_key(seed, epoch, 0, ORDER_STREAM)."""
    return rng_key(seed, epoch, 0, ORDER_STREAM)


def _words(key: int, start: int, count: int) -> np.ndarray:
    """Words start..start+count-1 of the stream `key`: word c = mix64(key + (c + 1) * GOLDEN)."""
    return host_random_bits((key + start * GOLDEN) & MASK64, (count,))


def _below(words: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lemire's draw for each (word x, bound s), s in [1, 2**32): j = floor(x * s / 2**64),
    accepted iff (x * s) mod 2**64 >= 2**64 mod s.  The 128-bit product in uint64 halves."""
    m32 = np.uint64(0xFFFFFFFF)
    s = bounds.astype(np.uint64)
    lo_prod = (words & m32) * s                       # < 2**64
    mid = (words >> np.uint64(32)) * s + (lo_prod >> np.uint64(32))  # < 2**64
    j = mid >> np.uint64(32)
    low = ((mid & m32) << np.uint64(32)) | (lo_prod & m32)
    threshold = (np.uint64(0) - s) % s                # (2**64 - s) mod s = 2**64 mod s
    return j.astype(np.int64), low >= threshold


@lru_cache(maxsize=8)
def _permutation(seed: int, batches: int, epoch: int) -> np.ndarray:
    """perm_e: Durstenfeld's Fisher-Yates over range(batches), i = batches-1 down to 1, swapping
    a[i] with a[j], j uniform in [0, i] (Lemire's draw with bound i + 1; a rejected word is
    skipped and the next word of the stream is drawn).  Read-only int32."""
    bounds = np.arange(batches, 1, -1, dtype=np.int64)  # i + 1 for i = batches-1 .. 1
    key = order_key(seed, epoch)
    js = np.empty(len(bounds), np.int64)
    done, pos = 0, 0
    while done < len(bounds):
        n = min(len(bounds) - done, _WORDS_CHUNK)
        j, ok = _below(_words(key, pos, n), bounds[done:done + n])
        bad = np.flatnonzero(~ok)
        take = int(bad[0]) if len(bad) else n
        js[done:done + take] = j[:take]
        done += take
        pos += take + (1 if len(bad) else 0)  # a rejected word is consumed
    a = list(range(batches))
    for i, j in zip(range(batches - 1, 0, -1), js.tolist()):
        a[i], a[j] = a[j], a[i]
    out = np.asarray(a, dtype=np.int32)
    out.flags.writeable = False
    return out


def batch_order(seed: int, batches: int, start: int, count: int) -> np.ndarray:
    """The batch index of steps start .. start+count-1 (int32): step t uses perm_e[t % batches]
    with e = t // batches, perm_e the Fisher-Yates shuffle of epoch e (docs/mlcore.md section 9.1)."""
    seed = _int("seed", seed, 0, MASK64)
    batches = _int("batches", batches, 1, MAX_BATCHES)
    start = _int("start", start, 0, MAX_JOB_STEPS)
    count = _int("count", count, 0, MAX_JOB_STEPS - start)
    out = np.empty(count, np.int32)
    t = start
    while t < start + count:
        e, off = divmod(t, batches)
        n = min(batches - off, start + count - t)
        out[t - start:t - start + n] = _permutation(seed, batches, e)[off:off + n]
        t += n
    return out


# ---- checkpoints ----------------------------------------------------------------------------------

def _header(arch: Arch) -> bytes:
    return (_HEADER.pack(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, KINDS.index(arch.kind), len(arch.layers))
            + struct.pack(f"<{len(arch.layers)}I", *arch.layers))


def checkpoint_size(arch: Arch) -> int:
    """Bytes of a checkpoint's encoding: 8 + 4 * len(layers) + 8 * arch.size."""
    return _HEADER.size + 4 * len(arch.layers) + 8 * arch.size


def _flat(arch: Arch, name: str, arrays: Sequence) -> np.ndarray:
    """The arrays checked (int32, arch.shapes, within WEIGHTS) and concatenated row-major."""
    arrays = [np.asarray(a) for a in arrays]
    if [a.shape for a in arrays] != list(arch.shapes) or any(a.dtype != np.int32 for a in arrays):
        raise ValueError(f"{name} must be int32 arrays of shapes {arch.shapes}, got "
                         f"{[(a.dtype.name, a.shape) for a in arrays]}")
    flat = np.concatenate(arrays, axis=None)
    if int(flat.max()) > WEIGHTS.max_abs or int(flat.min()) < -WEIGHTS.max_abs:
        bad = np.flatnonzero(np.abs(flat.astype(np.int64)) > WEIGHTS.max_abs)[0]
        k = int(np.searchsorted(np.cumsum([a.size for a in arrays]), bad, side="right"))
        raise ValueError(f"{name}[{k}] has a value outside +-{WEIGHTS.max_abs} (WEIGHTS)")
    return flat


def encode_checkpoint(arch: Arch, params: Sequence, velocity: Sequence) -> bytes:
    """The canonical bytes of (params, velocity): header (magic b"GCCK", u16 version 1, u8 kind
    index in KINDS, u8 widths, u32 per width), then every array int32 little-endian, row-major, in
    arch.shapes order, params then velocity."""
    arch.check()
    flat = np.concatenate([_flat(arch, "params", params), _flat(arch, "velocity", velocity)])
    return _header(arch) + flat.astype("<i4", copy=False).tobytes()


def decode_checkpoint(arch: Arch, data: bytes) -> Checkpoint:
    """(params, velocity) from encode_checkpoint's bytes; CheckpointError unless `data` is exactly
    the encoding of a checkpoint of `arch` (length, magic, version, kind, widths, WEIGHTS bounds)."""
    arch.check()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CheckpointError(f"a checkpoint must be bytes, got {type(data).__name__}")
    data = bytes(data)
    want = checkpoint_size(arch)
    if len(data) != want:
        raise CheckpointError(f"a {arch.kind} {arch.layers} checkpoint is {want} bytes, got {len(data)}")
    head = _header(arch)
    if data[:4] != CHECKPOINT_MAGIC:
        raise CheckpointError(f"bad checkpoint magic {data[:4]!r}, expected {CHECKPOINT_MAGIC!r}")
    if data[4:6] != head[4:6]:
        raise CheckpointError(f"checkpoint version {struct.unpack('<H', data[4:6])[0]}, "
                              f"expected {CHECKPOINT_VERSION}")
    if data[:len(head)] != head:
        raise CheckpointError(f"the checkpoint's header does not name {arch.kind} {arch.layers}")
    values = np.frombuffer(data, dtype="<i4", offset=len(head)).astype(np.int32)
    if int(np.abs(values.astype(np.int64)).max(initial=0)) > WEIGHTS.max_abs:
        at = int(np.flatnonzero(np.abs(values.astype(np.int64)) > WEIGHTS.max_abs)[0])
        raise CheckpointError(f"checkpoint value {at} ({int(values[at])}) is outside +-{WEIGHTS.max_abs}")
    arrays, off = [], 0
    for shape in arch.shapes * 2:
        n = int(np.prod(shape))
        arrays.append(values[off:off + n].reshape(shape))
        off += n
    half = len(arch.shapes)
    return tuple(arrays[:half]), tuple(arrays[half:])


def checkpoint_hash(arch: Arch, params: Sequence, velocity: Sequence) -> bytes:
    """sha256(encode_checkpoint(arch, params, velocity)), 32 bytes."""
    return hashlib.sha256(encode_checkpoint(arch, params, velocity)).digest()


def initial_checkpoint(arch: Arch, seed: int) -> Checkpoint:
    """Checkpoint 0: (mlcore init(arch, seed), zero velocity)."""
    params = programs.init(arch, seed)
    return params, tuple(np.zeros_like(p) for p in params)


# ---- segments --------------------------------------------------------------------------------------

def run_segment(arch: Arch, params: Sequence, velocity: Sequence, x: np.ndarray, y: np.ndarray,
                lr: int, momentum: int, batch: int) -> tuple[Params, Params, list[int]]:
    """k = rows / batch SGD steps over the rows of x given in step order (step s trains on rows
    [s*batch, (s+1)*batch)), in one mlcore.programs.train call.  Returns (params, velocity, the k
    losses, Q.16 ints, each before its step)."""
    rows = x.shape[0] if isinstance(x, np.ndarray) and x.ndim == 2 else None
    batch = _int("batch", batch, 1, MAX_ROWS)
    if rows is None or rows == 0 or rows % batch:
        raise ValueError(f"a segment needs whole batches: x must be 2-d with rows a multiple of "
                         f"{batch}, got shape {getattr(x, 'shape', None)}")
    p, v, losses, _ = programs.train(arch, tuple(params), tuple(velocity), x, y, lr, momentum,
                                     batch=batch, epochs=1)
    return p, v, losses


@dataclass(frozen=True)
class JobSpec:
    """A training job: the model, its init seed, lr and momentum (Q.16 ints), `batch` rows per step,
    `steps` in all, a checkpoint every `k` steps (steps / k segments), and the batch-order seed."""

    arch: Arch
    seed: int
    lr: int
    momentum: int
    batch: int
    steps: int
    k: int
    order_seed: int

    @property
    def segments(self) -> int:
        """m = steps / k (after check)."""
        return self.steps // self.k

    def batches(self, rows: int) -> int:
        """nb = rows / batch (after check)."""
        return rows // self.batch

    def check(self, rows: int) -> JobSpec:
        """Validate the job for a data set of `rows` rows; ValueError naming what is wrong.
        One segment must be one valid mlcore.programs.train call (k * batch rows, k steps)."""
        if not isinstance(self.arch, Arch):
            raise ValueError(f"arch must be an mlcore Arch, got {self.arch!r}")
        self.arch.check()
        _int("seed", self.seed, 0, MASK64)
        _int("order_seed", self.order_seed, 0, MASK64)
        check_hyper(self.lr, self.momentum)
        batch = _int("batch", self.batch, 1, MAX_ROWS)
        steps = _int("steps", self.steps, 1, MAX_JOB_STEPS)
        k = _int("k", self.k, 1, MAX_STEPS)
        rows = _int("rows", rows, 1, MAX_BATCHES * batch)
        if steps % k:
            raise ValueError(f"steps ({steps}) must be a multiple of the checkpoint interval k ({k})")
        if rows % batch:
            raise ValueError(f"the data set's {rows} rows must be a multiple of the batch ({batch})")
        if k * batch > MAX_ROWS:
            raise ValueError(f"a segment of k={k} steps of {batch} rows is {k * batch} rows, more than "
                             f"one training call takes ({MAX_ROWS}): lower k")
        programs.key("train", self.arch, rows=k * batch, batch=batch, epochs=1)  # every other call limit
        return self


def segment_batches(spec: JobSpec, rows: int, i: int) -> np.ndarray:
    """The batch indices (int32, k) of segment i (0-based: steps i*k .. (i+1)*k - 1) in step order."""
    spec.check(rows)
    i = _int("segment", i, 0, spec.segments - 1)
    return batch_order(spec.order_seed, spec.batches(rows), i * spec.k, spec.k)


def segment_rows(spec: JobSpec, rows: int, i: int) -> np.ndarray:
    """The data row indices (int64, k * batch) of segment i in step order: batch b is rows
    [b*batch, (b+1)*batch)."""
    order = segment_batches(spec, rows, i).astype(np.int64)
    return (order[:, None] * spec.batch + np.arange(spec.batch, dtype=np.int64)).ravel()


OnCheckpoint = Callable[[int, bytes, list[int]], None]


def train_job(spec: JobSpec, x: np.ndarray, y: np.ndarray, on_checkpoint: OnCheckpoint | None = None
              ) -> tuple[Checkpoint, list[bytes]]:
    """The worker's loop: checkpoint 0, then each segment in turn (its rows gathered, run_segment).
    on_checkpoint(i, data, losses) is called for every checkpoint i = 0..m in order, with its
    canonical bytes (encode_checkpoint: what is hashed, so a caller that keeps checkpoints need not
    encode them again) and the k losses of the segment that ended there ([] for 0).  Only the
    current checkpoint is held.  Returns (checkpoint m, [hash_0, ..., hash_m])."""
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype != np.int32:
        raise TypeError(f"x must be a 2-d int32 numpy array, got {getattr(x, 'dtype', type(x).__name__)} "
                        f"{getattr(x, 'shape', '')}")
    rows = x.shape[0]
    if not isinstance(y, np.ndarray) or y.dtype != np.int32 or y.shape[:1] != (rows,):
        raise TypeError(f"y must be an int32 numpy array with {rows} rows (one per row of x)")
    spec.check(rows)
    header = _header(spec.arch)
    hashes: list[bytes] = []

    def keep(i: int, params: Params, velocity: Params, losses: list[int]) -> None:
        # mlcore's outputs are int32 of the right shapes within WEIGHTS by construction: the
        # encoding without encode_checkpoint's checks (a third of the host time of a k = 10 segment)
        data = header + np.concatenate(params + velocity, axis=None).astype("<i4", copy=False).tobytes()
        hashes.append(hashlib.sha256(data).digest())
        if on_checkpoint is not None:
            on_checkpoint(i, data, losses)

    params, velocity = initial_checkpoint(spec.arch, spec.seed)
    keep(0, params, velocity, [])
    # batch b is rows [b*B, (b+1)*B): gathering whole batches of the (batches, B, ...) view copies
    # the same rows as segment_rows' fancy index, in blocks (about twice as fast)
    xb = x.reshape((spec.batches(rows), spec.batch) + x.shape[1:])
    yb = y.reshape((spec.batches(rows), spec.batch) + y.shape[1:])
    for i in range(spec.segments):
        order = batch_order(spec.order_seed, spec.batches(rows), i * spec.k, spec.k)
        xs, ys = xb[order].reshape((-1,) + x.shape[1:]), yb[order].reshape((-1,) + y.shape[1:])
        params, velocity, losses = run_segment(spec.arch, params, velocity, xs, ys,
                                               spec.lr, spec.momentum, spec.batch)
        keep(i + 1, params, velocity, losses)
    return (params, velocity), hashes
