"""The closed tree of contract failures: one class per rule, each with a stable code.

A failure ends the transaction's contract execution: every state change of the call is
rolled back, gas is still charged, and the receipt carries `code`, `message` and where
it happened (contract, function, source line).  Messages are the VM's own words, never
a host exception's text (CPython's wording changes between 3.11, 3.12 and 3.13), so
receipts are identical on every node.

`VMInternalError` is different: it means a bug in the VM, never the contract's fault.
"""
from __future__ import annotations


class VMError(Exception):
    """A contract failed. `code` is machine-readable and stable; `message` is for people."""

    code = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
        self.contract: bytes | None = None  # filled in by the runtime where known
        self.function: str = ""
        self.line: int = 0

    def __str__(self) -> str:
        where = f" (in {self.function}, line {self.line})" if self.function and self.line else ""
        return f"{self.code}: {self.message}{where}"


class Revert(VMError):
    """`require(condition, message)` failed."""

    code = "revert"


class OutOfGas(VMError):
    code = "out_of_gas"


class LimitExceeded(VMError):
    """A VM limit: call depth, int size, value size, memory, storage value size, ..."""

    code = "limit_exceeded"


class ContractRuntimeError(VMError):
    """An operation the values do not allow: wrong types, missing key, index out of
    range, division by zero, a method the value's type lacks."""

    code = "runtime_error"


class InvalidValue(VMError):
    """A value that cannot be stored, sent in an event, passed between contracts or
    returned (only int, bool, str, bytes, None, list, tuple, dict, Decimal can)."""

    code = "invalid_value"


class NotFound(VMError):
    """No contract at the address, or no exported function of that name."""

    code = "not_found"


class InvalidArguments(VMError):
    """The arguments do not match the function's parameters."""

    code = "invalid_arguments"


class Reentrancy(VMError):
    """A call into a contract that is already running: refused, whatever the path
    (A -> B -> A, or A calling itself through call())."""

    code = "reentrancy"


class InvalidContract(VMError):
    """Deployed source that the validator refuses.  The message is fixed, because it goes
    into a receipt and CPython's parser words syntax errors differently from release to
    release; `issues` (every problem, with line and column) is for people: RPC, CLI, SDK."""

    code = "invalid_contract"
    MESSAGE = "the source is not a valid contract (simulating the deploy lists each problem)"

    def __init__(self, issues: list[str]):
        super().__init__(self.MESSAGE)
        self.issues = issues


class VMInternalError(Exception):
    """A bug in the VM (not a VMError: never the contract's fault)."""
