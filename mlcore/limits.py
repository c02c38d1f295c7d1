"""Size limits of one ML call (consensus: a call over them is refused before anything runs).

Every limit is itself a bucket size (mlcore.programs.bucket), so a real size within the limit
pads to a bucketed size within the limit too.  They bound the memory of one call and the number
of distinct programs a transaction can ask for; time is bounded by gas.
"""
from __future__ import annotations

MAX_DIM = 16384                   # features, hidden units, classes / outputs of a model
MAX_ROWS = 65536                  # rows of x in one call (train, predict, evaluate, ...)
MAX_STEPS = 4096                  # training steps of one call (mini-batches x epochs)
MAX_MODELS = 256                  # models averaged in one call
MAX_TENSOR_ELEMENTS = 4_194_304   # elements of any one tensor (inputs, weights): 16 MiB of int32
# elements of the largest array inside a program: rows of one pass (a batch, or all rows of
# predict / evaluate) x the widest padded layer, and for average models x padded parameters.
# Gas bounds time, not memory: without it a wide hidden layer over many rows could take GBs.
MAX_PROGRAM_ELEMENTS = 33_554_432
