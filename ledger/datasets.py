"""Tensor data sets inside a blob (docs/jobs.md "Data sets").

A fixed layout (32-byte header, then fixed-size rows of int32 little-endian) so that any
range of rows, e.g. the batches of one disputed training segment, is proved by the blob
chunks that hold its bytes plus chunk 0 (the header), without the rest of the data set.
Pure: bytes and numpy arrays in and out. Value ranges are not a layout rule: mlcore
saturates inputs to its formats and defines labels outside [0, classes).
"""
from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

import sys
from typing import TYPE_CHECKING

from ledger.blobs import MAX_BLOB_SIZE, BlobError, BlobRef
from ledger.errors import LedgerError

__all__ = ["MAGIC", "VERSION", "HEADER_BYTES", "KIND_CLASSES", "KIND_TARGETS", "DatasetError",
           "DatasetHeader", "encode_dataset", "decode_header", "decode_dataset", "check_dataset_size",
           "chunks_of_rows", "chunks_for_rows", "rows_from_chunks"]

MAGIC = b"GCDS"
VERSION = 1
HEADER_BYTES = 32
KIND_CLASSES = 0   # one int32 class label per row
KIND_TARGETS = 1   # `width` Q.16 int32 regression targets per row
_HEADER = struct.Struct("<4sHHQIIQ")   # magic, version, kind, rows, features, width, reserved
_U32_MAX = (1 << 32) - 1
assert _HEADER.size == HEADER_BYTES


if TYPE_CHECKING:
    import numpy as np


def _numpy():
    """numpy, imported where arrays are made: the ledger (and a node) imports this module
    without it (the cross-CPython determinism tests run the ledger in venvs without numpy)."""
    import numpy
    return numpy


class DatasetError(LedgerError):
    """Bytes or arrays that break the data-set layout of docs/jobs.md "Data sets"."""
    reason = "invalid_dataset"


@dataclass(frozen=True, slots=True)
class DatasetHeader:
    """What the 32-byte header says: label kind, rows, input features, label width."""
    kind: int
    rows: int
    features: int
    width: int

    @property
    def row_bytes(self) -> int:
        """4 * (features + width): the inputs then the labels (or targets) of one row."""
        return 4 * (self.features + self.width)

    @property
    def size(self) -> int:
        """The data set's exact size in bytes: 32 + rows * row_bytes."""
        return HEADER_BYTES + self.rows * self.row_bytes

    def encode(self) -> bytes:
        return _HEADER.pack(MAGIC, VERSION, self.kind, self.rows, self.features, self.width, 0)


def _checked_header(kind: int, rows: int, features: int, width: int) -> DatasetHeader:
    """The header's rules, shared by encode and decode (DatasetError naming the field)."""
    if kind not in (KIND_CLASSES, KIND_TARGETS):
        raise DatasetError(f"data set label kind {kind} is neither 0 (classes) nor 1 (targets)")
    if rows < 1:
        raise DatasetError("data set has 0 rows: at least 1 is required")
    if not 1 <= features <= _U32_MAX:
        raise DatasetError(f"data set features {features} outside [1, 2**32 - 1]")
    if kind == KIND_CLASSES and width != 1:
        raise DatasetError(f"data set of class labels (kind 0) must have width 1, not {width}")
    if not 1 <= width <= _U32_MAX:
        raise DatasetError(f"data set target width {width} outside [1, 2**32 - 1]")
    header = DatasetHeader(kind, rows, features, width)
    if header.size > MAX_BLOB_SIZE:
        raise DatasetError(f"data set of {rows} rows of {header.row_bytes} bytes is {header.size} bytes, "
                           f"more than a blob holds (2**40)")
    return header


def encode_dataset(x: np.ndarray, y: np.ndarray, kind: int | None = None) -> bytes:
    """The blob bytes of inputs x (int32 (rows, features), Q.16) and labels y: int32 (rows,)
    class labels (kind 0) or int32 (rows, width) Q.16 targets (kind 1). kind None infers it
    from y's shape; a kind that does not match y's shape, another dtype, rows = 0: DatasetError."""
    np = _numpy()
    for name, a in (("x", x), ("y", y)):
        if not isinstance(a, np.ndarray) or a.dtype != np.int32:
            raise DatasetError(f"data set {name} must be a numpy int32 array, not {_describe(a)}")
    if x.ndim != 2:
        raise DatasetError(f"data set x must be 2-D (rows, features), not shape {x.shape}")
    if y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
        raise DatasetError(f"data set y must be ({x.shape[0]},) or ({x.shape[0]}, width), not shape {y.shape}")
    inferred = KIND_CLASSES if y.ndim == 1 else KIND_TARGETS
    if kind is None:
        kind = inferred
    elif kind != inferred:
        raise DatasetError(f"data set kind {kind} needs y of shape "
                           f"{'(rows,)' if kind == KIND_CLASSES else '(rows, width)'}, not {y.shape}")
    y2 = y[:, None] if y.ndim == 1 else y
    header = _checked_header(kind, x.shape[0], x.shape[1], y2.shape[1])
    body = np.concatenate([x, y2], axis=1).astype("<i4", copy=False)
    return header.encode() + np.ascontiguousarray(body).tobytes()


def decode_header(data: bytes) -> DatasetHeader:
    """The header from the data set's first bytes (at least 32): magic, version 1, kind 0
    or 1, rows >= 1, features >= 1, width 1 for kind 0 (>= 1 for kind 1), reserved 0,
    total size within a blob. DatasetError naming the field otherwise."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or memoryview(data).nbytes < HEADER_BYTES:
        raise DatasetError(f"data set header needs {HEADER_BYTES} bytes, got {_describe(data)}")
    magic, version, kind, rows, features, width, reserved = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise DatasetError(f"data set magic is {magic!r}, not {MAGIC!r}")
    if version != VERSION:
        raise DatasetError(f"data set version {version} is not {VERSION}")
    if reserved != 0:
        raise DatasetError(f"data set header's reserved field is {reserved}, must be 0")
    return _checked_header(kind, rows, features, width)


def check_dataset_size(header: DatasetHeader, ref: BlobRef) -> None:
    """The blob is exactly the data set the header describes: ref.size == 32 + rows * row_bytes."""
    if ref.size != header.size:
        raise DatasetError(f"data set header says {header.size} bytes ({header.rows} rows of "
                           f"{header.row_bytes}), the blob holds {ref.size}")


def decode_dataset(data: bytes) -> tuple[DatasetHeader, np.ndarray, np.ndarray]:
    """(header, x int32 (rows, features), y int32 (rows,) or (rows, width)) of a whole data set."""
    np = _numpy()
    header = decode_header(data)
    if memoryview(data).nbytes != header.size:
        raise DatasetError(f"data set header says {header.size} bytes, got {memoryview(data).nbytes}")
    x, y = _split_rows(header, np.frombuffer(data, dtype="<i4", offset=HEADER_BYTES), header.rows)
    return header, x, y


def _row_span(header: DatasetHeader, ref: BlobRef, lo: int, hi: int) -> tuple[int, int]:
    """Byte span of rows [lo, hi); lo and hi are ints or numpy integers (not bools)."""
    check_dataset_size(header, ref)
    np = sys.modules.get("numpy")  # a numpy integer exists only where numpy was imported
    ints = (int,) if np is None else (int, np.integer)
    ok = all(isinstance(v, ints) and not isinstance(v, bool if np is None else (bool, np.bool_)) for v in (lo, hi))
    if not (ok and 0 <= lo <= hi <= header.rows):
        raise DatasetError(f"row range [{lo}, {hi}) outside the data set's {header.rows} rows")
    lo, hi = int(lo), int(hi)
    return HEADER_BYTES + lo * header.row_bytes, HEADER_BYTES + hi * header.row_bytes


def chunks_of_rows(header: DatasetHeader, ref: BlobRef, lo: int, hi: int) -> range:
    """The chunk indices holding the bytes of rows [lo, hi) (ints or numpy integers), and only those: chunk 0 (the
    header) is NOT added unless those bytes start in it (see `chunks_for_rows`). An empty
    range of rows needs no chunk of rows: range(0, 0)."""
    start, end = _row_span(header, ref, lo, hi)
    if start == end:
        return range(0)
    return range(start // ref.chunk_bytes, (end - 1) // ref.chunk_bytes + 1)


def chunks_for_rows(header: DatasetHeader, ref: BlobRef, lo: int, hi: int) -> tuple[int, ...]:
    """Every chunk a proof of rows [lo, hi) reveals: chunk 0 (the header) and
    `chunks_of_rows`, ascending, each once."""
    return tuple(sorted({0, *chunks_of_rows(header, ref, lo, hi)}))


def rows_from_chunks(header: DatasetHeader, ref: BlobRef, lo: int, hi: int,
                     chunks: Mapping[int, bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Rows [lo, hi) as (x int32 (hi-lo, features), y int32 (hi-lo,) or (hi-lo, width)),
    read only from `chunks` (index -> bytes), which must hold every index of
    `chunks_for_rows`. The chunks are taken as already proved (blobs.check_chunk); here
    each must have its exact length, and chunk 0 must hold this very header.
    BlobError for a missing or mis-sized chunk, DatasetError for a header that differs."""
    np = _numpy()
    if not isinstance(chunks, Mapping):
        raise BlobError(f"chunks must be a mapping index -> bytes, not {type(chunks).__name__}")
    start, end = _row_span(header, ref, lo, hi)
    need = chunks_for_rows(header, ref, lo, hi)
    for i in need:
        c = chunks.get(i)
        if c is None:
            raise BlobError(f"blob chunk {i} of {ref.chunks} is missing (needed for rows [{lo}, {hi}))")
        if not isinstance(c, (bytes, bytearray, memoryview)) or memoryview(c).nbytes != ref.chunk_size(i):
            raise BlobError(f"blob chunk {i} of {ref.chunks} is {_describe(c)}, must be {ref.chunk_size(i)} bytes")
    if decode_header(chunks[0]) != header:
        raise DatasetError("chunk 0 holds another data set header than the one given")
    cb = ref.chunk_bytes
    parts = []
    for i in chunks_of_rows(header, ref, lo, hi):
        view = memoryview(chunks[i]).cast("B")
        a, b = max(start - i * cb, 0), min(end - i * cb, len(view))
        parts.append(view[a:b])
    body = b"".join(parts)
    return _split_rows(header, np.frombuffer(body, dtype="<i4"), (end - start) // header.row_bytes)


def _split_rows(header: DatasetHeader, flat: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    np = _numpy()
    table = flat.reshape(rows, header.features + header.width)
    x = table[:, :header.features].astype(np.int32)        # native order, a fresh array
    y = table[:, header.features:].astype(np.int32)
    return x, (y.reshape(rows) if header.kind == KIND_CLASSES else y)


def _describe(a: object) -> str:
    np = sys.modules.get("numpy")
    if np is not None and isinstance(a, np.ndarray):
        return f"an array of {a.dtype} shape {a.shape}"
    if isinstance(a, (bytes, bytearray, memoryview)):
        return f"{type(a).__name__} of {memoryview(a).nbytes} bytes"
    return type(a).__name__
