"""Benchmarks: accuracy (held-out, real tracks, the example layouts), throughput, outbox drain."""

import os

# as `gateway` does for the daemon and replay: one BLAS thread (the matrices are small), set
# before numpy is first imported, so in-process figures are what the gateway runs
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
