"""What the running execution has left: gas, call depth and memory, and which execution it is.

Three cells are shared by every instantiated contract function of the process (the
compiler's `_g`, `_d`, `_m`, see vm/compiler.py): compiled code decrements them inline,
the runtime's wrappers through `charge` and `allocate`.  `RT` is the execution running
now (vm.runtime.execute sets it; one runs at a time)."""
from __future__ import annotations

import types
from typing import Any

from vm import errors as E
from vm import gas as G
from vm.limits import MAX_CALL_DEPTH, MAX_INT_BITS, MAX_LEN, MAX_MEMORY


_GAS = types.CellType(0)
_DEPTH = types.CellType(0)
_MEM = types.CellType(0)
CELLS = {"_g": _GAS, "_d": _DEPTH, "_m": _MEM}
RT: Any = None  # the vm.runtime.Execution running now, or None


# ---- gas and memory ----------------------------------------------------------------------

def charge(amount: int) -> None:
    v = _GAS.cell_contents - amount
    _GAS.cell_contents = v
    if v < 0:
        raise E.OutOfGas("out of gas")


def allocate(nbytes: int) -> None:
    """Count memory a builtin is about to allocate, and charge gas for it."""
    v = _MEM.cell_contents - nbytes
    _MEM.cell_contents = v
    if v < 0:
        raise E.LimitExceeded(f"memory limit of {MAX_MEMORY // 2**20} MiB per transaction reached")
    charge(G.BUILTIN + (nbytes >> 10) * G.MEMORY_PER_KIB)


def hold(nbytes: int) -> None:
    """Count memory that stays live without charging gas: the caller's own charge
    covers the work (an element kept in a container, vm.sizes._kept)."""
    v = _MEM.cell_contents - nbytes
    _MEM.cell_contents = v
    if v < 0:
        _oom()


def _oog() -> None:
    raise E.OutOfGas("out of gas")


def _oom() -> None:
    raise E.LimitExceeded(f"memory limit of {MAX_MEMORY // 2**20} MiB per transaction reached")


def _deep() -> None:
    raise E.LimitExceeded(f"call depth over {MAX_CALL_DEPTH}")


def _toolong() -> None:
    raise E.LimitExceeded(f"a comprehension of more than {MAX_LEN} elements is over the limit")


def _bigint() -> None:
    raise E.LimitExceeded(f"integer over {MAX_INT_BITS} bits")


def _ck(v: int) -> int:
    """A plain-arithmetic int leaving its expression: bound its size, count its memory."""
    bits = v.bit_length()
    if bits > MAX_INT_BITS:
        _bigint()
    if bits > 512:
        allocate(bits >> 3)
    return v
