"""The process-wide settings of the host, pinned while the VM decides anything.

A verdict (valid contract or not, a receipt, gas) must be the same on every validator,
however its Python was started.  Three process-wide settings can reach one:
- the int <-> str digit limit (PYTHONINTMAXSTRDIGITS, -X int_max_str_digits): CPython's
  parser applies it to decimal literals, and str() / f-strings to ints.  The VM has its
  own rule (MAX_INT_BITS, checked by vm/validate.py and the runtime), so while it runs the
  host limit is lifted: every int the VM lets exist has at most MAX_INT_DIGITS digits;
- the recursion limit (sys.setrecursionlimit, often set by a wrapper): it would decide
  whether a deeply nested contract parses or a deep call chain overflows.  While the VM
  runs it is exactly STACK_FRAMES frames above the caller, so the VM's own limits
  (MAX_AST_DEPTH, MAX_CALL_DEPTH, MAX_VALUE_DEPTH) are always the ones that bite;
- the warnings filters (-W error, -X dev, PYTHONWARNINGS): they would turn a
  SyntaxWarning of compiling a contract, or a DeprecationWarning of an operation, into an
  exception.  While the VM runs every warning is ignored.
The other host settings are fixed by the call sites: compile() gets `optimize=0,
dont_inherit=True` (never -O / -OO or the caller's future flags), text files are read
as UTF-8 (never the locale's encoding), and nothing of the VM consults the locale or
hash order.

Why pin rather than avoid: CPython's own parser reads the digit limit and the recursion
limit, so no wrapper around ast.parse / compile can be independent of them otherwise.
Pinned settings are restored on the way out, so the host's own code keeps its own.  The
pin is a process-wide change, hence the lock: the VM is run from one thread at a time
(vm.runtime's lock), and a thread of the host that parses ints meanwhile sees no limit.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import warnings
from typing import Iterator

# Python frames the VM may use above its caller: the validator's and compiler's walks of
# a MAX_AST_DEPTH-deep tree, MAX_CALL_DEPTH contract frames with their wrappers, and
# value walks of MAX_VALUE_DEPTH, with a wide margin (CPython 3.11 lets its parser and
# compiler recurse three C levels per frame of this limit: all far below the C stack).
STACK_FRAMES = 4000

_LOCK = threading.RLock()
_nesting = 0  # pinned() bodies in progress (in the thread that holds _LOCK)


def _stack_depth() -> int:
    """Python frames below the caller: the recursion depth CPython counts against the limit."""
    depth, frame = 0, sys._getframe(1)
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


@contextlib.contextmanager
def pinned() -> Iterator[None]:
    """Run the body with the VM's settings instead of the host's (see the module doc).
    Nested uses (execute -> deploy -> compile -> validate) keep the outer pin."""
    global _nesting
    with _LOCK:
        if _nesting:
            _nesting += 1
            try:
                yield
            finally:
                _nesting -= 1
            return
        # The filters list is swapped, not edited (catch_warnings costs 15 us): CPython reads
        # warnings.filters at each warning, and "ignore" neither reads nor writes the
        # per-module registries, so nothing needs invalidating on the way in or out.
        filters, digits, recursion = warnings.filters, sys.get_int_max_str_digits(), sys.getrecursionlimit()
        warnings.filters = [("ignore", None, Warning, None, 0)]
        sys.set_int_max_str_digits(0)
        sys.setrecursionlimit(_stack_depth() + STACK_FRAMES)
        _nesting = 1
        try:
            yield
        finally:
            _nesting = 0
            sys.setrecursionlimit(recursion)
            sys.set_int_max_str_digits(digits)
            warnings.filters = filters
