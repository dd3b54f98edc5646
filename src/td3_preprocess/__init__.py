"""The preprocessing node: a vehicle's camera → the 84x84 mono8 frames the learner needs.

One BLAS thread, set before numpy loads: the area resampling is a small matrix product per
frame, and OpenBLAS's extra threads spin after each one (measured: a 160x120 camera cost the
node 19 ms of CPU per frame with its default pool, against 1.5 ms of work), CPU the simulator
next to it needs. An OPENBLAS_NUM_THREADS of the environment still wins.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
