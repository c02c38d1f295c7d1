"""Gas of ML calls (consensus constants; docs/mlcore.md section 8.6).

An ML call costs ML_CALL plus the work of the program that really runs on the BUCKETED shapes
(mlcore.programs.work counts the units from the program key alone): multiply-adds per matmul
lowering (a float64-carrier product is one multiply-add; the int8-digit lowering does na * nb
digit products per multiply-add and recombines na * nb int32 partial products), elementwise work,
softmax / log elements, parameter updates, layer launches, training steps and bytes moved.  Rates
are in milligas per unit, so cheap units (one int8 product) can cost a fraction of a gas; the
total is rounded up.

Calibrated with bench/bench_ml_gas.py on the project's machine (2 cores, AVX-512 with VNNI, JAX
0.10.2 on CPU) so that 1 gas is at most about 1.6 ns, the VM's worst rate (docs/benchmarks.md:
contract work runs at 0.38-1.61 ns per gas): a block's gas limit then bounds its time whatever it
holds.  Work that the model cannot see (cache-resident averages, the very fast int8 dot of long
contractions) is overcharged, which is safe.
"""
from __future__ import annotations

ML_CALL = 70_000              # one ML call: checks, packing, dispatch of the program, results back
# The first use on chain of a program id: its XLA compile.  Measured (bench/bench_ml_gas.py, first
# call minus a hot one, tracing included): predict / probabilities / evaluate / average 0.09-0.42 s,
# train 0.54-1.36 s, median 0.35 s over 34 programs.  Priced at the median, 1 ns per gas: a train
# compile at that rate (1.3e9) would not fit in a block (1e9), and a fee near it would leave room
# for only one new program per transaction (a contract's first train often meets its first
# evaluate).  A compile is paid once per program id on chain and happens once per node (the
# persistent cache keeps it), so the fee bounds how many new programs a block can force (3)
# rather than pricing a repeated cost; train compiles are undercharged up to 4.5x, the others
# overcharged up to 3x.
ML_COMPILE = 300_000_000

# milligas per unit (see mlcore.programs.work for what each unit counts)
F64_MAC = 50                  # a multiply-add through the float64 carrier (30-60 ps measured)
I8_MAC = 1                    # an int8 x int8 digit product (1-9 ps: VNNI)
PARTIAL = 2_500               # an int32 partial product of the digits lowering, recombined in int64
ELEMENT = 600                 # an element of a matmul operand converted / split / transposed, or of
                              # its result (bias, rescale, ReLU)
EXP = 4_000                   # a logit through softmax (integer exp, division), a row's loss (log)
PARAM = 5_000                 # a parameter of one SGD step: its gradient mean (an int64 division,
                              # ~4 ns), momentum and update; or the mean of an average
AVERAGE = 5_500               # a parameter of one averaged model (1-7 ns measured: memory-bound when large)
TRAIN = 60_000_000            # a train call, beside ML_CALL: params and velocity in and out, the scan
STEP = 500_000                # one fused training step (scan iteration, condition)
LAYER = 8_000_000             # a layer of a forward pass, or of one training step: its kernels
BYTE = 200                    # a byte copied into or out of a call
INIT = 12_000                 # a parameter drawn by init (SplitMix64 in numpy on the host)

RATES = {"f64_mac": F64_MAC, "i8_mac": I8_MAC, "partial": PARTIAL, "element": ELEMENT, "exp": EXP,
         "param": PARAM, "average": AVERAGE, "train": TRAIN, "step": STEP, "layer": LAYER, "byte": BYTE, "init": INIT}
