"""ledger.datasets: the byte layout of a tensor data set in a blob, and rows read back from
only the chunks that hold them (rows straddling 4 KiB chunk boundaries)."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from ledger.blobs import BlobError, BlobRef, check_chunk, chunked
from ledger.datasets import (
    HEADER_BYTES,
    KIND_CLASSES,
    KIND_TARGETS,
    DatasetError,
    DatasetHeader,
    check_dataset_size,
    chunks_for_rows,
    chunks_of_rows,
    decode_dataset,
    decode_header,
    encode_dataset,
    rows_from_chunks,
)
from ledger.errors import LedgerError

KIB4 = 4096


def arrays(rows: int, features: int, width: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x Q.16 int32 (rows, features) over the whole int32 range; y labels (width None) or targets."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2**31, 2**31, size=(rows, features), dtype=np.int64).astype(np.int32)
    if width is None:
        return x, rng.integers(0, 10, size=rows).astype(np.int32)
    return x, rng.integers(-2**31, 2**31, size=(rows, width), dtype=np.int64).astype(np.int32)


def test_layout_is_the_documented_bytes() -> None:
    x = np.array([[1, -2], [65536, 2**31 - 1]], dtype=np.int32)
    y = np.array([3, -1], dtype=np.int32)
    data = encode_dataset(x, y)
    assert data[:HEADER_BYTES] == (b"GCDS" + (1).to_bytes(2, "little") + (0).to_bytes(2, "little")
                                   + (2).to_bytes(8, "little") + (2).to_bytes(4, "little")
                                   + (1).to_bytes(4, "little") + bytes(8))
    assert data[HEADER_BYTES:] == struct.pack("<6i", 1, -2, 3, 65536, 2**31 - 1, -1)
    t = np.array([[7, 8, 9]], dtype=np.int32)
    data = encode_dataset(x[:1], t)
    assert data[4:8] == b"\x01\x00\x01\x00" and data[20:24] == (3).to_bytes(4, "little")
    assert data[HEADER_BYTES:] == struct.pack("<5i", 1, -2, 7, 8, 9)


@pytest.mark.parametrize("rows, features, width", [(1, 1, None), (5, 3, None), (40, 7, 2), (3, 1, 1)])
def test_round_trip(rows: int, features: int, width: int | None) -> None:
    x, y = arrays(rows, features, width)
    data = encode_dataset(x, y)
    header, x2, y2 = decode_dataset(data)
    kind = KIND_CLASSES if width is None else KIND_TARGETS
    assert header == DatasetHeader(kind, rows, features, width or 1)
    assert header.row_bytes == 4 * (features + (width or 1)) and len(data) == header.size
    assert x2.dtype == y2.dtype == np.int32 and x2.shape == x.shape and y2.shape == y.shape
    assert np.array_equal(x2, x) and np.array_equal(y2, y)
    x2[0, 0] ^= 1                                       # fresh, writable arrays
    assert decode_header(data) == header == decode_header(memoryview(data)[:HEADER_BYTES])
    assert encode_dataset(x, y, kind) == data


@pytest.mark.parametrize("x, y, kind, message", [
    (np.zeros((2, 3), np.int64), np.zeros(2, np.int32), None, "x must be a numpy int32 array, not an array of int64"),
    (np.zeros((2, 3), np.float32), np.zeros(2, np.int32), None, "x must be a numpy int32 array"),
    ([[1, 2]], np.zeros(1, np.int32), None, "x must be a numpy int32 array, not list"),
    (np.zeros((2, 3), np.int32), np.zeros(2, np.uint32), None, "y must be a numpy int32 array"),
    (np.zeros((2, 3), np.int32), np.zeros(2, np.int16), None, "y must be a numpy int32 array"),
    (np.zeros((2, 3), np.dtype(">i4")), np.zeros(2, np.int32), None, "x must be a numpy int32 array"),
    (np.zeros(6, np.int32), np.zeros(6, np.int32), None, "x must be 2-D"),
    (np.zeros((2, 3, 1), np.int32), np.zeros(2, np.int32), None, "x must be 2-D"),
    (np.zeros((2, 3), np.int32), np.zeros(3, np.int32), None, "y must be \\(2,\\) or \\(2, width\\)"),
    (np.zeros((2, 3), np.int32), np.zeros((2, 1, 1), np.int32), None, "y must be"),
    (np.zeros((2, 3), np.int32), np.zeros(2, np.int32), KIND_TARGETS, "kind 1 needs y of shape \\(rows, width\\)"),
    (np.zeros((2, 3), np.int32), np.zeros((2, 1), np.int32), KIND_CLASSES, "kind 0 needs y of shape \\(rows,\\)"),
    (np.zeros((2, 3), np.int32), np.zeros((2, 1), np.int32), 2, "kind 2 needs"),
    (np.zeros((0, 3), np.int32), np.zeros(0, np.int32), None, "0 rows"),
    (np.zeros((0, 3), np.int32), np.zeros((0, 2), np.int32), None, "0 rows"),
    (np.zeros((2, 0), np.int32), np.zeros(2, np.int32), None, "features 0 outside"),
    (np.zeros((2, 3), np.int32), np.zeros((2, 0), np.int32), None, "target width 0 outside"),
])
def test_encode_refuses(x, y, kind, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        encode_dataset(x, y, kind)


def header_bytes(magic=b"GCDS", version=1, kind=0, rows=2, features=3, width=1, reserved=0) -> bytes:
    return struct.pack("<4sHHQIIQ", magic, version, kind, rows, features, width, reserved)


@pytest.mark.parametrize("fields, message", [
    ({"magic": b"GCDT"}, "magic is b'GCDT'"),
    ({"version": 0}, "version 0 is not 1"),
    ({"version": 2}, "version 2 is not 1"),
    ({"kind": 2}, "kind 2 is neither"),
    ({"rows": 0}, "0 rows"),
    ({"features": 0}, "features 0"),
    ({"width": 2}, "kind 0\\) must have width 1, not 2"),
    ({"width": 0}, "must have width 1, not 0"),
    ({"kind": 1, "width": 0}, "target width 0"),
    ({"reserved": 1}, "reserved field is 1"),
    ({"reserved": 1 << 63}, "reserved field"),
    ({"rows": 2**64 - 1}, "more than a blob holds"),
    ({"rows": 2**33, "features": 2**32 - 1}, "more than a blob holds"),
])
def test_decode_header_is_strict(fields: dict, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        decode_header(header_bytes(**fields))


def test_decode_refuses_short_long_and_junk() -> None:
    assert issubclass(DatasetError, LedgerError) and DatasetError.reason == "invalid_dataset"
    good = header_bytes(kind=1, width=2)
    assert decode_header(good) == DatasetHeader(1, 2, 3, 2)
    for junk in (good[:31], b"", None, "GCDS" + "\0" * 28):
        with pytest.raises(DatasetError, match="header needs 32 bytes"):
            decode_header(junk)
    data = encode_dataset(*arrays(4, 3, None))
    for bad in (data[:-1], data + b"\0", data[:HEADER_BYTES]):
        with pytest.raises(DatasetError, match="header says 96 bytes, got"):
            decode_dataset(bad)


def test_dataset_size_must_match_the_blob() -> None:
    data = encode_dataset(*arrays(10, 2, None))
    header, ref = decode_header(data), chunked(data, KIB4).ref
    check_dataset_size(header, ref)
    for size in (ref.size - 1, ref.size + 1, ref.size + 12):
        with pytest.raises(DatasetError, match=f"the blob holds {size}"):
            check_dataset_size(header, BlobRef(ref.root, size, KIB4))


def every_chunk(data: bytes):
    b = chunked(data, KIB4)
    return b, decode_header(data), dict(enumerate(b.chunks))


@pytest.mark.parametrize("rows, features, width", [
    (300, 13, None),      # row 56 bytes, 5 chunks: rows straddle 4 KiB boundaries at shifting offsets
    (60, 40, 3),          # row 172 bytes, 3 chunks
    (9, 1023, None),      # row 4096 bytes: every row exactly a chunk long, offset by the header
    (3, 1500, 7),         # row 6028 bytes: a row spans two or three chunks
])
def test_every_row_range_from_its_chunks_alone(rows: int, features: int, width: int | None) -> None:
    x, y = arrays(rows, features, width, seed=rows)
    data = encode_dataset(x, y)
    b, header, chunks = every_chunk(data)
    ref, rb = b.ref, header.row_bytes
    assert ref.chunks > 2
    for i, c in chunks.items():
        check_chunk(ref, i, c, b.proof(i))
    for lo in range(rows + 1):
        for hi in range(lo, rows + 1):
            span = chunks_of_rows(header, ref, lo, hi)
            need = chunks_for_rows(header, ref, lo, hi)
            if lo == hi:
                assert span == range(0) and need == (0,)
            else:
                first, last = 32 + lo * rb, 32 + hi * rb - 1
                assert span == range(first // KIB4, last // KIB4 + 1)
            assert need == tuple(sorted({0, *span}))
            given = {i: chunks[i] for i in need}       # only what a proof of these rows reveals
            xs, ys = rows_from_chunks(header, ref, lo, hi, given)
            assert xs.dtype == ys.dtype == np.int32
            assert np.array_equal(xs, x[lo:hi]) and np.array_equal(ys, y[lo:hi]), (lo, hi)
            assert xs.shape == (hi - lo, features) and ys.shape == y[lo:hi].shape


def test_rows_from_chunks_needs_each_chunk_whole_and_the_same_header() -> None:
    x, y = arrays(2000, 5, None)
    data = encode_dataset(x, y)
    b, header, chunks = every_chunk(data)
    ref = b.ref
    lo, hi = 1500, 1700
    need = chunks_for_rows(header, ref, lo, hi)
    assert need == (0, 8, 9) and ref.chunks == 12
    for missing in need:
        given = {i: chunks[i] for i in need if i != missing}
        with pytest.raises(BlobError, match=f"chunk {missing} of {ref.chunks} is missing"):
            rows_from_chunks(header, ref, lo, hi, given)
    given = {i: chunks[i] for i in need}
    given[8] = given[8][:-4]
    with pytest.raises(BlobError, match="chunk 8 of 12 is bytes of 4092 bytes, must be 4096"):
        rows_from_chunks(header, ref, lo, hi, given)
    given = {i: chunks[i] for i in need}
    given[0] = header_bytes(rows=2000, features=5, kind=0) + chunks[0][32:]
    assert rows_from_chunks(header, ref, lo, hi, given)[0].shape == (200, 5)
    other = DatasetHeader(1, 2000, 5, 1)        # same size, another kind
    with pytest.raises(DatasetError, match="chunk 0 holds another data set header"):
        rows_from_chunks(other, ref, lo, hi, given)
    given[0] = b"GCDX" + chunks[0][4:]
    with pytest.raises(DatasetError, match="magic"):
        rows_from_chunks(header, ref, lo, hi, given)
    for bad in ((-1, 3), (3, 2), (0, 2001), (True, 3), (0, 3.0)):
        with pytest.raises(DatasetError, match="row range .* outside the data set's 2000 rows"):
            chunks_of_rows(header, ref, *bad)
        with pytest.raises(DatasetError, match="row range"):
            rows_from_chunks(header, ref, *bad, chunks)
    for bad in ((np.int64(3), 2.0), (np.bool_(False), 3), (0, np.float64(3))):
        with pytest.raises(DatasetError, match="row range"):
            chunks_of_rows(header, ref, *bad)
    # numpy integers (a batch index from mlcore.jobs.segment_rows) are row numbers
    xs, ys = rows_from_chunks(header, ref, np.int64(lo), np.int32(hi), chunks)
    assert np.array_equal(xs, x[lo:hi]) and np.array_equal(ys, y[lo:hi])
    assert chunks_of_rows(header, ref, np.int64(lo), np.int64(hi)) == chunks_of_rows(header, ref, lo, hi)
    with pytest.raises(BlobError, match="chunks must be a mapping"):
        rows_from_chunks(header, ref, lo, hi, list(b.chunks))
    wrong = BlobRef(ref.root, ref.size + 4, KIB4)
    with pytest.raises(DatasetError, match="the blob holds"):
        chunks_of_rows(header, wrong, 0, 1)


def test_a_data_set_in_one_chunk() -> None:
    x, y = arrays(3, 2, 2)
    data = encode_dataset(x, y)
    b, header, chunks = every_chunk(data)
    assert b.ref.chunks == 1 and chunks_for_rows(header, b.ref, 0, 3) == (0,)
    xs, ys = rows_from_chunks(header, b.ref, 1, 3, {0: chunks[0]})
    assert np.array_equal(xs, x[1:]) and np.array_equal(ys, y[1:])
