"""mlcore.jobs: the batch order (a pure-Python reference of the Fisher-Yates / Lemire rule, the
rejection path included, pinned digests), canonical checkpoints (layout, round trip, every malformed
case refused), and segments: m segments one after another give bit for bit the params, velocity
and losses of ONE mlcore.models.train scan over the whole schedule on the real shapes (the data
stacked by reshape, the order from batch_order; no gather, no padding, no programs).
"""
from __future__ import annotations

import hashlib
import struct
from collections import Counter

import jax
import numpy as np
import pytest

from mlcore import jobs
from mlcore import models as M
from mlcore.fixed import WEIGHTS, rng_key
from mlcore.limits import MAX_ROWS, MAX_STEPS
from mlcore.models import Arch

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
ORDER_STREAM = 0x6F72646572  # b"order", as docs/mlcore.md section 9.1 says


def mix(z: int) -> int:
    """SplitMix64's finaliser on Python ints (the published constants)."""
    z &= MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def stream_word(seed: int, epoch: int):
    key = rng_key(seed, epoch, 0, ORDER_STREAM)
    return lambda c: mix(key + (c + 1) * GOLDEN)


def ref_permutation(batches: int, word) -> list[int]:
    """The rule as written: i = batches-1 .. 1, words drawn in order; x * (i + 1) as a 128-bit
    integer, accepted iff its low 64 bits >= 2**64 mod (i + 1), then j = its high 64 bits."""
    a, c = list(range(batches)), 0
    for i in range(batches - 1, 0, -1):
        s = i + 1
        while True:
            m = word(c) * s
            c += 1
            if m & MASK >= (1 << 64) % s:
                break
        j = m >> 64
        a[i], a[j] = a[j], a[i]
    return a


def ref_order(seed: int, batches: int, start: int, count: int) -> list[int]:
    perms: dict[int, list[int]] = {}
    out = []
    for t in range(start, start + count):
        e = t // batches
        if e not in perms:
            perms[e] = ref_permutation(batches, stream_word(seed, e))
        out.append(perms[e][t % batches])
    return out


# ---- the batch order ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,batches,start,count", [(0, 1, 0, 5), (1, 2, 0, 9), (7, 10, 3, 45),
                                                      (2**64 - 1, 37, 30, 100), (99, 200, 150, 420)])
def test_batch_order_is_the_written_rule(seed, batches, start, count):
    got = jobs.batch_order(seed, batches, start, count)
    assert got.dtype == np.int32 and got.shape == (count,)
    assert got.tolist() == ref_order(seed, batches, start, count)


def test_every_epoch_is_a_permutation_and_windows_agree():
    nb, epochs = 37, 6
    full = jobs.batch_order(5, nb, 0, nb * epochs)
    perms = [full[e * nb:(e + 1) * nb].tolist() for e in range(epochs)]
    assert all(sorted(p) == list(range(nb)) for p in perms)
    assert len({tuple(p) for p in perms}) == epochs  # epochs are shuffled independently
    for start, count in ((0, 1), (36, 2), (40, 70), (100, 122), (222, 0)):
        assert jobs.batch_order(5, nb, start, count).tolist() == full[start:start + count].tolist()
    assert jobs.batch_order(6, nb, 0, nb).tolist() != perms[0]


def test_batch_order_pinned():
    got = jobs.batch_order(12345, 10, 0, 40)
    assert got[:10].tolist() == [2, 7, 8, 1, 3, 5, 6, 0, 4, 9]
    assert hashlib.sha256(got.astype("<i4").tobytes()).hexdigest() == (
        "169320d0f25299ae29b783709e49c0cca468bad51dc095a15b3e67fae0fcb62b")


def test_rejected_words_are_skipped_and_the_next_word_drawn(monkeypatch):
    """Word 0 is rejected for a bound that is not a power of two (2**64 mod s > 0) and accepted
    (j = 0) for one that is; zero words are planted there, and chunks of 3 words cross them."""
    zero_at = {1, 2, 4, 9}
    real = stream_word(3, 0)

    def word(c: int) -> int:
        return 0 if c in zero_at else real(c)

    def fake_words(key, start, count):
        assert key == rng_key(3, 0, 0, ORDER_STREAM)
        return np.array([word(c) for c in range(start, start + count)], dtype=np.uint64)

    jobs._permutation.cache_clear()
    monkeypatch.setattr(jobs, "_words", fake_words)
    monkeypatch.setattr(jobs, "_WORDS_CHUNK", 3)
    try:
        got = jobs.batch_order(3, 7, 0, 7).tolist()
    finally:
        jobs._permutation.cache_clear()
    # bounds 7, 6, 5, 4, 3, 2: words 1 and 2 are rejected (bound 6), word 3 draws it; word 4 meets
    # bound 5 (rejected), word 5 draws it; word 6 bound 4, ...
    assert got == ref_permutation(7, word)
    assert got != ref_permutation(7, real)


def test_batch_order_is_uniform():
    """6000 shuffles of 3 batches: each of the 6 permutations about 1000 times (chi-square, 5 dof:
    p < 1e-6 beyond 35.9)."""
    full = jobs.batch_order(11, 3, 0, 3 * 6000).reshape(6000, 3)
    counts = Counter(map(tuple, full.tolist()))
    assert len(counts) == 6
    assert sum((n - 1000) ** 2 / 1000 for n in counts.values()) < 35.9


@pytest.mark.parametrize("args", [(True, 4, 0, 1), (-1, 4, 0, 1), (2**64, 4, 0, 1), (0.0, 4, 0, 1),
                                  (0, 0, 0, 1), (0, 2**31, 0, 1), (0, False, 0, 1), (0, 4, -1, 1),
                                  (0, 4, 0, -1), (0, 4, 2**32, 1), (0, 4, 0, 2.0)])
def test_batch_order_refuses_bad_arguments(args):
    with pytest.raises(ValueError):
        jobs.batch_order(*args)


# ---- checkpoints ----------------------------------------------------------------------------------

MLP = Arch("mlp", (4, 8, 3))


def random_checkpoint(arch: Arch, seed: int) -> tuple[tuple, tuple]:
    rng = np.random.default_rng(seed)
    top = WEIGHTS.max_abs
    arrays = [rng.integers(-top, top + 1, s).astype(np.int32) for s in arch.shapes * 2]
    arrays[0].flat[0], arrays[-1].flat[-1] = top, -top  # the bounds themselves are allowed
    n = len(arch.shapes)
    return tuple(arrays[:n]), tuple(arrays[n:])


def test_checkpoint_layout():
    arch = Arch("softmax", (3, 2))
    params = (np.array([[1, -1], [2, -2], [3, 70000]], np.int32), np.array([5, -6], np.int32))
    velocity = (np.zeros((3, 2), np.int32), np.array([-1, WEIGHTS.max_abs], np.int32))
    want = (b"GCCK" + struct.pack("<HBB", 1, 1, 2) + struct.pack("<II", 3, 2)
            + struct.pack("<6i", 1, -1, 2, -2, 3, 70000) + struct.pack("<2i", 5, -6)
            + bytes(24) + struct.pack("<2i", -1, WEIGHTS.max_abs))
    data = jobs.encode_checkpoint(arch, params, velocity)
    assert data == want and len(data) == jobs.checkpoint_size(arch) == 8 + 8 + 8 * 8
    assert jobs.checkpoint_hash(arch, params, velocity) == hashlib.sha256(want).digest()


@pytest.mark.parametrize("arch", [MLP, Arch("linear", (5, 2)), Arch("mlp", (3, 4, 5, 6, 2))])
def test_checkpoint_round_trip(arch):
    params, velocity = random_checkpoint(arch, 1)
    data = jobs.encode_checkpoint(arch, params, velocity)
    p, v = jobs.decode_checkpoint(arch, data)
    assert len(p) == len(v) == len(arch.shapes)
    for a, b in zip(p + v, params + velocity):
        assert a.dtype == np.int32 and a.shape == b.shape and np.array_equal(a, b)
    assert jobs.encode_checkpoint(arch, p, v) == data
    assert jobs.decode_checkpoint(arch, bytearray(data))[0][0].tolist() == params[0].tolist()


def test_initial_checkpoint_hash_pinned():
    params, velocity = jobs.initial_checkpoint(MLP, 7)
    assert all(np.array_equal(a, b) for a, b in zip(params, M.init(MLP, 7)))
    assert all(not v.any() and v.dtype == np.int32 for v in velocity)
    assert jobs.checkpoint_hash(MLP, params, velocity).hex() == (
        "cf110d0fe49ad721b720a77c11943378938714a8f3bb77034eaf5997f3fcbfc3")


def _tamper(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new):]


def malformed_cases() -> dict[str, tuple[Arch, object, str]]:
    params, velocity = random_checkpoint(MLP, 2)
    good = jobs.encode_checkpoint(MLP, params, velocity)
    head = 8 + 4 * 3
    return {
        "not bytes": (MLP, good.hex(), "must be bytes"),
        "empty": (MLP, b"", "bytes, got 0"),
        "one byte short": (MLP, good[:-1], "bytes, got"),
        "one byte long": (MLP, good + b"\0", "bytes, got"),
        "magic": (MLP, _tamper(good, 0, b"GCCX"), "magic"),
        "version": (MLP, _tamper(good, 4, struct.pack("<H", 2)), "version 2"),
        "kind": (MLP, _tamper(good, 6, b"\x01"), "header"),
        "width count": (MLP, _tamper(good, 7, b"\x02"), "header"),
        "widths": (MLP, _tamper(good, 12, struct.pack("<I", 9)), "header"),
        "other arch": (Arch("mlp", (4, 9, 3)), good, "bytes, got"),
        "param above the bound": (MLP, _tamper(good, head, struct.pack("<i", WEIGHTS.max_abs + 1)),
                                  "value 0"),
        "velocity at int32 min": (MLP, _tamper(good, len(good) - 4, struct.pack("<i", -2**31)),
                                  f"value {2 * MLP.size - 1}"),
    }


@pytest.mark.parametrize("case", sorted(malformed_cases()))
def test_malformed_checkpoints_are_refused(case):
    arch, data, message = malformed_cases()[case]
    with pytest.raises(jobs.CheckpointError, match=message):
        jobs.decode_checkpoint(arch, data)


def test_encode_refuses_what_is_not_a_checkpoint():
    params, velocity = random_checkpoint(MLP, 4)
    with pytest.raises(ValueError, match="shapes"):
        jobs.encode_checkpoint(MLP, params[:-1], velocity)
    with pytest.raises(ValueError, match="shapes"):
        jobs.encode_checkpoint(MLP, params, velocity[:2] + (velocity[2].T,) + velocity[3:])
    with pytest.raises(ValueError, match="int32"):
        jobs.encode_checkpoint(MLP, tuple(p.astype(np.int64) for p in params), velocity)
    big = (params[0].copy(),) + params[1:]
    big[0][1, 2] = WEIGHTS.max_abs + 1
    with pytest.raises(ValueError, match=r"params\[0\]"):
        jobs.encode_checkpoint(MLP, big, velocity)
    with pytest.raises(ValueError, match="unknown model kind"):
        jobs.encode_checkpoint(Arch("cnn", (4, 3)), params, velocity)


# ---- segments and the worker's loop ----------------------------------------------------------------

long_run = jax.jit(M.train, static_argnums=0)  # the reference: ONE scan over the whole schedule


def data(arch: Arch, rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(-3 << 16, 3 << 16, (rows, arch.features)).astype(np.int32)
    if arch.classifier:
        return x, rng.integers(0, arch.outputs, rows).astype(np.int32)
    return x, rng.integers(-2 << 16, 2 << 16, (rows, arch.outputs)).astype(np.int32)


def reference(spec: jobs.JobSpec, x: np.ndarray, y: np.ndarray):
    """mlcore.models.train over all spec.steps steps at once: xs the data set's batches stacked
    (batch b = rows [b*B, (b+1)*B)), order = batch_order over the whole job."""
    nb, b = x.shape[0] // spec.batch, spec.batch
    xs = x.reshape(nb, b, x.shape[1])
    ys = y.reshape((nb, b) + y.shape[1:])
    p0, v0 = jobs.initial_checkpoint(spec.arch, spec.seed)
    order = jobs.batch_order(spec.order_seed, nb, 0, spec.steps)
    p, v, losses, _ = long_run(spec.arch, p0, v0, xs, ys, np.full(nb, b, np.int32), order,
                               np.int64(spec.lr), np.int64(spec.momentum))
    return tuple(map(np.asarray, p)), tuple(map(np.asarray, v)), np.asarray(losses).tolist()


JOB_ARCHS = {"mlp": Arch("mlp", (6, 8, 3)), "linear": Arch("linear", (5, 2))}


def spec_for(kind: str, momentum: int) -> jobs.JobSpec:
    # 48 rows in batches of 8: 6 batches; 24 steps = 4 epochs in 6 segments of 4 (segments straddle epochs)
    lr = 1 << 14 if kind == "mlp" else 1 << 12
    return jobs.JobSpec(JOB_ARCHS[kind], seed=3, lr=lr, momentum=momentum, batch=8, steps=24, k=4,
                        order_seed=17)


@pytest.mark.parametrize("kind", sorted(JOB_ARCHS))
@pytest.mark.parametrize("momentum", [0, 58982])
def test_segments_give_the_bits_of_one_long_run(kind, momentum):
    spec = spec_for(kind, momentum)
    x, y = data(spec.arch, 48, seed=len(kind))
    seen: list = []

    def keep(i, data, losses):
        # the bytes handed over are encode_checkpoint's (checked) encoding of the checkpoint
        assert data == jobs.encode_checkpoint(spec.arch, *jobs.decode_checkpoint(spec.arch, data))
        seen.append((i, hashlib.sha256(data).digest(), list(losses)))

    (params, velocity), hashes = jobs.train_job(spec, x, y, keep)
    p_ref, v_ref, losses_ref = reference(spec, x, y)
    assert all(np.array_equal(a, b) for a, b in zip(params + velocity, p_ref + v_ref))
    assert [i for i, _, _ in seen] == list(range(spec.segments + 1))
    assert [h for _, h, _ in seen] == hashes and len(set(hashes)) == len(hashes)
    assert [len(ls) for _, _, ls in seen] == [0] + [spec.k] * spec.segments
    assert [v for _, _, ls in seen for v in ls] == losses_ref
    assert hashes[0] == jobs.checkpoint_hash(spec.arch, *jobs.initial_checkpoint(spec.arch, 3))
    assert hashes[-1] == jobs.checkpoint_hash(spec.arch, p_ref, v_ref)
    if momentum:
        assert any(v.any() for v in velocity)


def test_one_segment_re_executed_from_a_decoded_checkpoint():
    """What a settle does: decode checkpoint j, gather segment j's rows, run it: hash j + 1."""
    spec = spec_for("mlp", 58982)
    x, y = data(spec.arch, 48, seed=3)
    stored: dict[int, bytes] = {}
    _, hashes = jobs.train_job(spec, x, y, lambda i, data, _: stored.__setitem__(i, data))
    assert [hashlib.sha256(stored[i]).digest() for i in range(spec.segments + 1)] == hashes
    for j in (0, 2, spec.segments - 1):
        p, v = jobs.decode_checkpoint(spec.arch, stored[j])
        idx = jobs.segment_rows(spec, 48, j)
        p, v, losses = jobs.run_segment(spec.arch, p, v, x[idx], y[idx], spec.lr, spec.momentum, spec.batch)
        assert jobs.checkpoint_hash(spec.arch, p, v) == hashes[j + 1] and len(losses) == spec.k


def test_job_hashes_pinned():
    spec = spec_for("mlp", 58982)
    x, y = data(spec.arch, 48, seed=3)
    _, hashes = jobs.train_job(spec, x, y)
    assert hashlib.sha256(b"".join(hashes)).hexdigest() == (
        "cc8b062a07cbe438debc93f6e98e12d3da9a95926f37bb9f4fecb44cdf516ab0")


def test_segment_rows():
    spec = spec_for("linear", 0)
    order = jobs.batch_order(17, 6, 0, 24)
    for i in range(spec.segments):
        idx = jobs.segment_rows(spec, 48, i)
        assert jobs.segment_batches(spec, 48, i).tolist() == order[i * 4:(i + 1) * 4].tolist()
        assert idx.shape == (32,)
        assert idx.tolist() == [b * 8 + r for b in order[i * 4:(i + 1) * 4].tolist() for r in range(8)]
    with pytest.raises(ValueError, match="segment"):
        jobs.segment_rows(spec, 48, spec.segments)


def test_run_segment_refuses_partial_batches():
    arch = JOB_ARCHS["linear"]
    p, v = jobs.initial_checkpoint(arch, 0)
    x, y = data(arch, 20)
    with pytest.raises(ValueError, match="multiple of 8"):
        jobs.run_segment(arch, p, v, x, y, 1 << 12, 0, 8)
    with pytest.raises(ValueError, match="batch"):
        jobs.run_segment(arch, p, v, x, y, 1 << 12, 0, 0)


BAD_SPECS = {
    "steps not a multiple of k": ({"steps": 25}, 48, "multiple of the checkpoint interval"),
    "rows not a multiple of batch": ({}, 50, "multiple of the batch"),
    "no rows": ({}, 0, "rows"),
    "bool batch": ({"batch": True}, 48, "batch"),
    "zero k": ({"k": 0}, 48, "k must"),
    "k over one call's steps": ({"k": MAX_STEPS + 1, "steps": MAX_STEPS + 1}, 48, "k must"),
    "segment over one call's rows": ({"k": 4096, "steps": 4096, "batch": 32}, 64, str(MAX_ROWS)),
    "float lr": ({"lr": 0.25}, 48, "lr"),
    "momentum 1": ({"momentum": 1 << 16}, 48, "momentum"),
    "negative seed": ({"seed": -1}, 48, "seed"),
    "order seed 2**64": ({"order_seed": 1 << 64}, 48, "order_seed"),
    "bad arch": ({"arch": Arch("mlp", (6, 3))}, 48, "layer widths"),
    "not an arch": ({"arch": ("mlp", (6, 8, 3))}, 48, "Arch"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_job_spec_check_refuses(case):
    change, rows, message = BAD_SPECS[case]
    fields = dict(spec_for("mlp", 0).__dict__, **change)
    with pytest.raises(ValueError, match=message):
        jobs.JobSpec(**fields).check(rows)


def test_train_job_refuses_bad_data():
    spec = spec_for("mlp", 0)
    x, y = data(spec.arch, 48)
    with pytest.raises(TypeError, match="x must"):
        jobs.train_job(spec, x.astype(np.int64), y)
    with pytest.raises(TypeError, match="y must"):
        jobs.train_job(spec, x, y[:40])
    with pytest.raises(ValueError, match="multiple of the batch"):
        jobs.train_job(spec, x[:44], y[:44])
