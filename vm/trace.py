"""Call traces of one execution: what `trace_tx` re-executes a transaction to show.

A `Tracer` is handed to vm.runtime.execute for a traced run only; every consensus run has
`Execution.tracer = None`, and the hooks (vm/runtime.py invoke, vm/ml.py dispatch) cost one
`is None` test there.  The hooks never charge gas or touch the meter's cells: a traced run
charges exactly what an untraced one does (tests/test_trace.py checks it).

What is recorded, per contract call (the transaction's own call, and each `call()`): the
callee, function, arguments, value, the result or the error with its function and line, gas
used (inclusive, and its own: less the calls it made), the events it emitted, its `print`
output, and each `ml.*` call it made (the op, its arguments' shapes, its result's shape, gas
and the ML_COMPILE part of it).  Arguments and results are rendered when they are seen (a
callee may mutate a list it was given), tensors and models by shape only.

Bounds: at most MAX_CALLS calls and MAX_ML_CALLS ml calls kept, MAX_EVENTS events with
their data, MAX_LOG_BYTES of print output, strings and bytes cut at MAX_TEXT, containers at
MAX_ITEMS, and MAX_VALUE_CHARS of rendered values in all; anything left out sets `truncated`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from vm.codec import decode_value
from vm.decimals import Decimal
from vm.errors import VMError
from vm.limits import MAX_EVENT_BYTES
from vm.meter import _GAS
from vm.tensors import Model, Tensor

MAX_CALLS = 1000           # contract calls kept in one trace
MAX_ML_CALLS = 1000        # ml.* calls kept
MAX_EVENTS = 256           # events kept with their data
MAX_LOG_BYTES = 16 * 1024  # print output kept (a receipt keeps as much: vm.limits.MAX_PRINT_BYTES)
MAX_TEXT = 256             # characters of a str, bytes of a bytes, in a rendered value
MAX_ITEMS = 64             # items of a list, tuple or dict in a rendered value
MAX_DEPTH = 8              # nesting of a rendered value
MAX_VALUE_CHARS = 512 * 1024  # rendered values of one trace in all (about their JSON size)


@dataclass
class MlTrace:
    """One `ml.<op>(...)` call."""

    op: str
    args: list
    gas_start: int
    compile_start: int
    gas_used: int = 0
    compile_gas: int = 0
    result: Any = None
    error: str | None = None


@dataclass
class CallTrace:
    """One contract call; `kept` False for a call past MAX_CALLS (counted, not shown)."""

    contract: bytes
    caller: bytes
    function: str
    value: int
    args: list
    kwargs: dict
    gas_start: int
    events_start: int
    logs_start: int
    kept: bool = True
    gas_used: int = 0
    hidden_gas: int = 0  # gas of calls made from this one that were not kept
    events_end: int = 0
    logs_end: int = 0
    result: Any = None
    error: VMError | None = None
    calls: list["CallTrace"] = field(default_factory=list)
    ml: list[MlTrace] = field(default_factory=list)


def _left() -> int:
    return max(_GAS.cell_contents, 0)  # an out-of-gas charge leaves it below zero


class Tracer:
    """Records one execution's calls (the hooks below); `to_json` renders the tree."""

    def __init__(self) -> None:
        self.root: CallTrace | None = None
        self.truncated = False
        self._stack: list[CallTrace] = []
        self._calls = 0
        self._ml_calls = 0
        self._budget = MAX_VALUE_CHARS
        self._rt: Any = None

    # ---- hooks (vm/runtime.py invoke, vm/ml.py dispatch) -----------------------------------

    def enter(self, rt: Any, contract: bytes, caller: bytes, value: int, function: str, args: list,
              kwargs: dict) -> None:
        self._rt = rt
        parent = self._stack[-1] if self._stack else None
        kept = self._calls < MAX_CALLS and (parent is None or parent.kept)
        if kept:
            self._calls += 1
            node = CallTrace(contract, caller, function, value, [self.value(a) for a in args],
                             {k: self.value(v) for k, v in kwargs.items()}, _left(), len(rt.events), len(rt.logs))
        else:
            self.truncated = True
            node = CallTrace(contract, caller, function, value, [], {}, _left(), len(rt.events), len(rt.logs),
                             kept=False)
        if parent is None:
            self.root = node
        elif kept:
            parent.calls.append(node)
        self._stack.append(node)

    def returned(self, result: Any) -> None:
        node = self._exit()
        if node.kept:
            node.result = self.value(result)

    def failed(self, error: VMError) -> None:
        self._exit().error = error

    def _exit(self) -> CallTrace:
        node = self._stack.pop()
        node.gas_used = max(node.gas_start - _left(), 0)
        node.events_end, node.logs_end = len(self._rt.events), len(self._rt.logs)
        if not node.kept and self._stack:
            self._stack[-1].hidden_gas += node.gas_used
        return node

    def ml_enter(self, rt: Any, op: str, args: tuple, kwargs: dict) -> MlTrace | None:
        node = self._stack[-1] if self._stack else None
        if node is None or not node.kept or self._ml_calls >= MAX_ML_CALLS:
            self.truncated = True
            return None
        self._ml_calls += 1
        shown = [self.value(a) for a in args] + [{k: self.value(v)} for k, v in kwargs.items()]
        m = MlTrace(op, shown, _left(), rt.compile_gas)
        node.ml.append(m)
        return m

    def ml_exit(self, rt: Any, m: MlTrace | None, result: Any, error: BaseException | None) -> None:
        if m is None:
            return
        m.gas_used = max(m.gas_start - _left(), 0)
        m.compile_gas = rt.compile_gas - m.compile_start
        if error is None:
            m.result = self.value(result)
        else:
            m.error = error.message if isinstance(error, VMError) else "the call failed"

    # ---- rendering ---------------------------------------------------------------------------

    def value(self, v: Any, depth: int = 0) -> Any:
        """A JSON view of a contract value within the bounds (vm.json_values.to_json's forms,
        tensors and models by shape)."""
        if self._budget <= 0 or depth > MAX_DEPTH:
            self.truncated = True
            return {"omitted": True}
        t = type(v)
        if v is None or t is bool:
            self._budget -= 5
            return v
        if t is int:
            self._budget -= v.bit_length() // 3 + 1
            return v
        if t is str or t is bytes:
            text = v[:MAX_TEXT] if t is str else "0x" + v[:MAX_TEXT].hex()
            if len(v) > MAX_TEXT:
                self.truncated = True
                text += f"... ({len(v)} {'characters' if t is str else 'bytes'})"
            self._budget -= len(text) + 2
            return text
        if t is Decimal:
            self._budget -= 24
            return str(v)
        if t is Tensor:
            self._budget -= 40
            return {"tensor": {"format": v.fmt, "shape": list(v.shape)}}
        if t is Model:
            self._budget -= 40
            return {"model": {"kind": v.kind, "layers": list(v.layers)}}
        if t is list or t is tuple or t is dict:
            shown = list(islice(v.items(), MAX_ITEMS)) if t is dict else v[:MAX_ITEMS]
            if t is dict:
                if all(type(k) is str for k, _ in shown):
                    out: Any = {k[:MAX_TEXT]: self.value(x, depth + 1) for k, x in shown}
                else:
                    out = [[self.value(k, depth + 1), self.value(x, depth + 1)] for k, x in shown]
            else:
                out = [self.value(x, depth + 1) for x in shown]
            if len(v) > MAX_ITEMS:
                self.truncated = True
                more = {"more_items": len(v) - MAX_ITEMS}
                out = out | {"...": more} if type(out) is dict else out + [more]
            self._budget -= 2 + len(shown)
            return out
        self._budget -= 16
        return {"type": type(v).__name__}

    def _event(self, index: int) -> dict:
        contract, name, data = self._rt.events[index]
        if index >= MAX_EVENTS:
            self.truncated = True
            return {"index": index, "contract": "0x" + contract.hex(), "name": name, "data": {"omitted": True}}
        return {"index": index, "contract": "0x" + contract.hex(), "name": name,
                "data": self.value(decode_value(data, MAX_EVENT_BYTES))}

    def _own(self, node: CallTrace, start: str, end: str) -> list[int]:
        """Indexes in [node.start, node.end) not inside a kept child's range."""
        out, at = [], getattr(node, start)
        for c in node.calls:
            out.extend(range(at, getattr(c, start)))
            at = getattr(c, end)
        out.extend(range(at, getattr(node, end)))
        return out

    def _logs(self, node: CallTrace, used: list[int]) -> list[str]:
        out = []
        for i in self._own(node, "logs_start", "logs_end"):
            line = self._rt.logs[i]
            if used[0] + len(line) > MAX_LOG_BYTES:
                self.truncated = True
                break
            used[0] += len(line) + 1
            out.append(line)
        return out

    def _node_json(self, node: CallTrace, log_used: list[int]) -> dict:
        e = node.error
        children = [self._node_json(c, log_used) for c in node.calls]
        return {
            "contract": "0x" + node.contract.hex(), "caller": "0x" + node.caller.hex(), "function": node.function,
            "args": node.args, **({"kwargs": node.kwargs} if node.kwargs else {}), "value": node.value,
            "result": node.result if e is None else None,
            "error": None if e is None else error_json(e),
            "gas_used": node.gas_used,
            "own_gas": node.gas_used - sum(c.gas_used for c in node.calls) - node.hidden_gas,
            "events": [self._event(i) for i in self._own(node, "events_start", "events_end")],
            "logs": self._logs(node, log_used),
            "ml": [{"op": "ml." + m.op, "args": m.args, "result": m.result, "error": m.error, "gas_used": m.gas_used,
                    "compile_gas": m.compile_gas} for m in node.ml],
            "calls": children,
        }

    def to_json(self) -> dict | None:
        """The call tree (None when no contract call began, e.g. the value could not be paid)."""
        return None if self.root is None else self._node_json(self.root, [0])


def error_json(e: VMError) -> dict:
    """Where and why a call failed: the fields of a receipt's `failure`, and its message."""
    return {"code": e.code, "message": e.message, "contract": "0x" + e.contract.hex() if e.contract else None,
            "function": e.function or None, "line": e.line or None}


def revert_point(node: dict | None) -> dict | None:
    """The innermost failed call of a rendered tree: where the error was raised."""
    if node is None or node["error"] is None:
        return None
    for c in node["calls"]:
        if c["error"] is not None:
            return revert_point(c) or c
    return node
