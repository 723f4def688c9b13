"""A slow borehole with a 32-value output for benchmarks/campaign_resume.py.

Each call sleeps ``CHORAL_BENCH_SLEEP`` seconds and appends its input to ``CHORAL_BENCH_LOG``, so
the benchmark can tell which runs were evaluated again after a kill.
"""

import json
import os
import time

import numpy as np

from choral.simulators import SIMULATORS


def slow_borehole(X: np.ndarray) -> np.ndarray:
    """X (1, 8) -> Y (1, 32): borehole times a fixed profile (32 > INLINE_MAX: a file output)."""
    with open(os.environ["CHORAL_BENCH_LOG"], "a") as fh:
        fh.write(json.dumps(X[0].tolist()) + "\n")
    time.sleep(float(os.environ.get("CHORAL_BENCH_SLEEP", "0.2")))
    return SIMULATORS["borehole"](X) * np.linspace(0.5, 1.5, 32)
