"""mlcore.programs: bucketing, padded programs that give the bits of the unpadded computation,
one compile per bucket, hyperparameters as data, program ids, gas, limits, and the persisted
compilation cache across two processes.

The reference is mlcore.models run on the REAL shapes, step by step (no padding anywhere):
grads + loss + sgd on each real mini-batch, forward/predict/evaluate on the real rows, average
of the real parameter stacks.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlcore import gas, limits
from mlcore import models as M
from mlcore import programs as P
from mlcore.models import Arch

ROOT = Path(__file__).resolve().parent.parent
LR = 1 << 14  # 0.25
MU = 58982    # 0.9
ARCHS = {
    "linear": Arch("linear", (6, 3)),
    "softmax": Arch("softmax", (5, 3)),
    "mlp": Arch("mlp", (5, 7, 6, 3)),  # two hidden layers; every width pads (to 8)
}


def data(arch: Arch, rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x in [-3, 3) (Q.16); labels in [0, classes) or Q.16 targets in [-2, 2)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3 << 16, 3 << 16, (rows, arch.features)).astype(np.int32)
    if arch.classifier:
        return x, rng.integers(0, arch.outputs, rows).astype(np.int32)
    return x, rng.integers(-2 << 16, 2 << 16, (rows, arch.outputs)).astype(np.int32)


# ---- the unpadded reference ----------------------------------------------------------------------

@partial(jax.jit, static_argnums=0)
def ref_step(arch: Arch, p, v, x, y, lr, mu):
    """One SGD step on a real batch (every row real): new params, velocity, loss, correct."""
    n = x.shape[0]
    g, out = M.grads(arch, p, x, y, n)
    loss = M.loss(arch, out, y, n)
    correct = jnp.sum(jnp.argmax(out, axis=-1) == y) if arch.classifier else 0
    p, v = M.sgd(p, v, g, lr, mu)
    return p, v, loss, correct


def ref_train(arch, p, v, x, y, lr, mu, batch, epochs):
    rows = x.shape[0]
    losses, hits = [], []
    for _ in range(epochs):
        for start in range(0, rows, batch):
            p, v, loss, c = ref_step(arch, p, v, x[start:start + batch], y[start:start + batch], lr, mu)
            losses.append(int(loss))
            hits.append(int(c))
    return tuple(np.asarray(a) for a in p), tuple(np.asarray(a) for a in v), losses, hits


@partial(jax.jit, static_argnums=0)
def ref_rows(arch: Arch, p, x, y):
    """predict, probabilities (classifiers) and evaluate on the real rows."""
    probs = M.probabilities(arch, p, x) if arch.classifier else jnp.zeros(())
    return M.predict(arch, p, x), probs, M.evaluate(arch, p, x, y, x.shape[0])


def same(a, b) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
                                    for x, y in zip(a, b))


# ---- bit-identical to the unpadded computation ---------------------------------------------------

@pytest.mark.parametrize("name", sorted(ARCHS))
def test_padded_programs_give_the_unpadded_bits(name):
    arch = ARCHS[name]
    rows, batch, epochs = 23, 9, 3  # batches of 9, 9 and 5 rows, 9 steps: B = 10, S = 4, T = 10
    x, y = data(arch, rows)
    p0 = P.init(arch, seed=7)
    assert same(p0, tuple(np.asarray(a) for a in M.init(arch, 7)))

    p1, v1, losses, hits = P.train(arch, p0, None, x, y, LR, MU, batch=batch, epochs=epochs)
    zero = tuple(np.zeros_like(a) for a in p0)
    r1, rv1, rl, rh = ref_train(arch, p0, zero, x, y, LR, MU, batch, epochs)
    assert same(p1, r1) and same(v1, rv1)
    assert (losses, hits) == (rl, rh) and len(losses) == 9
    assert not same(p1, p0) and any(np.any(v) for v in v1)  # it trained, momentum is live
    # velocity carried into a second call
    p2, v2, losses2, hits2 = P.train(arch, p1, v1, x, y, LR, MU, batch=batch, epochs=epochs)
    r2, rv2, rl2, rh2 = ref_train(arch, r1, rv1, x, y, LR, MU, batch, epochs)
    assert same(p2, r2) and same(v2, rv2) and (losses2, hits2) == (rl2, rh2)
    assert all(a.flags.c_contiguous and a.dtype == np.int32 for a in p2 + v2)

    pred, probs, (loss, correct) = ref_rows(arch, p2, x, y)
    assert same([P.predict(arch, p2, x)], [np.asarray(pred)])
    if arch.classifier:
        assert same([P.probabilities(arch, p2, x)], [np.asarray(probs)])
    else:
        with pytest.raises(ValueError):
            P.probabilities(arch, p2, x)
    assert P.evaluate(arch, p2, x, y) == (int(loss), int(correct))

    stack = [p0, p1, p2]
    weights = [1, 2, 5]
    want = jax.jit(M.average)([np.stack(t) for t in zip(*stack)], np.asarray(weights, np.int64))
    assert same(P.average(arch, stack, weights), [np.asarray(a) for a in want])


@pytest.mark.parametrize("arch, rows, batch", [
    (Arch("softmax", (70, 60)), 23, 9),    # 4,260 parameters: packed array by array
    (Arch("linear", (5, 3)), 1100, 300),  # 8,800 elements of x and y: stored batch by batch
])
def test_large_models_and_data_take_the_slice_path(arch, rows, batch):
    assert (P._arch_plan(arch).idx is None) == (arch.size > P.SMALL_MODEL)
    assert P._train_plan(arch, rows, batch, 2).idx is None and P._rows_plan("evaluate", arch, rows).idx is None
    x, y = data(arch, rows, seed=5)
    p0 = P.init(arch, 4)
    zero = tuple(np.zeros_like(a) for a in p0)
    p, v, losses, hits = P.train(arch, p0, zero, x, y, LR, MU, batch=batch, epochs=2)
    r, rv, rl, rh = ref_train(arch, p0, zero, x, y, LR, MU, batch, 2)
    assert same(p, r) and same(v, rv) and (losses, hits) == (rl, rh)
    pred, _, (loss, correct) = ref_rows(arch, p, x, y)
    assert same([P.predict(arch, p, x)], [np.asarray(pred)])
    assert P.evaluate(arch, p, x, y) == (int(loss), int(correct))
    want = jax.jit(M.average)([np.stack(t) for t in zip(p0, p)], np.asarray([3, 1], np.int64))
    assert same(P.average(arch, [p0, p], [3, 1]), [np.asarray(a) for a in want])


# ---- programs are bounded by buckets; hyperparameters are data -----------------------------------

def test_twenty_odd_batch_sizes_in_one_bucket_compile_once():
    arch = Arch("softmax", (4, 3))
    sizes = list(range(257, 320, 2))[:20]
    assert {P.bucket(b) for b in sizes} == {320}
    p0 = P.init(arch, 2)
    before = P.stats()
    for b in sizes:
        x, y = data(arch, b, seed=b)
        out = P.train(arch, p0, None, x, y, LR, MU, batch=b, epochs=1)
    # batch 0 and a batch larger than the rows both mean one batch of all rows: the same program
    for batch in (0, 1000):
        p, v, losses, hits = P.train(arch, p0, None, x, y, LR, MU, batch=batch, epochs=1)
        assert same(p, out[0]) and same(v, out[1]) and (losses, hits) == (out[2], out[3])
    after = P.stats()
    assert after["programs_built"] - before["programs_built"] == 1
    assert after["backend_compiles"] - before["backend_compiles"] == 1  # nothing else compiled either
    zero = tuple(np.zeros_like(a) for a in p0)
    r, rv, rl, rh = ref_train(arch, p0, zero, x, y, LR, MU, sizes[-1], 1)
    assert same(out[0], r) and same(out[1], rv) and (out[2], out[3]) == (rl, rh)
    assert len({P.program_id("train", arch, rows=b, batch=b, epochs=1) for b in sizes}) == 1
    assert len({P.cost("train", arch, rows=b, batch=b, epochs=1) for b in sizes}) == 1


def test_lr_momentum_and_row_counts_never_recompile():
    arch = ARCHS["softmax"]
    p0 = P.init(arch, 3)
    x, y = data(arch, 40, seed=4)
    P.train(arch, p0, None, x[:33], y[:33], LR, MU, batch=0, epochs=2)
    P.evaluate(arch, p0, x[:33], y[:33])
    before = P.stats()
    results = set()
    for lr, mu, rows in [(1 << 10, 0, 34), (LR, MU, 35), (M.LR.max_abs, M.MOMENTUM_MAX, 40), (0, 100, 36)]:
        p, v, _, _ = P.train(arch, p0, None, x[:rows], y[:rows], lr, mu, batch=0, epochs=2)
        results.add(b"".join(a.tobytes() for a in p))
        P.evaluate(arch, p, x[:rows], y[:rows])
    after = P.stats()
    assert after["backend_compiles"] == before["backend_compiles"]
    assert after["programs_built"] == before["programs_built"]
    assert len(results) == 4


# ---- buckets, keys, ids, gas, limits -------------------------------------------------------------

def test_bucket():
    assert [P.bucket(n) for n in (1, 7, 8, 9, 10, 11, 14, 15, 16, 17, 21, 33, 100, 1000, 1025)] == \
        [8, 8, 8, 10, 10, 12, 14, 16, 16, 20, 24, 40, 112, 1024, 1280]
    allowed = {m << k for m in (8, 10, 12, 14) for k in range(16)}
    for n in range(1, 5000):
        b = P.bucket(n)
        assert b >= n and b in allowed and P.bucket(b) == b
        assert b == 8 or b <= n * 5 // 4 + 1  # at most 25% waste
        assert all(a < n for a in allowed if a < b)  # the smallest allowed value >= n
    for limit in (limits.MAX_DIM, limits.MAX_ROWS, limits.MAX_STEPS, limits.MAX_MODELS):
        assert P.bucket(limit) == limit  # a real size within a limit pads within it
    # counts (steps, batch slots, models) also have 1, 2 and 4: one step is the common call
    assert [P.bucket_count(n) for n in (1, 2, 3, 4, 5, 8, 9, 15, 300)] == [1, 2, 4, 4, 8, 8, 10, 16, 320]
    assert P.schedule(100, 0, 1)[-3:] == (112, 2, 1)  # one batch of all rows: B, S, T
    for bad in (0, -1):
        with pytest.raises(ValueError):
            P.bucket(bad)
        with pytest.raises(ValueError):
            P.bucket_count(bad)


def test_program_ids_and_cost_depend_on_buckets_only():
    arch = Arch("mlp", (30, 17, 10))
    same_bucket = Arch("mlp", (32, 20, 10))
    other = Arch("mlp", (33, 20, 10))
    pid = P.program_id("train", arch, rows=100, batch=18, epochs=2)
    assert isinstance(pid, bytes) and len(pid) == 32
    # same buckets: rows 100 and 112 with batch 18 / 20 -> 6 batches of B = 20, 12 steps, S = 8, T = 12
    assert P.key("train", arch, rows=100, batch=18, epochs=2) == \
        ("train", "mlp", (32, 20, 10), 10, 20, 8, 12)
    assert P.program_id("train", same_bucket, rows=112, batch=20, epochs=2) == pid
    assert P.cost("train", same_bucket, rows=112, batch=20, epochs=2) == \
        P.cost("train", arch, rows=100, batch=18, epochs=2)
    assert P.program_id("train", other, rows=100, batch=18, epochs=2) != pid
    assert P.program_id("predict", arch, rows=100) != P.program_id("evaluate", arch, rows=100)
    assert P.program_id("train", Arch("mlp", (30, 17, 9)), rows=100, batch=18, epochs=2) != pid  # real classes
    assert P.program_id("average", Arch("softmax", (5, 3)), models=3) == \
        P.program_id("average", Arch("linear", (5, 3)), models=4)  # same parameter shapes
    # gas grows with the work and includes the call fee
    c = [P.cost("predict", arch, rows=r) for r in (1, 100, 1000, 10000)]
    assert gas.ML_CALL < c[0] < c[1] < c[2] < c[3]
    assert P.cost("train", arch, rows=1000, batch=100, epochs=1) < P.cost("train", arch, rows=1000, batch=100, epochs=3)
    assert P.cost("average", arch, models=2) < P.cost("average", arch, models=200)
    # the int8-digit lowering (K > 129 for weights x inputs) is counted as such
    wide = P.work(P.key("predict", Arch("softmax", (256, 10)), rows=8))
    narrow = P.work(P.key("predict", Arch("softmax", (128, 10)), rows=8))
    assert wide["i8_mac"] == 8 * 256 * 10 * 9 and wide["f64_mac"] == 0
    assert narrow["f64_mac"] == 8 * 128 * 10 and narrow["i8_mac"] == 0


def test_program_id_is_pinned():
    """The canonical signature is consensus (the chain records ids): changing it is a fork."""
    arch = Arch("mlp", (30, 17, 10))
    assert P.canonical(P.key("train", arch, rows=100, batch=18, epochs=2)) == b"train|mlp|32,20,10|10|20|8|12"
    assert P.canonical(P.key("average", arch, models=3)) == b"average||32,20,10|0|4"
    import hashlib
    assert P.program_id("train", arch, rows=100, batch=18, epochs=2) == \
        hashlib.sha256(b"gradchain/mlcore/programs/v1|train|mlp|32,20,10|10|20|8|12").digest()


def test_limits_are_refused_before_anything_runs():
    arch = ARCHS["softmax"]
    with pytest.raises(ValueError, match="steps"):
        P.cost("train", arch, rows=5000, batch=1, epochs=1)
    with pytest.raises(ValueError, match="steps"):
        P.key("train", arch, rows=100, batch=10, epochs=410)
    P.key("train", arch, rows=100, batch=10, epochs=409)
    with pytest.raises(ValueError):
        P.cost("predict", arch, rows=limits.MAX_ROWS + 1)
    with pytest.raises(ValueError):
        P.cost("average", arch, models=limits.MAX_MODELS + 1)
    with pytest.raises(ValueError):
        P.cost("average", arch, models=0)
    with pytest.raises(ValueError):
        P.cost("train", Arch("mlp", (4, 16384, 16384, 3)), rows=10)  # a 2**28-element weight matrix
    with pytest.raises(ValueError):
        P.cost("predict", Arch("mlp", (4, 3)), rows=10)  # an mlp needs a hidden layer
    with pytest.raises(ValueError, match="elements"):  # x beyond MAX_TENSOR_ELEMENTS
        P.cost("predict", Arch("softmax", (1000, 3)), rows=5000)
    with pytest.raises(ValueError, match="elements"):  # 65536 rows through 640 (padded) hidden units
        P.cost("predict", Arch("mlp", (4, 600, 3)), rows=limits.MAX_ROWS)
    P.cost("predict", Arch("mlp", (4, 512, 3)), rows=limits.MAX_ROWS)
    with pytest.raises(ValueError, match="elements"):  # 256 models x 133,898 padded parameters
        P.cost("average", Arch("mlp", (512, 256, 10)), models=256)
    P.cost("average", Arch("mlp", (512, 256, 10)), models=224)
    with pytest.raises(ValueError):
        P.cost("fly", arch, rows=10)
    with pytest.raises(ValueError):
        P.cost("probabilities", ARCHS["linear"], rows=10)
    with pytest.raises(ValueError):
        P.cost("train", arch, rows=10, batch=-1)
    with pytest.raises(ValueError):
        P.cost("train", arch, rows=10, epochs=0)


def test_bad_inputs_are_refused():
    arch = ARCHS["softmax"]
    p = tuple(np.zeros(s, np.int32) for s in arch.shapes)
    x, y = data(arch, 6)
    with pytest.raises(TypeError):
        P.predict(arch, p, x.astype(np.int64))
    with pytest.raises(TypeError):
        P.predict(arch, p, x[:, :4])
    with pytest.raises(TypeError):
        P.predict(arch, (p[0].astype(np.int64), p[1]), x)
    with pytest.raises(TypeError):
        P.predict(arch, (p[0].T, p[1]), x)
    with pytest.raises(TypeError):
        P.predict(arch, p[:1], x)
    with pytest.raises(TypeError):
        P.predict(arch, ([[1]], p[1]), x)
    with pytest.raises(TypeError):
        P.evaluate(arch, p, x, y[:5])
    with pytest.raises(TypeError):
        P.train(arch, p, (p[0], p[1].astype(np.int16)), x, y, LR, MU)
    for lr, mu in ((-1, 0), (M.LR.max_abs + 1, 0), (1, 1 << 16), (0.5, 0), (True, 0)):
        with pytest.raises(ValueError):
            P.train(arch, p, None, x, y, lr, mu)
    with pytest.raises(ValueError):
        P.average(arch, [p, p], [1])
    with pytest.raises(ValueError):
        P.average(arch, [p, p], [0, 0])
    with pytest.raises(ValueError):
        P.average(arch, [p], [M.MAX_WEIGHT_SUM + 1])


# ---- the persisted compilation cache ---------------------------------------------------------------

CACHE_SCRIPT = """
import hashlib, json, sys
import jax
import numpy as np
from mlcore import programs as P
from mlcore.models import Arch

jax.jit(lambda a: a + 1)(np.arange(3))  # something compiled before: enabling the cache still works
P.enable_persistent_cache(sys.argv[1])
base = P.stats()
arch = Arch("softmax", (5, 3))
params = tuple((np.arange(np.prod(s)).reshape(s) * 997 % 40000 - 20000).astype(np.int32) for s in arch.shapes)
x = (np.arange(50).reshape(10, 5) * 7919 % 200000 - 100000).astype(np.int32)
y = (np.arange(10) % 3).astype(np.int32)
p, v, losses, _ = P.train(arch, params, None, x, y, 1 << 14, 1 << 15, batch=4, epochs=2)
digest = hashlib.sha256(b"".join(a.tobytes() for a in p + v)).hexdigest()
delta = {k: v - base[k] for k, v in P.stats().items()}
print(json.dumps(dict(delta, digest=digest, losses=losses)))
"""


def test_persistent_cache_survives_a_restart(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", CACHE_SCRIPT, str(tmp_path / "xla-cache")], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run()
    assert first["xla_compiles"] >= 1 and first["persistent_cache_writes"] >= 1
    assert any((tmp_path / "xla-cache").iterdir())
    second = run()  # a fresh process, the same cache dir: the program is loaded, never compiled
    assert second["persistent_cache_hits"] >= 1
    assert second["xla_compiles"] == 0 and second["persistent_cache_writes"] == 0
    assert second["programs_built"] == 1
    assert (second["digest"], second["losses"]) == (first["digest"], first["losses"])
