"""Blobs for users, against real node processes: the RPC methods put_blob_chunk, blob and
blob_chunk (net/rpc/blobs.py), the SDK's put_blob / get_blob / blob_chunk (every chunk's
proof checked, a lying answer caught), numpy data sets, hostile params, the bound on
uploads not yet on chain, a restart, and the `gradchain blob` CLI."""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from gradchain import BlobRef, Client, NotFound, ProofError, RpcError, TxRejected, devnet_keys
from gradchain.blobs import checked_chunk, dataset_bytes, upload_of
from ledger.blobs import CHUNK_BYTES, check_chunk, chunk_leaves, chunk_proof, ref_of, split
from ledger.blobstore import BlobStore
from ledger.datasets import KIND_CLASSES, KIND_TARGETS, chunks_of_rows, decode_dataset, decode_header, rows_from_chunks
from ledger.merkle import leaf_hash, merkle_levels, merkle_proof_of_leaves, merkle_proof_of_levels
from ledger.tx import put_blob as blob_tx
from tests.nodeproc import ROOT, NodeProcess

INVALID_PARAMS, REJECTED, NOT_FOUND, BUSY = -32602, -32000, -32001, -32005
KEY = devnet_keys()[0]
CB = 4096
RETENTION = 50_000  # ledger.params.ChainParams.blob_retention_blocks, the devnet's
PENDING_LIMIT = 6 << 20  # MAX_PENDING_BYTES of the flood node (patched in its process)


def rpc(url: str, method: str, params: Any) -> dict:
    """One raw JSON-RPC call; the whole response object."""
    port = int(url.rsplit(":", 1)[1])
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("POST", "/", json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200
        return json.loads(r.read())
    finally:
        c.close()


def error(url: str, method: str, params: Any, code: int, *words: str) -> dict:
    resp = rpc(url, method, params)
    assert "error" in resp, resp
    err = resp["error"]
    assert err["code"] == code, resp
    for w in words:
        assert w.lower() in err["message"].lower(), f"{w!r} not in {err['message']!r}"
    return err


def wire(ref: BlobRef) -> dict:
    return {"root": ref.root.hex(), "size": ref.size, "chunk_bytes": ref.chunk_bytes}


def put_params(data: bytes, index: int, cb: int = CB) -> dict:
    ref, parts = ref_of(data, cb), split(data, cb)
    return {"blob": wire(ref), "index": index, "chunk": parts[index].hex(),
            "proof": [h.hex() for h in chunk_proof(chunk_leaves(parts), index)]}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    proc = NodeProcess(tmp_path_factory.mktemp("blobs") / "node", block_time=0.2).start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def client(node):
    with node.client() as c:
        yield c


@pytest.fixture(scope="module")
def stored(client):
    """A blob of 3 MiB + 123 bytes in 4 KiB chunks (769), uploaded through the SDK."""
    data = os.urandom((3 << 20) + 123)
    return data, client.put_blob(data, KEY, chunk_bytes=CB)


# ---- pure pieces: the tree kept for proofs, the store's indices, the SDK's checks ----------

def test_proofs_from_kept_levels_equal_rfc6962_paths():
    for n in list(range(1, 70)) + [255, 256, 257]:
        leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
        levels = merkle_levels(leaves)
        assert len(levels[-1]) == 1
        for i in range(n):
            assert merkle_proof_of_levels(levels, i) == merkle_proof_of_leaves(leaves, i)
    with pytest.raises(IndexError):
        merkle_proof_of_levels(merkle_levels([leaf_hash(b"x")]), 1)
    with pytest.raises(ValueError):
        merkle_levels([])


def test_the_store_lists_the_chunks_it_holds(tmp_path):
    store = BlobStore(tmp_path / "b", map_size=16 << 20)
    data = os.urandom(6 * CB + 5)
    ref, parts = ref_of(data, CB), split(data, CB)
    leaves = chunk_leaves(parts)
    other_data = os.urandom(3 * CB)
    other = store.put(other_data, CB, 0)  # a neighbour in the key space must not leak in
    for i in (5, 0, 6):
        store.put_chunk(ref, i, parts[i], chunk_proof(leaves, i), 0)
    assert store.present_indices(ref.root) == [0, 5, 6]
    assert store.present_indices(other.root) == [0, 1, 2]
    assert store.present_indices(bytes(32)) == []
    assert store.leaf_hashes(other) == chunk_leaves(split(other_data, CB))
    store.close()


def test_upload_of_a_file_names_it_as_bytes_would_and_reads_it_one_chunk_at_a_time(tmp_path):
    data = os.urandom(5 * CB + 7)
    f = tmp_path / "data.bin"
    f.write_bytes(data)
    up = upload_of(f, CB)
    assert up.ref == ref_of(data, CB) == upload_of(data, CB).ref == upload_of(str(f), CB).ref
    for i in range(up.ref.chunks):
        check_chunk(up.ref, i, up.read(i), up.proof(i))
    f.write_bytes(data[:CB] + bytes(CB) + data[2 * CB:])  # changed between hashing and sending
    with pytest.raises(ValueError, match="changed"):
        up.read(1)
    (tmp_path / "empty").write_bytes(b"")
    for bad, what in ((b"", "at least 1 byte"), (tmp_path / "empty", "empty"), (tmp_path / "nope", "not exist")):
        with pytest.raises(ValueError, match=what):
            upload_of(bad, CB)
    with pytest.raises(ValueError, match="power of two"):
        upload_of(data, 5000)
    with pytest.raises(TypeError, match="blob data"):
        upload_of(12, CB)


def test_numpy_arrays_become_a_data_set_floats_by_mlcores_quantise_rule():
    from mlcore.fixed import quantize
    from mlcore.models import INPUTS
    rng = np.random.default_rng(7)
    x = rng.normal(size=(40, 3)) * 2
    x[0, 0], x[0, 1], x[0, 2] = 0.5 / 65536, -0.5 / 65536, 1e9  # ties round up; saturation
    y = rng.integers(0, 4, size=40)
    header, xs, ys = decode_dataset(dataset_bytes(x, y))
    assert header.kind == KIND_CLASSES and xs.dtype == np.int32
    np.testing.assert_array_equal(xs, quantize(x, INPUTS))
    assert xs[0, 0] == 1 and xs[0, 1] == 0 and xs[0, 2] == INPUTS.max_abs
    np.testing.assert_array_equal(ys, y)
    xi = rng.integers(-2**31, 2**31, size=(40, 3), dtype=np.int32)  # int32: taken as they are
    header, xs, ys = decode_dataset(dataset_bytes(xi, rng.normal(size=40)))
    assert header.kind == KIND_TARGETS and header.width == 1 and ys.shape == (40, 1)
    np.testing.assert_array_equal(xs, xi)
    t = rng.integers(-5, 5, size=(40, 2), dtype=np.int32)
    assert decode_dataset(dataset_bytes(xi, t))[0].width == 2
    for bad_x, bad_y, what in ((xi.astype(np.int64), y, "int64"), (x, y.astype(bool), "bool"),
                               (x, np.array([2**40] * 40), "int32"), (x[:, 0], y, "2-D"),
                               (np.full((40, 3), np.nan), y, "NaN"), (x, y[:5], "shape")):
        with pytest.raises(ValueError, match=what):
            dataset_bytes(bad_x, bad_y)


def _answer(data: bytes, index: int, cb: int = CB) -> dict:
    parts = split(data, cb)
    return {"chunk": parts[index].hex(), "proof": [h.hex() for h in chunk_proof(chunk_leaves(parts), index)]}


def _flip(hex_: str, at: int) -> str:
    b = bytearray(bytes.fromhex(hex_))
    b[at] ^= 1
    return b.hex()


def test_the_sdk_catches_a_node_that_lies_about_a_chunk():
    data = os.urandom(5 * CB + 9)
    ref = ref_of(data, CB)
    good = _answer(data, 2)
    assert checked_chunk(ref, 2, good) == data[2 * CB:3 * CB]
    lies = [
        {**good, "chunk": _flip(good["chunk"], 0)},
        {**good, "chunk": _flip(good["chunk"], CB - 1)},
        {**good, "proof": [_flip(good["proof"][0], 31)] + good["proof"][1:]},
        {**good, "proof": good["proof"][:-1]},
        {**good, "proof": good["proof"] + [good["proof"][0]]},
        {**good, "chunk": good["chunk"][:-2]},
        _answer(data, 3),  # another chunk with its own valid proof
        {**good, "chunk": "zz" + good["chunk"][2:]},
        {"chunk": good["chunk"]},
        {**good, "proof": "not a list"},
        None,
    ]
    for lie in lies:
        with pytest.raises(ProofError):
            checked_chunk(ref, 2, lie)
    last = _answer(data, 5)
    with pytest.raises(ProofError, match="bytes"):  # the short last chunk padded to full length
        checked_chunk(ref, 5, {**last, "chunk": last["chunk"] + "00"})


class LyingClient(Client):
    """A client whose node flips one byte of chunk `bad` (in its data or its proof)."""

    def __init__(self, data: bytes, bad: int, where: str, size: int | None = None):
        super().__init__("http://127.0.0.1:1")
        self.data, self.bad, self.where = data, bad, where
        self.ref = ref_of(data, CB)
        self.size = size

    def call(self, method: str, params: Any = None, timeout: float | None = None) -> Any:
        if method == "blob":
            return {"root": self.ref.root.hex(), "size": self.size or self.ref.size, "chunk_bytes": CB,
                    "chunks": self.ref.chunks, "present": self.ref.chunks, "complete": True, "expiry": None}
        assert method == "blob_chunk"
        a = _answer(self.data, params["index"])
        if params["index"] == self.bad:
            if self.where == "chunk":
                a["chunk"] = _flip(a["chunk"], len(a["chunk"]) // 4)
            else:
                a["proof"][-1] = _flip(a["proof"][-1], 3)
        return a

    def batch(self, calls: Any) -> list:
        return [self.call(m, p) for m, p in calls]


@pytest.mark.parametrize("where", ["chunk", "proof"])
def test_get_blob_refuses_a_flipped_byte_anywhere(tmp_path, where):
    data = os.urandom(7 * CB + 1)
    root = ref_of(data, CB).root.hex()
    assert Client.get_blob(LyingClient(data, -1, where), root) == data
    for bad in (0, 3, 7):
        c = LyingClient(data, bad, where)
        with pytest.raises(ProofError):
            c.get_blob(root)
        out = tmp_path / "out.bin"
        with pytest.raises(ProofError):
            c.get_blob(root, out)
        assert not out.exists() and not (tmp_path / "out.bin.part").exists()
        with pytest.raises(ProofError):
            c.blob_chunk(root, bad)
    with pytest.raises(ProofError):  # a lie about the size: the last chunk's length no longer checks
        LyingClient(data, -1, where, size=7 * CB + 2).get_blob(root)


# ---- a real node -----------------------------------------------------------------------

def test_a_blob_uploaded_through_the_sdk_is_on_chain_and_served_with_proofs(client, node, stored):
    data, ref = stored
    assert ref == ref_of(data, CB) and ref.chunks == 769
    info = client.blob(ref)
    assert info["complete"] and info["present"] == 769 and info["size"] == len(data)
    assert info["expiry"] is not None and info["expiry"] > RETENTION
    assert client.get_blob(ref.root.hex()) == data
    assert client.get_blob(ref.root) == data
    for i in (0, 1, 400, 767, 768):  # the raw answers check with the ledger's own rule
        a = rpc(node.url, "blob_chunk", {"root": ref.root.hex(), "index": i})["result"]
        check_chunk(ref, i, bytes.fromhex(a["chunk"]), [bytes.fromhex(h) for h in a["proof"]])
        assert client.blob_chunk(ref, i) == data[i * CB:(i + 1) * CB]
    assert client.blob(ref, indices=True)["indices"] == list(range(769))


def test_get_blob_streams_to_a_file(client, stored, tmp_path):
    data, ref = stored
    out = client.get_blob(ref, tmp_path / "copy.bin")
    assert out.read_bytes() == data and not (tmp_path / "copy.bin.part").exists()


def test_put_blob_again_sends_no_chunk_and_moves_the_expiry(client, stored, monkeypatch):
    data, ref = stored
    before = client.blob(ref)["expiry"]
    sent: list = []
    monkeypatch.setattr(Client, "_put_chunks", lambda self, up, idx: sent.extend(idx))
    assert client.put_blob(data, KEY, chunk_bytes=CB, pin_blocks=10) == ref
    assert sent == []
    assert client.blob(ref)["expiry"] > before + 10


def test_a_resumed_upload_sends_only_the_missing_chunks(client, node, monkeypatch):
    data = os.urandom(9 * CB + 100)
    ref = ref_of(data, CB)
    for i in (0, 4, 9):
        assert rpc(node.url, "put_blob_chunk", put_params(data, i))["result"]["complete"] is False
    info = client.blob(ref, indices=True)
    assert (info["present"], info["indices"], info["expiry"]) == (3, [0, 4, 9], None)
    sent: list = []
    real = Client._put_chunks
    monkeypatch.setattr(Client, "_put_chunks", lambda self, up, idx: (sent.extend(idx), real(self, up, idx)))
    f = node.data_dir.parent / "resume.bin"
    f.write_bytes(data)
    assert client.put_blob(f, KEY, chunk_bytes=CB) == ref
    assert sent == [1, 2, 3, 5, 6, 7, 8]
    assert client.get_blob(ref) == data and client.blob(ref)["expiry"] is not None


def test_a_data_set_from_numpy_round_trips_and_its_rows_are_proved_by_their_chunks(client):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(600, 7)), rng.integers(0, 5, size=600)
    ref = client.put_blob((x, y), KEY, chunk_bytes=CB)
    raw = client.get_blob(ref)
    assert raw == dataset_bytes(x, y)
    header, xs, ys = decode_dataset(raw)
    np.testing.assert_array_equal(ys, y)
    head = decode_header(client.blob_chunk(ref, 0))
    assert header == head
    want = {i: client.blob_chunk(ref, i) for i in set(chunks_of_rows(head, ref, 100, 300)) | {0}}
    assert len(want) < ref.chunks
    xr, yr = rows_from_chunks(head, ref, 100, 300, want)
    np.testing.assert_array_equal(xr, xs[100:300])
    np.testing.assert_array_equal(yr, y[100:300])


def test_a_blob_transaction_for_data_the_node_lacks_is_refused(client):
    ref = ref_of(os.urandom(CB + 1), CB)
    tx = blob_tx(KEY, client.chain_id, client.account(KEY.address).pending_nonce, ref)
    with pytest.raises(TxRejected) as e:
        client.broadcast(tx)
    assert e.value.reason == "blob_unavailable"


DATA = os.urandom(3 * CB + 11)
GOOD = put_params(DATA, 1)
REF = ref_of(DATA, CB)


def _with(**kw: Any) -> dict:
    return {**GOOD, **kw}


def _blob(**kw: Any) -> dict:
    return _with(blob={**GOOD["blob"], **kw})


@pytest.mark.parametrize("params, words", [
    ({**GOOD, "blob": None}, ["blob", "root, size, chunk_bytes"]),
    ({**GOOD, "blob": [REF.root.hex(), REF.size, CB]}, ["blob", "object"]),
    (_with(blob={"root": REF.root.hex(), "size": REF.size}), ["blob"]),
    (_with(blob={**GOOD["blob"], "extra": 1}), ["blob"]),
    (_blob(root="00" * 31), ["blob.root", "32 bytes"]),
    (_blob(root="xyz"), ["blob.root", "hex"]),
    (_blob(root=5), ["blob.root", "hex"]),
    (_blob(size=0), ["blob.size"]),
    (_blob(size="12"), ["blob.size"]),
    (_blob(size=True), ["blob.size"]),
    (_blob(chunk_bytes=5000), ["chunk_bytes", "power of two"]),
    (_blob(chunk_bytes=2048), ["chunk_bytes", "power of two"]),
    (_blob(chunk_bytes=2 << 20), ["chunk_bytes", "power of two"]),
    (_blob(size=(1 << 30) + 1), ["max_blob_bytes"]),
    (_blob(size=1 << 41), ["blob"]),
    (_with(index=-1), ["index", "[0, 3]"]),
    (_with(index=4), ["index", "[0, 3]"]),
    (_with(index=1.0), ["index"]),
    (_with(index="1"), ["index"]),
    (_with(chunk=None), ["chunk", "4096 bytes"]),
    (_with(chunk=GOOD["chunk"][:-2]), ["chunk", "4096 bytes"]),
    (_with(chunk=GOOD["chunk"] + "00"), ["chunk", "4096 bytes"]),
    (_with(chunk="zz" + GOOD["chunk"][2:]), ["chunk", "hex"]),
    (_with(chunk=" " + GOOD["chunk"][1:]), ["chunk", "hex"]),  # bytes.fromhex would skip the space
    (_with(chunk=GOOD["chunk"][:100] + "\n" + GOOD["chunk"][101:]), ["chunk", "hex"]),
    (_with(chunk="0x" + GOOD["chunk"][:-2] + "0"), ["chunk"]),
    (_with(chunk=put_params(DATA, 2)["chunk"]), ["proof does not lead to root"]),
    (_with(chunk=_flip(GOOD["chunk"], 100)), ["proof does not lead to root"]),
    (_with(proof=None), ["proof", "array"]),
    (_with(proof="00" * 32), ["proof", "array"]),
    (_with(proof=["00" * 32] * 65), ["proof", "at most 64"]),
    (_with(proof=GOOD["proof"][:-1]), ["proof does not lead to root"]),
    (_with(proof=GOOD["proof"] + ["00" * 32]), ["proof does not lead to root"]),
    (_with(proof=[_flip(GOOD["proof"][0], 0)] + GOOD["proof"][1:]), ["proof does not lead to root"]),
    (_with(proof=put_params(DATA, 2)["proof"]), ["proof does not lead to root"]),
    (_with(proof=[GOOD["proof"][0][:-2]] + GOOD["proof"][1:]), ["proof[0]", "32 bytes"]),
    (_with(proof=[1] + GOOD["proof"][1:]), ["proof[0]", "hex"]),
    ([GOOD["blob"], 1, GOOD["chunk"]], ["proof"]),
    ({**GOOD, "extra": 1}, ["extra"]),
    (_with(chunk="0x" + GOOD["chunk"]), None),  # last: the well-formed variants are taken
    (_with(chunk=GOOD["chunk"].upper()), None),
], ids=lambda v: None)
def test_put_blob_chunk_refuses_junk_with_the_field_named(node, params, words):
    if words is None:  # the control: the same request with a well-formed variant is taken
        assert rpc(node.url, "put_blob_chunk", params)["result"] == {"complete": False, "present": 1}
        return
    error(node.url, "put_blob_chunk", params, INVALID_PARAMS, *words)
    assert rpc(node.url, "blob", {"root": REF.root.hex()})["error"]["code"] == NOT_FOUND  # nothing stored
    assert "result" in rpc(node.url, "status", [])


def test_a_second_shape_for_a_known_root_is_refused(node):
    small = os.urandom(100)  # one chunk: the same root under 4 KiB and 8 KiB chunks
    p = put_params(small, 0)
    assert rpc(node.url, "put_blob_chunk", p)["result"] == {"complete": True, "present": 1}
    error(node.url, "put_blob_chunk", {**p, "blob": {**p["blob"], "chunk_bytes": 2 * CB}}, INVALID_PARAMS,
          "known here as 100 bytes in chunks of 4096")


@pytest.mark.parametrize("method, params, code, words", [
    ("blob", {"root": "00" * 32}, NOT_FOUND, ["no blob"]),
    ("blob", {"root": "00" * 33}, INVALID_PARAMS, ["root", "32 bytes"]),
    ("blob", {"root": None}, INVALID_PARAMS, ["root"]),
    ("blob", {"root": "00" * 32, "indices": 1}, INVALID_PARAMS, ["indices", "true or false"]),
    ("blob", {}, INVALID_PARAMS, ["root"]),
    ("blob_chunk", {"root": "00" * 32, "index": 0}, NOT_FOUND, ["no data"]),
    ("blob_chunk", {"root": "zz", "index": 0}, INVALID_PARAMS, ["root"]),
    ("blob_chunk", {"root": "00" * 32}, INVALID_PARAMS, ["index"]),
], ids=lambda v: None)
def test_blob_reads_refuse_junk_and_unknown_roots(node, method, params, code, words):
    error(node.url, method, params, code, *words)


def test_blob_chunk_of_an_incomplete_or_out_of_range_blob(node, stored):
    data = os.urandom(2 * CB + 1)
    rpc(node.url, "put_blob_chunk", put_params(data, 1))
    root = ref_of(data, CB).root.hex()
    error(node.url, "blob_chunk", {"root": root, "index": 1}, NOT_FOUND, "not complete", "1 of 3")
    error(node.url, "blob_chunk", {"root": stored[1].root.hex(), "index": 769}, INVALID_PARAMS, "[0, 768]")
    error(node.url, "blob_chunk", {"root": stored[1].root.hex(), "index": -1}, INVALID_PARAMS, "index")


def test_a_1_mib_chunk_fits_the_body_limit(client, node):
    data = os.urandom(CHUNK_BYTES + 5)
    ref = client.put_blob(data, KEY)
    assert ref.chunks == 2 and client.get_blob(ref) == data


def test_a_restarted_node_still_serves_the_blob(node, stored):
    data, ref = stored
    assert node.stop() == 0
    node.start()
    with node.client() as c:
        assert c.get_blob(ref) == data
        assert c.blob(ref)["complete"]


# ---- the CLI -----------------------------------------------------------------------------

def cli(url: str, *args: str, text: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradchain.cli", "--rpc", url, *args], cwd=ROOT,
                          capture_output=True, text=text, timeout=120)


def test_cli_put_show_get_round_trip(node, tmp_path):
    data = os.urandom(10 * CB + 3)
    f = tmp_path / "in.bin"
    f.write_bytes(data)
    p = cli(node.url, "blob", "put", str(f), "--chunk-bytes", str(CB), "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    ref = ref_of(data, CB)
    assert info["root"] == ref.root.hex() and info["complete"] and info["expiry"] is not None
    p = cli(node.url, "blob", "show", ref.root.hex())
    assert p.returncode == 0 and "11 of 11 on this node (complete)" in p.stdout and "Kept until" in p.stdout
    out = tmp_path / "out.bin"
    p = cli(node.url, "blob", "get", "0x" + ref.root.hex(), "-o", str(out))
    assert p.returncode == 0 and "every chunk's proof" in p.stdout, p.stderr
    assert out.read_bytes() == data
    p = cli(node.url, "blob", "get", ref.root.hex(), text=False)
    assert p.returncode == 0 and p.stdout == data
    for args, words in ((("blob", "show", "00" * 32), "not found"), (("blob", "get", "abc"), "64 hex"),
                        (("blob", "put", str(tmp_path / "none")), "does not exist"),
                        (("blob", "put", str(f), "--chunk-bytes", "5000"), "power of two"),
                        (("blob", "get", ref.root.hex(), "--json"), "-o FILE")):
        p = cli(node.url, *args)
        assert p.returncode == 1 and p.stderr.startswith("error:") and words in p.stderr, p.stderr


# ---- the bound on uploads not yet on chain ------------------------------------------------

@pytest.fixture(scope="module")
def small_node(tmp_path_factory):
    """A node whose MAX_PENDING_BYTES is PENDING_LIMIT (set in its process by sitecustomize)."""
    d = tmp_path_factory.mktemp("pending")
    (d / "sitecustomize.py").write_text(f"import ledger.blobstore\nledger.blobstore.MAX_PENDING_BYTES = {PENDING_LIMIT}\n")
    env = {"PYTHONPATH": os.pathsep.join([str(d), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = NodeProcess(d / "node", block_time=0.2, env=env).start()
    try:
        yield proc
    finally:
        proc.kill()


def test_a_flood_of_uploads_beyond_the_pending_limit_is_refused_and_the_node_keeps_serving(small_node):
    url = small_node.url
    a, b, c = os.urandom(4 << 20), os.urandom(2 << 20), os.urandom(CB)
    assert rpc(url, "put_blob_chunk", put_params(a, 0))["result"] == {"complete": False, "present": 1}
    assert rpc(url, "put_blob_chunk", put_params(b, 0))["result"]["present"] == 1  # 6 MiB: at the limit
    err = error(url, "put_blob_chunk", put_params(c, 0), BUSY, "not yet on chain", str(PENDING_LIMIT))
    assert err["data"] == {"limit": "pending_blob_bytes", "max": PENDING_LIMIT, "pending": 6 << 20}
    for i in range(1, 20):  # more of a blob already counted is taken
        assert rpc(url, "put_blob_chunk", put_params(a, i))["result"]["present"] == i + 1
    error(url, "put_blob_chunk", put_params(c, 0), BUSY, "not yet on chain")
    with small_node.client() as cl:
        with pytest.raises(NotFound):
            cl.blob(ref_of(c, CB))
        with pytest.raises(RpcError) as e:  # the SDK raises the refusal of any chunk of its batch
            cl.put_blob(os.urandom(3 * CB), KEY, chunk_bytes=CB)
        assert e.value.code == BUSY and e.value.data["limit"] == "pending_blob_bytes"
        assert cl.put_blob(b, KEY, chunk_bytes=CB).chunks == 512  # finished and on chain: no longer pending
        assert cl.put_blob(c, KEY, chunk_bytes=CB) == ref_of(c, CB)
        assert cl.status()["height"] > 0


def test_kept_trees_stay_within_their_bound_and_give_the_ledgers_proofs(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from net.rpc import blobs as rpc_blobs
    store = BlobStore(tmp_path / "b", map_size=16 << 20)
    refs = [store.put(os.urandom(n * CB), CB, 0) for n in (5, 9, 3)]
    monkeypatch.setattr(rpc_blobs, "TREE_HASHES_KEPT", 26)
    monkeypatch.setattr(rpc_blobs, "_TREES", rpc_blobs.OrderedDict())
    node = SimpleNamespace(blobs=store)
    for ref in refs:  # 11 + 20 + 6 hashes: the first is dropped once the second is in
        levels = rpc_blobs._levels(node, ref)
        for i in range(ref.chunks):
            assert merkle_proof_of_levels(levels, i) == store.proof(ref, i)
    assert list(rpc_blobs._TREES) == [refs[1].root, refs[2].root]
    store.close()
