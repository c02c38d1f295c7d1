"""One execution of contract code: the namespace it runs in, its frames, its outcome.

Compiled contract code (vm/compiler.py) sees only the names `NAMESPACE` holds: the
builtins of the language (vm/builtins.py), the injected names (vm/world.py), and hidden
helpers (`_add`, `_getitem`, `_m_append`, ...; vm/ops.py).  `__builtins__` is empty, so
nothing else of the host is reachable.  Every wrapper checks its operands' exact types
and charges gas by their size BEFORE doing the work (DESIGN 3a), so no single operation
can run long or allocate much on gas it has not paid for.  Gas, depth and memory are
vm/meter.py's cells; one execution runs at a time (`_LOCK`).
"""
from __future__ import annotations

import threading
import types
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from vm import errors as E
from vm.compiler import Compiled, compile_contract, contract_filename
from vm.limits import MAX_CALL_DEPTH, MAX_MEMORY, MAX_OUTPUT_BYTES
from vm.validate import METHODS, ML_FIELDS, ML_METHODS, ContractInvalid
from vm.codec import encode_value
from vm.decimals import Decimal
from vm import meter
from vm.host import pinned
from vm.meter import _DEPTH, _GAS, _MEM, _bigint, _ck, _deep, _oog, _oom, _toolong
from vm.sizes import _CTX, _ML, _STORAGE, _kept, _key
from vm import ml
from vm.trace import Tracer
from vm.world import _sdel, _sload, _sstore, b_call, b_emit, b_require, b_transfer
from vm.ops import (_add, _and, _argtype, _attr, _delitem, _delslice, _eq, _floordiv, _ge, _getitem,
                    _getslice, _gt, _iadd, _imul, _in, _inv, _iter, _le, _lshift, _lt, _mod, _mul, _ne, _neg,
                    _notin, _or, _pos, _pow, _rshift, _setitem, _setslice, _sub, _truediv, _unpack, _xor)
from vm.builtins import (_ISINSTANCE_TYPES, _method, _sget_or, b_Decimal, b_abs, b_all, b_any, b_bool,
                         b_bytes, b_dict, b_divmod, b_enumerate, b_int, b_isinstance, b_len, b_list, b_max,
                         b_min, b_pow, b_print, b_range, b_reversed, b_sorted, b_str, b_sum, b_tuple, b_zip)


_LOCK = threading.RLock()


# ---- what the VM needs from the ledger -------------------------------------------------

class Host(Protocol):
    """The world as the VM sees it (ledger.contracts provides it over ledger.state)."""

    def get_code(self, address: bytes) -> str | None: ...

    def storage_get(self, address: bytes, key: bytes) -> bytes | None: ...

    def storage_set(self, address: bytes, key: bytes, value: bytes | None) -> None: ...

    def balance(self, address: bytes) -> int: ...

    def transfer(self, sender: bytes, to: bytes, amount: int) -> bool: ...

    def job_model(self, job_id: int) -> tuple[str, tuple[int, ...], bytes] | None:
        """A final training job's model: (kind, layers, its mlcore.jobs checkpoint bytes)."""
        ...


@dataclass(slots=True)
class Env:
    """The block and transaction a contract runs in."""

    chain_id: str
    block_height: int
    block_time: int  # milliseconds since the epoch, the block header's time
    origin: bytes    # address that signed the transaction (ctx.sender)


@dataclass(slots=True)
class Frame:
    this: bytes
    caller: bytes
    value: int
    compiled: Compiled


@dataclass
class Outcome:
    """What one execution did.  `error` is None on success; state changes of a failed
    execution must be discarded by the caller (ledger.contracts does)."""

    gas_used: int
    output: Any = None
    events: list[tuple[bytes, str, bytes]] = field(default_factory=list)  # (contract, name, encoded data)
    logs: list[str] = field(default_factory=list)  # print() output
    error: E.VMError | None = None
    compile_gas: int = 0  # of gas_used, ML_COMPILE paid for programs' first use (vm/ml.py): told to users


class Execution:
    """One transaction's (or one read-only call's) contract work."""

    def __init__(self, host: Host, env: Env, compile_fees: bool = True, tracer: Tracer | None = None):
        self.host = host
        self.env = env
        self.tracer = tracer  # vm/trace.py: trace_tx only; None in every consensus run
        # False for free read-only calls: a program's first use on chain (vm/ml.py) is then
        # not charged ML_COMPILE, since nothing of the call is kept
        self.compile_fees = compile_fees
        self.frames: list[Frame] = []
        self.events: list[tuple[bytes, str, bytes]] = []
        self.logs: list[str] = []
        self.log_bytes = 0
        self.chosen_hashes: dict[Any, list] = {}  # see _key
        self.compile_gas = 0  # ML_COMPILE charged so far (Outcome.compile_gas)

    def call(self, contract: bytes, caller: bytes, function: str, args: list, kwargs: dict) -> Any:
        """A cross-contract call of this execution: how vm/world.py's call() reaches the
        runtime without importing it (the runtime imports the world)."""
        return invoke(self, contract, caller, 0, function, args, kwargs)


meter.RT: Execution | None = None


# ---- compiling and instantiating, cached ----------------------------------------------

_COMPILED: OrderedDict[bytes, Compiled] = OrderedDict()
_INSTANCES: dict[bytes, dict[str, Callable]] = {}
_BY_SOURCE: dict[str, Compiled] = {}
_CACHE_SIZE = 512
_NAMES: dict[bytes, str] = {}  # code hash -> the co_filename its code gets (name_code)
_NAMED: set[str] = set()        # those names


def name_code(source: str, filename: str) -> None:
    """Compile `source` from now on with `filename` as its code objects' co_filename
    instead of `<contract HASH>`.  For tests only (gradchain.testing names a contract
    deployed from a file by its path while coverage.py measures, so coverage sees that
    file run): a node never calls it.  Only the name changes, never the bytecode, so gas
    and results are the same."""
    from vm.compiler import code_hash
    h = code_hash(source)
    if _NAMES.get(h) == filename:
        return
    _NAMES[h] = filename
    _NAMED.add(filename)
    c = _COMPILED.pop(h, None)  # compiled under the old name: compile again at the next use
    if c is not None:
        _INSTANCES.pop(h, None)
        _BY_SOURCE.pop(c.source, None)


def code_filename(h: bytes) -> str:
    """The co_filename of the code compiled from the source whose code hash is `h`."""
    return _NAMES.get(h) or contract_filename(h)


def named_files() -> set[str]:
    """The file names name_code gave (the live set: read, never change it)."""
    return _NAMED


def load(source: str) -> Compiled:
    """Compile a contract's source, cached by code hash (raises ContractInvalid)."""
    c = _BY_SOURCE.get(source)  # a str caches its hash: no sha256 per call
    if c is not None:
        return c
    from vm.compiler import code_hash
    h = code_hash(source)
    c = _COMPILED.get(h)
    if c is None:
        c = compile_contract(source, _NAMES.get(h))
        _COMPILED[h] = c
        if len(_COMPILED) > _CACHE_SIZE:
            old, gone = _COMPILED.popitem(last=False)
            _INSTANCES.pop(old, None)
            _BY_SOURCE.pop(gone.source, None)
    else:
        _COMPILED.move_to_end(h)
    _BY_SOURCE[source] = c
    return c


def _functions(c: Compiled) -> dict[str, Callable]:
    fns = _INSTANCES.get(c.code_hash)
    if fns is None:
        closure = tuple(meter.CELLS[n] for n in c.factory.co_freevars)
        factory = types.FunctionType(c.factory, dict(_NAMESPACE), "_factory", None, closure)
        fns = _INSTANCES[c.code_hash] = factory()
    return fns


# ---- the namespace compiled code runs in ---------------------------------------------------

BUILTIN_FUNCTIONS: dict[str, Callable] = {
    "abs": b_abs, "all": b_all, "any": b_any, "bool": b_bool, "bytes": b_bytes, "dict": b_dict,
    "divmod": b_divmod, "enumerate": b_enumerate, "int": b_int, "isinstance": b_isinstance, "len": b_len,
    "list": b_list, "max": b_max, "min": b_min, "pow": b_pow, "print": b_print, "range": b_range,
    "reversed": b_reversed, "sorted": b_sorted, "str": b_str, "sum": b_sum, "tuple": b_tuple, "zip": b_zip,
}
INJECTED: dict[str, Any] = {
    "storage": _STORAGE, "ctx": _CTX, "emit": b_emit, "require": b_require, "transfer": b_transfer,
    "call": b_call, "Decimal": b_Decimal, "ml": _ML,
}
_ISINSTANCE_TYPES.update({b_int: (int,), b_str: (str,), b_bytes: (bytes,), b_bool: (bool,), b_list: (list,),
                          b_dict: (dict,), b_tuple: (tuple,), b_Decimal: (Decimal,)})
_HELPERS = {f.__name__: f for f in (
    _oog, _oom, _toolong, _deep, _bigint, _ck, _kept, _key, _add, _iadd, _sub, _mul, _imul, _floordiv, _mod, _truediv, _pow,
    _lshift, _rshift, _and, _or, _xor, _neg, _pos, _inv, _eq, _ne, _lt, _le, _gt, _ge, _in, _notin,
    _getitem, _getslice, _setitem, _setslice, _delitem, _delslice, _iter, _unpack, _attr, _argtype,
    _sload, _sstore, _sdel, _sget_or)}
_NAMESPACE: dict[str, Any] = {"__builtins__": {}, **BUILTIN_FUNCTIONS, **INJECTED, **_HELPERS,
                              **{"_m_" + m: _method(m) for m in METHODS},
                              **{"_m_" + m: ml.method(m) for m in ML_METHODS | ML_FIELDS}}


# ---- running contract code -------------------------------------------------------------------

def invoke(rt: Execution, contract: bytes, caller: bytes, value: int, function: str, args: list,
           kwargs: dict, compiled: Compiled | None = None) -> Any:
    """Run one exported function (or the constructor, when `compiled` is given) of a
    contract as a new frame; errors carry where they happened.  With a tracer (trace_tx
    only) the call is told to it on the way in and out; it changes nothing else."""
    tr = rt.tracer
    if tr is not None:
        tr.enter(rt, contract, caller, value, function, args, kwargs)
    try:
        if len(rt.frames) >= MAX_CALL_DEPTH:
            _deep()
        if compiled is None:
            source = rt.host.get_code(contract)
            if source is None:
                raise E.NotFound(f"no contract at 0x{contract.hex()}")
            compiled = load(source)
            if function not in compiled.exports:
                # ascii(), not repr(): repr keeps what each CPython's Unicode tables call printable
                raise E.NotFound(f"contract 0x{contract.hex()} exports no function {ascii(function)}")
        fn = _functions(compiled)[function]
        rt.frames.append(Frame(contract, caller, value, compiled))
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - whatever contract code caused becomes a receipt
            err = e if isinstance(e, E.VMError) else _translate(e)
            if err.contract is None:
                _locate_error(err, contract, compiled, e.__traceback__)
                if not err.function:  # the call itself failed (its arguments): point at the def
                    err.function, err.line = function, fn.__code__.co_firstlineno
            if err is e:
                raise
            raise err from None
        finally:
            rt.frames.pop()
    except E.VMError as e:
        if tr is not None:
            tr.failed(e)
        raise
    if tr is not None:
        tr.returned(result)
    return result


_HOST_ERRORS: list[tuple[type, str]] = [
    (ZeroDivisionError, "division by zero"),
    (KeyError, "key not found"),
    (IndexError, "index out of range"),
    # one message for both: a local read by a comprehension before it is assigned is a
    # NameError on 3.11 (a free variable) and an UnboundLocalError on 3.12+ (inlined)
    (NameError, "a local variable was used before it was assigned"),
    (OverflowError, "number too large"),
    (TypeError, "a value of the wrong type, or the wrong number of arguments"),
    (ValueError, "invalid value"),
    (RuntimeError, "a dict changed size while it was iterated over"),
]


def _translate(e: Exception) -> E.VMError:
    """A host exception raised by contract code, in the VM's own words (host messages
    differ between CPython releases and must never reach a receipt)."""
    if isinstance(e, RecursionError):
        return E.LimitExceeded("value or call nesting too deep")
    if isinstance(e, MemoryError):
        return E.LimitExceeded("out of memory")
    if isinstance(e, TypeError) and e.__traceback__ is not None and e.__traceback__.tb_next is None:
        return E.InvalidArguments("the arguments do not match the function's parameters")
    for cls, message in _HOST_ERRORS:
        if isinstance(e, cls):
            return E.ContractRuntimeError(message)
    return E.ContractRuntimeError("the operation failed")


def _locate_error(e: E.VMError, contract: bytes, compiled: Compiled, tb: Any) -> None:
    """Attach the innermost contract, function and source line.  A comprehension is
    reported as the function it is written in: 3.11 runs it as a code object of its own
    (<listcomp>), 3.12+ inline, and receipts must not tell them apart."""
    e.contract = contract
    filename = compiled.factory.co_filename  # `<contract HASH>`, or what name_code gave
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == filename and code.co_name not in ("_factory", "_outer"):
            if not code.co_name.startswith("<"):
                e.function = code.co_name
            e.line = tb.tb_lineno
        tb = tb.tb_next


def execute(host: Host, env: Env, gas_limit: int, run: Callable[[Execution], Any],
            compile_fees: bool = True, tracer: Tracer | None = None) -> Outcome:
    """Run `run(execution)` with `gas_limit` gas; never raises for a contract's fault.
    The host's digit limit, recursion limit and warning filters are pinned (vm/host.py).
    `tracer` (vm/trace.py) records the calls of a traced re-execution; None otherwise."""
    with _LOCK, pinned():
        rt = Execution(host, env, compile_fees, tracer)
        prev = meter.RT, _GAS.cell_contents, _DEPTH.cell_contents, _MEM.cell_contents
        meter.RT = rt
        _GAS.cell_contents, _DEPTH.cell_contents, _MEM.cell_contents = gas_limit, 0, MAX_MEMORY
        out = Outcome(0)
        try:
            out.output = run(rt)
        except E.VMError as e:
            out.error = e
        finally:
            left = _GAS.cell_contents
            meter.RT = prev[0]
            _GAS.cell_contents, _DEPTH.cell_contents, _MEM.cell_contents = prev[1:]
        out.gas_used = gas_limit if out.error is not None and out.error.code == "out_of_gas" \
            else min(gas_limit - left, gas_limit)
        out.events, out.logs, out.compile_gas = rt.events, rt.logs, rt.compile_gas
        return out


def call_function(rt: Execution, contract: bytes, function: str, args: list, kwargs: dict, value: int) -> bytes:
    """A transaction's or read-only call's entry: returns the encoded result."""
    result = invoke(rt, contract, rt.env.origin, value, function, args, kwargs)
    return _encode_output(result)


def deploy_contract(rt: Execution, contract: bytes, source: str, args: list, kwargs: dict, value: int) -> Compiled:
    """Validate and compile `source` and run its constructor.  The caller stores the
    code (ledger.contracts) once this returns."""
    try:
        compiled = load(source)
    except ContractInvalid as e:
        raise E.InvalidContract([str(i) for i in e.issues]) from None
    if compiled.constructor is not None:
        invoke(rt, contract, rt.env.origin, value, compiled.constructor, args, kwargs, compiled)
    elif args or kwargs:
        raise E.InvalidArguments("the contract has no @constructor to take arguments")
    return compiled


def _encode_output(v: Any) -> bytes:
    try:
        return encode_value(v, MAX_OUTPUT_BYTES)
    except E.VMError as e:
        raise E.InvalidValue(f"the function's result cannot be returned: {e.message}") from None
