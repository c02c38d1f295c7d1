"""A transaction's trace (trace_tx, TestChain.trace_last) as indented text, one call per
line with what happened inside it below, as `gradchain tx HASH --trace` prints it:

    call from 0x6eec...a22a to 0xd463...3f11: failed, gas 77,002 (intrinsic 24,416)
      call go("0x8d45...b7fc", 30) on 0xd463...3f11  failed: revert: n too big (in work, line 8)  gas 52,586 (own 41,618)
        print: outer start 30
        event Start {"n":30}
        call work(30) on 0x8d45...b7fc  failed: revert: n too big (in work, line 8)  gas 10,968 (own 10,968)
          print: inner got 30
          event Worked {"n":30}
    failed in work, line 8 of 0x8d45...b7fc: revert: n too big
"""
from __future__ import annotations

import json
from typing import Any

from gradchain.units import format_grad

VALUE_CHARS = 60  # an argument or result shown on a line, at most


def _short(v: Any, limit: int = VALUE_CHARS) -> str:
    text = json.dumps(v, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shape(v: Any) -> str:
    """An ml argument or result: a tensor or model by its shape, anything else in short."""
    if isinstance(v, dict) and len(v) == 1:
        if "tensor" in v and isinstance(v["tensor"], dict):
            t = v["tensor"]
            return f"{t.get('format')}{tuple(t.get('shape') or ())}"
        if "model" in v and isinstance(v["model"], dict):
            m = v["model"]
            return f"{m.get('kind')} model {tuple(m.get('layers') or ())}"
    if isinstance(v, list):
        return "(" + ", ".join(_shape(x) for x in v) + ")"
    return _short(v, 24)


def _where(e: dict) -> str:
    """Where an error was raised, as the VM says it: " (in work, line 8)"."""
    parts = [f"in {e['function']}"] if e.get("function") else []
    parts += [f"line {e['line']}"] if e.get("line") else []
    return f" ({', '.join(parts)})" if parts else ""


def _call_lines(node: dict, depth: int) -> list[str]:
    pad = "  " * depth
    args = ", ".join(_short(a) for a in node["args"])
    if node.get("kwargs"):
        args += (", " if args else "") + ", ".join(f"{k}={_short(v)}" for k, v in node["kwargs"].items())
    e = node.get("error")
    outcome = f"failed: {e['code']}: {e['message']}{_where(e)}" if e else f"-> {_short(node['result'])}"
    value = f" sending {format_grad(node['value'])}" if node.get("value") else ""
    lines = [f"{pad}call {node['function']}({args}) on {node['contract']}{value}  {outcome}  "
             f"gas {node['gas_used']:,} (own {node['own_gas']:,})"]
    inner = pad + "  "
    lines += [f"{inner}print: {line}" for line in node["logs"]]
    lines += [f"{inner}event {ev['name']} {_short(ev['data'], 100)}" for ev in node["events"]]
    for m in node["ml"]:
        args_text = ", ".join(_shape(a) for a in m["args"])
        result = f"failed: {m['error']}" if m.get("error") else f"-> {_shape(m['result'])}"
        compile_text = f", of it ML_COMPILE {m['compile_gas']:,}" if m.get("compile_gas") else ""
        lines.append(f"{inner}{m['op']}({args_text}) {result}  gas {m['gas_used']:,}{compile_text}")
    for c in node["calls"]:
        lines += _call_lines(c, depth + 1)
    return lines


def trace_text(trace: dict) -> str:
    """The trace as indented lines (see the module docstring)."""
    head = f"{trace['kind']} from {trace['from']}" + (f" to {trace['to']}" if trace.get("to") else "")
    lines = [f"{head}: {trace['status']}, gas {trace['gas_used']:,} (intrinsic {trace['intrinsic_gas']:,})"]
    if trace.get("call") is not None:
        lines += _call_lines(trace["call"], 1)
    else:
        lines.append("  (no contract code ran)")
    r = trace.get("revert")
    if r is not None:
        where = f" in {r['function']}" if r.get("function") else ""
        where += f", line {r['line']}" if r.get("line") else ""
        where += f" of {r['contract']}" if r.get("contract") else ""
        lines.append(f"failed{where}: {r['code']}: {r['message']}")
    if trace.get("truncated"):
        lines.append("(truncated: the trace is over its bounds; docs/rpc.md \"trace_tx\")")
    return "\n".join(lines)
