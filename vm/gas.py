"""The gas schedule: what each thing a contract does costs.  Part of consensus.

Gas is a function of the contract's code and of the values it handles, never of time:
- static costs come from the AST (not bytecode, which changes between CPython minor
  versions): every expression and statement node costs NODE, charged once per basic
  block before the block runs (vm/compiler.py);
- a loop iteration costs ITERATION plus its body; a contract function call costs CALL;
- operations whose work grows with their operands are charged by size BEFORE they run
  (vm/ops.py, vm/builtins.py, vm/world.py): big-int arithmetic by machine words, sequences by elements or bytes,
  storage and events by encoded bytes.
The figures were set from the nanoseconds per gas that bench/bench_vm_gas.py measures
for each kind of work against a block of transfers: no kind may take more than 1.5x a
transfer's time per unit (about 1 ns here), so the block gas limit bounds a block's time
whatever it holds (docs/benchmarks.md has the table).
"""
from __future__ import annotations

NODE = 50                # an AST node of a statement or expression
ITERATION = 100          # one iteration of a for/while loop or a comprehension
CALL = 300               # entering a contract function (its frame and arguments)
BUILTIN = 800            # entering any builtin, method or injected function
PER_ELEMENT = 10         # each element a builtin copies, compares or searches in C
WALK_PER_ELEMENT = 120   # each element of a value the VM walks in Python (sizes, repr)
PER_32_BYTES = 48        # each 32 bytes a builtin reads or writes (str, bytes)
PER_WORD_PRODUCT = 8     # big-int multiply and divide: per product of 64-bit words
DECIMAL = 2_000          # Decimal arithmetic or parsing (vm/decimals.py runs it in Python)
CONVERT = 1_500          # an exact int <-> decimal text conversion (vm/intstr.py, in Python)
RESULT = 150             # each value a literal or comprehension keeps (counted, its memory checked)
KEY = 400                # each key checked in Python as a dict is built (vm.sizes._key)
MEMORY_PER_KIB = 200     # each KiB of memory a builtin allocates (also counted against MAX_MEMORY)

STORAGE_READ = 2_000     # storage[key] / storage.get / key in storage
STORAGE_WRITE = 5_000    # storage[key] = value
STORAGE_DELETE = 2_000   # del storage[key]
STORAGE_PER_BYTE = 20    # each encoded byte of key and value read or written
EVENT = 2_000            # emit(...)
EVENT_PER_BYTE = 10
CONTRACT_CALL = 24_000   # call(contract, function, ...), plus its arguments and result
VALUE_PER_BYTE = 10      # arguments and results copied between contracts, per encoded byte
TRANSFER = 9_000         # transfer(to, amount)
PRINT = 4_000            # print(): the text and the receipt's log line
PRINT_PER_BYTE = 10      # print() output

# Intrinsic gas of transactions (beside ledger.tx.INTRINSIC_GAS for transfers).
CALL_TX = 21_000
DEPLOY_TX = 53_000
TX_DATA_PER_BYTE = 16    # each byte of a call's arguments or a deployed contract's payload
TX_ARG_PER_UNIT = 1_000  # each element of the arguments (vm.codec.measure): decoding a nested
                         # argument takes up to about 1.3 us an element
DEPLOY_PER_SOURCE_BYTE = 200  # storing code is storing state: priced like it


def words(n: int) -> int:
    """64-bit machine words of an int's magnitude (at least 1)."""
    return (abs(n).bit_length() >> 6) + 1
