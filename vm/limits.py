"""The VM's limits: part of consensus, identical on every node and every CPython.

Each bounds the worst case of something the gas schedule cannot price on its own
(DESIGN 3a): the host's stack, memory per transaction, and the time of C-level work on
one value.
"""
from __future__ import annotations

MAX_INT_BITS = 4096            # |n|.bit_length() of any int a contract keeps (about 1,233 digits)
MAX_INT_DIGITS = 1234          # decimal digits of the largest int: int <-> str conversions
MAX_LEN = 1_000_000            # elements of a list/tuple/dict, characters of a str, bytes of a bytes
MAX_VALUE_DEPTH = 32           # nesting of containers in one value
MAX_CALL_DEPTH = 64            # contract function calls in progress, across contracts
MAX_MEMORY = 64 * 1024 * 1024  # bytes a transaction's contract code may allocate (an estimate, never freed)
MAX_STORAGE_KEY_BYTES = 256    # encoded storage key
MAX_STORAGE_VALUE_BYTES = 128 * 1024  # encoded storage value
MAX_EVENT_BYTES = 16 * 1024    # encoded data of one event
MAX_EVENTS = 1024              # events of one transaction
MAX_OUTPUT_BYTES = 64 * 1024   # encoded return value of a transaction's call
MAX_ARGS_BYTES = 64 * 1024     # encoded arguments of a call
MAX_PRINT_BYTES = 16 * 1024    # print() output kept per transaction
MAX_SAME_HASH = 64             # dict keys whose hash an author can choose that share one hash
DECIMAL_PLACES = 18            # Decimal is a fixed-point number with 18 fractional digits
# Tensors and models (vm.tensors.Tensor / Model; the figures are mlcore.limits', checked equal by
# tests/test_vm_ml.py: vm cannot import mlcore, whose package imports jax)
MAX_TENSOR_ELEMENTS = 4_194_304  # elements of one tensor: 16 MiB of int32
MAX_TENSOR_RANK = 4              # dimensions of one tensor
MAX_MODEL_DIM = 16384            # features, hidden units, classes / outputs of a model
MAX_TOLIST = 65_536              # elements t.tolist() turns into a list
