"""JSON text in and out under the VM's digit rule: a request's numbers are read so that no
host setting (PYTHONINTMAXSTRDIGITS) decides how it reads, and answers holding a
contract's big ints are written whatever the host's limit."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vm.host import pinned
from vm.limits import MAX_INT_DIGITS


@dataclass(frozen=True)
class HugeInt:
    """A JSON number with more digits than any int the node takes: kept as this marker, not
    parsed, so that no host setting (PYTHONINTMAXSTRDIGITS) decides how a request reads."""

    digits: int


SAFE_DIGITS = 640  # CPython's lowest digit limit: int() of this many digits works on every host


def parse_int(text: str) -> int | HugeInt:
    """json.loads' parse_int: ints of up to MAX_INT_DIGITS digits under the VM's digit rule."""
    digits = len(text) - text.startswith("-")
    if digits <= SAFE_DIGITS:
        return int(text)
    if digits > MAX_INT_DIGITS:
        return HugeInt(digits)
    with pinned():
        return int(text)


def _huge(v: Any) -> HugeInt | None:
    """The first HugeInt inside a params value, walked without recursion."""
    stack = [v]
    while stack:
        x = stack.pop()
        if type(x) is HugeInt:
            return x
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return None


def _dumps(body: Any) -> str:
    """JSON text under the VM's settings (vm/host.py): a contract's ints have up to 1,234
    digits, which json.dumps refuses under a host digit limit below that."""
    with pinned():
        return json.dumps(body, separators=(",", ":"))
