"""The shelfgate daemon and command line: config, pipeline wiring, outbox, MQTT, offers."""

import os

# The pipeline's matrices are small (a few hundred floor points x receivers): BLAS threads only
# spin and take CPU from the radio and serial threads. Set before numpy is first imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

__version__ = "0.1.0"
