"""The `ml` API of contracts (vm/ml.py): tensors and models as values, their fields and items,
training and inference through mlcore.programs, gas (the program's cost before it runs, and
ML_COMPILE once per program on chain, recorded in state), and the VM's own error messages.

Every call goes through gradchain.testing.TestChain, so it is exactly a node's path.  A handful of
small architectures keeps the number of compiled programs (about a second each) low.
"""
from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vm import limits as vm_limits
from vm import ml as vm_ml
from vm.ml import SYSTEM_ADDRESS, decimal_to_q16, q16_to_decimal
from gradchain import ContractFailed, Reverted, TestChain
from vm.validate import ContractInvalid, validate
from vm.codec import encode_value
from vm.decimals import Decimal, decimal_scaled
from vm.tensors import MODEL_KINDS, Q16_MAX, Model, Tensor, param_shapes

from mlcore import gas as mgas
from mlcore import limits as mlimits
from mlcore import models as mmodels
from mlcore import programs

GAS = 900_000_000  # enough for a first use on chain (ML_COMPILE) and the work
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def q16(a) -> Tensor:
    return Tensor.from_numpy(np.asarray(a, dtype=np.float64))


def ints(a) -> Tensor:
    return Tensor.from_numpy(np.asarray(a, dtype=np.int64), "int")


RNG = np.random.default_rng(4)
X = RNG.normal(size=(8, 3))
Y = (X[:, 0] - X[:, 1] > 0).astype(np.int32)
XT, YT = q16(X), ints(Y)
YLIN = q16(np.stack([X[:, 0] * 0.5, X[:, 1] - X[:, 2]], axis=1))


# ---- constants agree with mlcore (vm cannot import it: its package imports jax) ------------------

def test_limits_and_formats_are_mlcores():
    from mlcore.fixed import WEIGHTS
    assert vm_limits.MAX_TENSOR_ELEMENTS == mlimits.MAX_TENSOR_ELEMENTS
    assert vm_limits.MAX_MODEL_DIM == mlimits.MAX_DIM == mmodels.MAX_DIM
    assert Q16_MAX == WEIGHTS.max_abs and WEIGHTS.frac_bits == 16
    assert vm_ml._LR_MAX == mmodels.LR.max_abs and vm_ml._MOMENTUM_MAX == mmodels.MOMENTUM_MAX
    assert set(MODEL_KINDS) == set(mmodels.KINDS)
    for kind, (lo, hi) in MODEL_KINDS.items():
        for n in range(1, 8):
            layers = (4,) * n
            try:
                mmodels.Arch(kind, layers).check()
                ok = True
            except ValueError:
                ok = False
            assert ok == (lo <= n <= hi), (kind, n)
    for layers in ((3, 8, 2), (16384, 2), (5, 7, 9, 11, 3)):
        assert tuple(param_shapes(layers)) == mmodels.Arch("mlp" if len(layers) > 2 else "softmax", layers).shapes


def test_importing_the_vm_does_not_import_jax():
    import subprocess
    import sys
    code = ("import sys, vm.runtime, gradchain.testing, ledger.contracts\n"
            "from gradchain.testing import TestChain\n"
            "c = TestChain().deploy('@export\\ndef f() -> int:\\n    return 1\\n')\n"
            "assert c.view.f() == 1\n"
            "print('jax' in sys.modules, 'mlcore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


# ---- Q.16 <-> Decimal, exactly ---------------------------------------------------------------------

@FAST
@given(st.integers(-(2**40), 2**40))
def test_q16_reads_as_the_exact_decimal(k):
    d = q16_to_decimal(k)
    assert Fraction(decimal_scaled(d), 10**18) == Fraction(k, 65536)
    assert decimal_to_q16(d) == k


@FAST
@given(st.integers(-(10**24), 10**24))
def test_decimal_quantises_half_up(q):
    d = Decimal.from_scaled(q)
    want = Fraction(q, 10**18) * 65536 + Fraction(1, 2)
    assert decimal_to_q16(d) == want.numerator // want.denominator  # floor(x * 2**16 + 1/2)


def test_quantise_ties_and_examples():
    half = Decimal("0.00000762939453125")  # 2**-17: a tie
    assert decimal_to_q16(half) == 1 and decimal_to_q16(-half) == 0
    assert decimal_to_q16(Decimal("0.5")) == 32768 and decimal_to_q16(-3) == -196608
    assert str(q16_to_decimal(1)) == "0.0000152587890625"  # 16 fractional digits at most
    assert str(q16_to_decimal(-Q16_MAX)) == "-127.4980316162109375"


# ---- a chain and helpers ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chain() -> TestChain:
    return TestChain()


def snippet(chain: TestChain, body: str, *args, gas: int = 100_000_000):
    """Run `body` (the lines of a function of a, b, c) as a read-only call."""
    params = ", ".join(["a", "b", "c"][:len(args)])
    body = body.strip()
    if "\n" not in body and not body.startswith("return "):
        body = "return " + body
    lines = "".join(f"    {line}\n" for line in body.split("\n"))
    c = chain.deploy(f"@export\ndef f({params}):\n{lines}")
    return c.view.f(*args, gas=gas)


def error(chain: TestChain, body: str, *args, gas: int = 100_000_000) -> str:
    with pytest.raises(ContractFailed) as e:
        snippet(chain, body, *args, gas=gas)
    return re.sub(r" \(in \w+, line \d+\)$", "", str(e.value))


# ---- tensors in contracts ----------------------------------------------------------------------

def test_tensor_construction_fields_and_items(chain):
    got = snippet(chain, """
t = ml.tensor([[1, Decimal("0.5"), -2], [Decimal("0.00000762939453125"), 0, Decimal("-1.25")]])
u = ml.tensor((3, -4), format="int")
return [t.shape, t.format, t.size, len(t), t[0, 1], t[1, 0], t[-1, -1], t[1], t[0:1], t[::-1][0, 0],
        t.tolist(), u.tolist(), u[1], u.format, str(t), t == t, t == u, t[0] == t[1], t in [u, t]]
""")
    t = Tensor((2, 3), "q16", [[65536, 32768, -131072], [1, 0, -81920]])
    assert got == [(2, 3), "q16", 6, 2, Decimal("0.5"), Decimal("0.0000152587890625"), Decimal("-1.25"),
                   Tensor((3,), "q16", [1, 0, -81920]), Tensor((1, 3), "q16", [[65536, 32768, -131072]]),
                   Decimal("0.0000152587890625"),
                   [[Decimal(1), Decimal("0.5"), Decimal(-2)], [Decimal("0.0000152587890625"), Decimal(0),
                                                                Decimal("-1.25")]],
                   [3, -4], -4, "int", "Tensor(shape=(2, 3), format='q16')", True, False, False, True]
    assert got[7].shape == (3,) and snippet(chain, "return a", t) == t
    assert snippet(chain, "return ml.tensor([[[[1]]]], format='int').shape") == (1, 1, 1, 1)
    assert snippet(chain, "return ml.concat([a, a, ml.tensor([[7, 8, 9]])])", t).shape == (5, 3)
    assert snippet(chain, "print(a, [a])\nreturn 1", t) == 1


@pytest.mark.parametrize("body, message", [
    ("ml.tensor([[1, 2], [3]])", "ml.tensor: the lists of level 2 must all have 2 items (a rectangular array of numbers)"),
    ("ml.tensor([])", "ml.tensor: values must not hold an empty list"),
    ("ml.tensor(5)", "ml.tensor: values must be a list (of lists) of numbers"),
    ("ml.tensor([[[[[1]]]]])", "ml.tensor: a tensor has at most 4 dimensions"),
    ("ml.tensor([128])", "ml.tensor: a q16 value must round to within +-127.4980316162109375 (about 127.5)"),
    ("ml.tensor([Decimal('-127.5')])", "ml.tensor: a q16 value must round to within +-127.4980316162109375 (about 127.5)"),
    ("ml.tensor([2 ** 31], format='int')", "ml.tensor: an int tensor's elements are int32: from -2**31 to 2**31 - 1"),
    ("ml.tensor([True])", "ml.tensor: a q16 tensor holds ints and Decimals, not bool"),
    ("ml.tensor([Decimal(1)], format='int')", "ml.tensor: an int tensor holds ints, not Decimal"),
    ("ml.tensor(['1'])", "ml.tensor: a q16 tensor holds ints and Decimals, not str"),
    ("ml.tensor([1], format='float32')", "ml.tensor: format must be \"q16\" or \"int\", not 'float32'"),
    ("ml.tensor([1], fmt='int')", "ml.tensor(values, format='q16') was called with the wrong arguments"),
    ("ml.tensor()", "ml.tensor(values, format='q16') was called with the wrong arguments"),
    ("ml.tensor([[0] * 2048] * 2049, format='int')", "limit_exceeded: ml.tensor: a tensor has at most 4194304 elements"),
    ("ml.concat([])", "ml.concat: takes a non-empty list of tensors"),
    ("ml.concat([ml.tensor([1]), 1])", "ml.concat: item 1 is an int, not a Tensor"),
    ("ml.concat([ml.tensor([[1, 2]]), ml.tensor([[1, 2, 3]])])",
     "ml.concat: item 1 is a q16 tensor of shape (1, 3); item 0 is a q16 tensor of shape (1, 2): the format and "
     "every dimension but the first must agree"),
    ("ml.concat([ml.tensor([1]), ml.tensor([1], format='int')])", "ml.concat: item 1 is an int tensor"),
    ("ml.tensor([[1, 2]])[0, 2]", "tensor index out of range"),
    ("ml.tensor([[1, 2]])[-2]", "tensor index out of range"),
    ("ml.tensor([[1, 2]])[0, 0, 0]", "a tensor of 2 dimensions takes 1 to 2 indexes, not 3"),
    ("ml.tensor([[1, 2]])['a']", "tensor indexes must be ints, not str"),
    ("ml.tensor([[1, 2]])[1:]", "a tensor slice must hold at least one row"),
    ("ml.tensor([[1, 2]])[::0]", "slice step cannot be zero"),
    ("ml.tensor([1, 2]) < ml.tensor([1, 3])", "cannot compare Tensor < Tensor"),
    ("ml.tensor([1]).tolist(1)", "tolist() takes no arguments"),
    ("ml.tensor([1]).kind", "a Tensor has no attribute kind"),
    ("[1].tolist()", "a list has no method tolist()"),
    ("'x'.format", "a str has no attribute format"),
    ("ml.train", ".train is a method: call it, as in x.train(...)"),
    ("ctx.shape", "a ctx has no attribute shape"),
    ("[r for r in ml.tensor([1])]", "cannot iterate over a Tensor"),
    ("{ml.tensor([1]): 1}", "a Tensor cannot be a dict key: keys are int, str, bytes, bool, None, Decimal or tuples of them"),
    ("ml", "invalid_value: the function's result cannot be returned: a value of type ML cannot be stored, emitted, "
           "passed or returned (only None, bool, int, str, bytes, list, tuple, dict, Decimal, Tensor and Model can)"),
])
def test_tensor_errors(chain, body, message):
    if not message.startswith(("limit_exceeded: ", "invalid_value: ")):
        message = "runtime_error: " + message
    got = error(chain, body, gas=GAS)
    assert got.startswith(message), got


@pytest.mark.parametrize("src, message", [
    ("return '{0.__class__}'.format(1)", "line 3, column 12: the attribute .format is a field of tensors and models, "
                                         "not a method: read it as x.format (str.format is not allowed: build text "
                                         "with str() and +)"),
    ("return str.format('{}', 1)", "line 3, column 12: the attribute .format is a field"),
    ("return a.shape()", "line 3, column 12: the attribute .shape is a field of tensors and models, not a method: "
                         "read it as x.shape"),
    ("return a.params(1)", "line 3, column 12: the attribute .params is a field"),
])
def test_fields_are_never_called(src, message):
    with pytest.raises(ContractInvalid) as e:
        validate(f"@export\ndef f(a):\n    {src}\n")
    assert str(e.value.issues[0]).startswith(message), e.value.issues
    assert validate("@export\ndef f(a):\n    return [a.format, a.shape, a.size, a.kind, a.layers, a.params]\n")


def test_the_field_wrappers_refuse_calls_too():
    """Defence in depth: the validator refuses x.shape(...), and the wrapper would too."""
    from vm import runtime
    with pytest.raises(Exception, match="not a method"):
        runtime._NAMESPACE["_m_shape"](Tensor((1,), "int", [1]))
    with pytest.raises(Exception, match="a str has no method format"):
        runtime._NAMESPACE["_m_format"]("{}", 1)


def test_tensors_cannot_be_changed_by_contracts(chain):
    assert error(chain, "t = ml.tensor([1, 2])\nt[0] = 5") == "runtime_error: items of a Tensor cannot be assigned"
    assert error(chain, "t = ml.tensor([1, 2])\ndel t[0]") == "runtime_error: items of a Tensor cannot be deleted"
    assert error(chain, "t = ml.tensor([1, 2])\nt += t") == "runtime_error: unsupported operand types for +: Tensor and Tensor"
    for src in ("t = ml.tensor([1])\nt.shape = (2,)", "return ml.tensor([1]).raw()", "return ml.tensor([1])._data",
                "return ml.tensor([1]).fmt", "return ml.foo(1)", "ml = 1"):
        with pytest.raises(ContractInvalid):
            validate("@export\ndef f():\n" + "".join(f"    {x}\n" for x in src.split("\n")))
    t = Tensor((2,), "int", [1, 2])
    assert snippet(chain, "xs = a.tolist()\nxs[0] = 9\nreturn [xs, a]", t) == [[9, 2], t]


def test_tolist_and_memory_limits(chain):
    assert error(chain, "return ml.tensor([[0] * 256] * 257, format='int').tolist()", gas=GAS) == \
        "limit_exceeded: tolist() of a tensor of 65792 elements: at most 65536 (read rows with t[i])"
    body = "t = ml.tensor([[0] * 1024] * 1024, format='int')\nts = []\nfor i in range(20):\n    ts.append(ml.concat([t, t]))"
    assert error(chain, body, gas=GAS) == "limit_exceeded: memory limit of 64 MiB per transaction reached"


# ---- tensors and models as values: storage, events, results, call() -------------------------

VALUES = '''
@export
def keep(key: str, v):
    storage[key] = v


@export
def keep_many(key: str, v, n: int):
    storage[key] = ml.concat([v] * n)


@export
def get(key: str):
    return storage[key]


@export
def shout(v):
    emit("Value", v=v)


@export
def echo(v):
    return v


@export
def relay(other: bytes, v) -> list:
    back = call(other, "echo", v)
    return [back, back == v]
'''


def test_tensors_and_models_as_storage_events_results_and_call_arguments(chain):
    c = chain.deploy(VALUES)
    other = chain.deploy(VALUES)
    m = Model.from_float("mlp", (3, 4, 2), [RNG.normal(size=s) for s in param_shapes((3, 4, 2))])
    for v in (XT, YT, m, [XT, {"m": m}]):
        c.keep("k", v)
        assert c.view.get("k") == v and chain.storage(c.address, "k") == v
        c.shout(v)
        assert chain.events[-1].data == {"v": v}
        assert c.echo(v) == v
        assert c.relay(other.address, v) == [v, True]
    part = Tensor((11_000,), "int", np.zeros(11_000, int))
    c.keep("big", part)
    with pytest.raises(ContractFailed, match="over the limit of 131072 bytes") as e:  # 132 KB
        c.keep_many("big", part, 3, gas=GAS)
    assert e.value.code == "limit_exceeded"
    assert c.storage("big") == part
    mid = Tensor((5_000,), "int", np.zeros(5_000, int))  # 20 KB: over an event, within a result
    with pytest.raises(ContractFailed, match="over the limit of 16384 bytes"):
        c.shout(mid)
    assert c.echo(mid) == mid
    with pytest.raises(ContractFailed, match="over the limit of 65536 bytes"):
        c.view.relay(other.address, Tensor((20_000,), "int", np.zeros(20_000, int)))
    assert error(chain, "storage['t'] = ml.tensor([1])\nstorage[ml.tensor([1])] = 1") == \
        "runtime_error: a Tensor cannot be a dict key: keys are int, str, bytes, bool, None, Decimal or tuples of them"


def test_tx_arguments_pay_for_tensor_bytes(chain):
    c = chain.deploy(VALUES)
    c.echo(Tensor((10,), "int", np.zeros(10, int)))
    small = chain.last_receipt.gas_used
    c.echo(Tensor((10_010,), "int", np.zeros(10_010, int)))
    big = chain.last_receipt.gas_used
    from vm import gas
    # 40,000 more bytes of arguments (and of the result), and 39 more KiB of argument units
    assert big - small >= 40_000 * gas.TX_DATA_PER_BYTE + 39 * gas.TX_ARG_PER_UNIT


# ---- models, training, inference, gas ----------------------------------------------------------

LAB = '''
@constructor
def init(kind: str, layers: list, seed: int):
    m = ml.model(kind, layers, seed)
    storage["m"] = m
    storage["first"] = m


@export
def info() -> list:
    m = storage["m"]
    return [m.kind, m.layers, m.size, len(m.params), m.params[0].shape, m.params[-1].format]


@export
def model():
    return storage["m"]


@export
def fit(x, y, lr: Decimal, momentum: Decimal, batch: int, epochs: int) -> list:
    m, losses = ml.train(storage["m"], x, y, lr, momentum, batch, epochs)
    storage["m"] = m
    emit("Trained", steps=len(losses), last=losses[-1])
    return losses


@export
def fit_and_fail(x, y):
    m, losses = ml.train(storage["m"], x, y, Decimal("0.5"), batch=3)
    storage["m"] = m
    require(False, "changed my mind")


@export
def predict(x):
    return ml.predict(storage["m"], x)


@export
def probabilities(x):
    return ml.probabilities(storage["m"], x)


@export
def evaluate(x, y) -> tuple:
    return ml.evaluate(storage["m"], x, y)


@export
def merge(weights: list):
    models = [storage["first"], storage["m"]]
    m = ml.average(models, weights)
    storage["avg"] = m
    return m
'''


def pid(op: str, kind: str, layers: tuple, **dims) -> bytes:
    return programs.program_id(op, mmodels.Arch(kind, layers), **dims)


def registered(chain: TestChain, program: bytes):
    return chain.storage(SYSTEM_ADDRESS, program)


def scenario(chain: TestChain) -> tuple[list, list]:
    """Deploy, train on tensors sent as transaction arguments, predict, evaluate, average."""
    lab = chain.deploy(LAB, "mlp", [3, 8, 2], 11, gas=GAS)
    results = [lab.info()]
    results.append(lab.fit(XT, YT, Decimal("0.5"), Decimal("0.9"), 4, 10, gas=GAS))
    results.append(lab.fit(XT, YT, Decimal("0.25"), Decimal(0), 4, 10, gas=GAS))  # the same program
    results.append(lab.predict(XT, gas=GAS))
    results.append(lab.probabilities(XT, gas=GAS))
    results.append(lab.evaluate(XT, YT, gas=GAS))
    results.append(lab.merge([1, 3], gas=GAS))
    results.append(lab.model())
    gas_used = [r.gas_used for r in chain.receipts]
    return results, gas_used


@pytest.fixture(scope="module")
def lab_run():
    chain = TestChain()
    results, gas_used = scenario(chain)
    return chain, results, gas_used


def test_train_predict_evaluate_average_end_to_end(lab_run):
    chain, results, gas_used = lab_run
    info, losses, losses2, labels, probs, (loss, correct), avg, m = results
    assert info == ["mlp", (3, 8, 2), 3 * 8 + 8 + 8 * 2 + 2, 4, (3, 8), "q16"]
    assert len(losses) == len(losses2) == 2 * 10 and all(type(x) is Decimal for x in losses + losses2)
    assert losses[-1] < losses[0]
    assert [e.data for e in chain.events if e.name == "Trained"] == [{"steps": 20, "last": losses[-1]},
                                                                      {"steps": 20, "last": losses2[-1]}]
    # the results are mlcore's, bit for bit
    arch = mmodels.Arch("mlp", (3, 8, 2))
    p0 = programs.init(arch, 11)
    p1, v1, l1, _ = programs.train(arch, p0, None, XT.raw(), YT.raw(), 32768, 58982, 4, 10)
    p2, v2, l2, _ = programs.train(arch, p1, v1, XT.raw(), YT.raw(), 16384, 0, 4, 10)
    assert losses == [q16_to_decimal(k) for k in l1] and losses2 == [q16_to_decimal(k) for k in l2]
    assert [t.raw().tolist() for t in m.params] == [p.tolist() for p in p2]
    assert [t.raw().tolist() for t in m.velocity] == [v.tolist() for v in v2]
    assert labels == Tensor((8,), "int", programs.predict(arch, p2, XT.raw()))
    assert probs == Tensor((8, 2), "q16", programs.probabilities(arch, p2, XT.raw()))
    assert probs.format == "q16" and labels.format == "int"
    k_loss, k_correct = programs.evaluate(arch, p2, XT.raw(), YT.raw())
    assert (loss, correct) == (q16_to_decimal(k_loss), k_correct)
    assert correct == int((labels.raw() == Y).sum())
    assert avg == Model("mlp", (3, 8, 2), [Tensor(p.shape, "q16", p) for p in programs.average(arch, [p0, p2], [1, 3])])
    assert all(not v.raw().any() for v in avg.velocity)
    # each program was registered by the transaction that first ran it, at its height
    assert registered(chain, pid("train", "mlp", (3, 8, 2), rows=8, batch=4, epochs=10)) == 3
    assert registered(chain, pid("train", "mlp", (3, 8, 2), rows=8, batch=8, epochs=5)) is None
    assert registered(chain, pid("average", "mlp", (3, 8, 2), models=2)) == 8
    # the first use paid ML_COMPILE; the same program again did not
    assert gas_used[2] > mgas.ML_COMPILE > 5_000_000 > gas_used[3]


def test_gas_and_results_are_identical_on_a_second_chain_with_kernels_cached_or_not(lab_run):
    _, results, gas_used = lab_run
    programs._PROGRAMS.clear()  # nothing compiled in memory: gas must not notice
    again, gas_again = scenario(TestChain())
    assert gas_again == gas_used
    assert [encode_value(r, 1 << 22) for r in again] == [encode_value(r, 1 << 22) for r in results]


def test_ml_gas_is_the_programs_cost_charged_before_it_runs(lab_run):
    chain, _, _ = lab_run
    lab_address = [r for r in chain.receipts][0].output
    from gradchain.testing import Contract
    from vm.codec import decode_value
    lab = Contract(chain, decode_value(lab_address, 64))
    arch = mmodels.Arch("mlp", (3, 8, 2))
    x9, x12 = q16(RNG.normal(size=(9, 3))), q16(RNG.normal(size=(12, 3)))
    with chain.snapshot():  # register both programs, then compare views that pay no compile
        lab.predict(x9, gas=GAS)
        lab.predict(x12, gas=GAS)
        g9 = _view_gas(chain, lab, "predict", x9)
        g12 = _view_gas(chain, lab, "predict", x12)
        assert g12 - g9 == programs.cost("predict", arch, rows=12) - programs.cost("predict", arch, rows=9)
        x10 = q16(RNG.normal(size=(10, 3)))  # bucket(9) == bucket(10): the same program, the same gas
        assert _view_gas(chain, lab, "predict", x10) == g9
    # not registered now (the snapshot is gone): a free read-only call pays no ML_COMPILE and
    # registers nothing; a transaction's estimate (free=False) pays it, as the transaction would
    from ledger.contracts import read_only_call
    x40 = q16(RNG.normal(size=(40, 3)))
    cost = programs.cost("predict", arch, rows=40)
    free = _view_gas(chain, lab, "predict", x40)
    assert cost < free < cost + 100_000
    assert lab.view.predict(x40, gas=GAS).shape == (40,)
    assert registered(chain, pid("predict", "mlp", (3, 8, 2), rows=40)) is None
    paid = read_only_call(chain._view(), "gradchain-test", chain.height, chain.time_ms, chain.accounts[0].address,
                          lab.address, "predict", [x40], free + mgas.ML_COMPILE - 1, free=False)
    assert paid.error is not None and paid.error.message == (
        "out of gas: ml.predict runs a program (predict of a mlp model (3, 8, 2)) not yet "
        f"used on chain, whose first use costs ML_COMPILE = {mgas.ML_COMPILE} gas more")
    paid = read_only_call(chain._view(), "gradchain-test", chain.height, chain.time_ms, chain.accounts[0].address,
                          lab.address, "predict", [x40], GAS, free=False)
    assert paid.error is None and paid.gas_used == free + mgas.ML_COMPILE


def _view_gas(chain, contract, fn, *args) -> int:
    from ledger.contracts import read_only_call
    out = read_only_call(chain._view(), "gradchain-test", chain.height, chain.time_ms, chain.accounts[0].address,
                         contract.address, fn, list(args), GAS)
    assert out.error is None, out.error
    return out.gas_used


def test_a_failed_transaction_rolls_back_the_model_and_the_program_registry():
    chain = TestChain()
    lab = chain.deploy(LAB, "mlp", [3, 8, 2], 11, gas=GAS)
    before = lab.model()
    program = pid("train", "mlp", (3, 8, 2), rows=8, batch=3, epochs=1)
    with pytest.raises(Reverted, match="changed my mind") as e:
        lab.fit_and_fail(XT, YT, gas=GAS)
    assert e.value.gas_used > mgas.ML_COMPILE  # paid for the compile...
    assert registered(chain, program) is None and lab.model() == before  # ...which was rolled back
    with pytest.raises(Reverted) as again:
        lab.fit_and_fail(XT, YT, gas=GAS)
    assert again.value.gas_used == e.value.gas_used  # so the next one pays it again
    bad = ints(np.full(8, 2))  # a label out of range: refused before anything runs, nothing kept
    with pytest.raises(ContractFailed, match="y holds the label 2") as e:
        lab.fit(XT, bad, Decimal(1), Decimal(0), 0, 1, gas=GAS)
    assert e.value.gas_used < 1_000_000 and lab.model() == before


# ---- the arguments of ml functions --------------------------------------------------------------

M = Model.from_float("mlp", (3, 8, 2), [np.full(s, 0.1) for s in param_shapes((3, 8, 2))])
LIN = Model.from_float("linear", (3, 2), [np.full(s, 0.1) for s in param_shapes((3, 2))])
SOFT = Model.from_float("softmax", (3, 2), [np.full(s, 0.1) for s in param_shapes((3, 2))])


@pytest.mark.parametrize("body, args, message", [
    ("ml.model('cnn', [3, 2], 1)", (), "ml.model: a model's kind is one of 'linear', 'softmax', 'mlp', not 'cnn'"),
    ("ml.model('softmax', [3, 4, 2], 1)", (), "ml.model: a softmax model has 2 layer sizes (features, classes)"),
    ("ml.model('mlp', [3, 2], 1)", (), "ml.model: a mlp model has 3 to 5 layer sizes (features, hidden..., classes)"),
    ("ml.model('linear', [3, 0], 1)", (), "ml.model: a model's layer sizes are ints in [1, 16384]"),
    ("ml.model('linear', [3, 16385], 1)", (), "ml.model: a model's layer sizes are ints in [1, 16384]"),
    ("ml.model('mlp', [4096, 4096, 10], 1)", (), "ml.model: a model may have at most 4194304 parameters"),
    ("ml.model('linear', [3, 2], -1)", (), "ml.model: seed must be an int from 0 to 2**64 - 1"),
    ("ml.model('linear', [3, 2], 2 ** 64)", (), "ml.model: seed must be an int from 0 to 2**64 - 1"),
    ("ml.train(a, b, c, 1)", (XT, XT, YT), "ml.train: model must be a Model, not Tensor"),
    ("ml.train(a, b, c, 1)", (M, YT, YT), "ml.train: x must be a q16 tensor of shape (rows, 3) for this model, "
                                          "not an int tensor of shape (8,)"),
    ("ml.train(a, b, c, 1)", (M, q16(np.zeros((4, 2))), YT), "ml.train: x must be a q16 tensor of shape (rows, 3)"),
    ("ml.train(a, b, c, 1)", (M, XT, 5), "ml.train: y must be a Tensor, not int"),
    ("ml.train(a, b, c, 1)", (M, XT, ints(np.zeros(7))),
     "ml.train: y must be an int tensor of shape (8,) (a class label per row of x), not an int tensor of shape (7,)"),
    ("ml.train(a, b, c, 1)", (M, XT, YLIN), "ml.train: y must be an int tensor of shape (8,)"),
    ("ml.train(a, b, c, 1)", (M, XT, ints(np.full(8, -1))),
     "ml.train: y holds the label -1: labels of a model of 2 classes are 0 to 1"),
    ("ml.train(a, b, c, 1)", (M, XT, ints(np.arange(8))), "ml.train: y holds the label 7"),
    ("ml.train(a, b, c, 1)", (LIN, XT, YT), "ml.train: y must be a q16 tensor of shape (8, 2) (targets, one row per "
                                            "row of x), not an int tensor of shape (8,)"),
    ("ml.train(a, b, c, -1)", (M, XT, YT), "ml.train: lr must be from 0 to 16"),
    ("ml.train(a, b, c, 17)", (M, XT, YT), "ml.train: lr must be from 0 to 16"),
    ("ml.train(a, b, c, Decimal('16.00001'))", (M, XT, YT), "ml.train: lr must be from 0 to 16"),
    ("ml.train(a, b, c, '0.1')", (M, XT, YT), "ml.train: lr must be a Decimal, not str"),
    ("ml.train(a, b, c, True)", (M, XT, YT), "ml.train: lr must be a Decimal, not bool"),
    ("ml.train(a, b, c, 1, 1)", (M, XT, YT), "ml.train: momentum must be from 0 to below 1"),
    ("ml.train(a, b, c, 1, Decimal('0.999999'))", (M, XT, YT), "ml.train: momentum must be from 0 to below 1"),
    ("ml.train(a, b, c, 1, Decimal('-0.1'))", (M, XT, YT), "ml.train: momentum must be from 0 to below 1"),
    ("ml.train(a, b, c, 1, batch=-1)", (M, XT, YT), "ml.train: batch must be an int >= 0"),
    ("ml.train(a, b, c, 1, epochs=0)", (M, XT, YT), "ml.train: epochs must be an int >= 1"),
    ("ml.train(a, b, c, 1, epochs='2')", (M, XT, YT), "ml.train: epochs must be an int, not str"),
    ("ml.train(a, b, c, 1, batch=1, epochs=513)", (M, XT, YT),
     "limit_exceeded: ml.train: 8 batches x 513 epochs is over the limit of 4096 steps per call"),
    ("ml.train(a, b, c)", (M, XT, YT),
     "ml.train(model, x, y, lr, momentum=0, batch=0, epochs=1) was called with the wrong arguments"),
    ("ml.train(a, b, c, 1, speed=2)", (M, XT, YT), "ml.train(model, x, y, lr, momentum=0, batch=0, epochs=1) was "
                                                   "called with the wrong arguments"),
    ("ml.predict(a, b)", (M, YT), "ml.predict: x must be a q16 tensor of shape (rows, 3) for this model"),
    ("ml.predict(a, b)", (5, XT), "ml.predict: model must be a Model, not int"),
    ("ml.predict(a, ml.tensor([[0, 0, 0]] * 65537))", (M,),
     "limit_exceeded: ml.predict: x has 65537 rows, over the limit of 65536 per call"),
    ("ml.probabilities(a, b)", (LIN, XT), "ml.probabilities: a linear model has no class probabilities: use ml.predict"),
    ("ml.evaluate(a, b, c)", (SOFT, XT, ints(np.full(8, 3))), "ml.evaluate: y holds the label 3"),
    ("ml.average(a, [1, 1])", ([M, SOFT],), "ml.average: models[1] is a softmax model (3, 2), models[0] a mlp model "
                                            "(3, 8, 2): all must have one architecture"),
    ("ml.average(a, [1, 1])", ([M, 1],), "ml.average: models[1] must be a Model, not int"),
    ("ml.average(a, [1])", ([M, M],), "ml.average: weights must be a list of 2 ints, one per model"),
    ("ml.average(a, [1, -1])", ([M, M],), "ml.average: weights must be ints >= 0"),
    ("ml.average(a, [1, Decimal(1)])", ([M, M],), "ml.average: weights must be ints >= 0"),
    ("ml.average(a, [0, 0])", ([M, M],), "ml.average: the weights sum to 0: at least one must be positive"),
    ("ml.average(a, [2 ** 38, 2 ** 38])", ([M, M],), "ml.average: the weights sum to more than 549755813887 (2**39 - 1)"),
    ("ml.average(a, [])", ([],), "ml.average: models must be a non-empty list of models"),
    ("ml.average(a, [1] * 257)", ([M] * 257,), "limit_exceeded: ml.average: at most 256 models per call"),
])
def test_argument_errors_name_the_argument(chain, body, args, message):
    if not message.startswith("limit_exceeded: "):
        message = "runtime_error: " + message
    got = error(chain, "return " + body, *args, gas=GAS)
    assert got.startswith(message), got


def test_linear_and_softmax_models(chain):
    lab = chain.deploy(LAB, "linear", [3, 2], 5, gas=GAS)
    losses = lab.fit(XT, YLIN, Decimal("0.1"), Decimal(0), 0, 20, gas=GAS)
    assert losses[-1] < losses[0]
    out = lab.predict(XT, gas=GAS)
    assert (out.shape, out.format) == ((8, 2), "q16")
    loss, correct = lab.evaluate(XT, YLIN, gas=GAS)
    assert type(loss) is Decimal and correct == 0
    soft = chain.deploy(LAB, "softmax", [3, 2], 5, gas=GAS)
    assert soft.info()[:4] == ["softmax", (3, 2), 8, 2]
    assert soft.probabilities(XT, gas=GAS).shape == (8, 2)


def test_tensors_from_json_reach_contracts(chain):
    from vm.json_values import from_json_arg, to_json
    c = chain.deploy(VALUES)
    j = {"tensor": {"format": "q16", "shape": [1, 2], "data": [65536, -32768]}}
    arg = from_json_arg(j)
    assert to_json(c.echo(arg)) == j
    assert snippet(chain, "return a.tolist()", arg) == [[Decimal(1), Decimal("-0.5")]]


# ---- the ML examples of docs/contracts.md ------------------------------------------------------

def test_doc_ml_classifier_and_session(tmp_path, monkeypatch):
    """The named ML blocks of docs/contracts.md (its doctest blocks run in tests/test_examples.py)."""
    from tests.test_examples import doc_block
    (tmp_path / "classifier.py").write_text(doc_block("ml-classifier"))
    monkeypatch.chdir(tmp_path)
    exec(doc_block("ml-session"), {})
