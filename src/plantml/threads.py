"""Thread limits for tests and benchmarks, so a busy machine slows them down in proportion.

Left alone, OpenMP (torch, MKL, OpenBLAS) starts one thread per core and keeps
idle threads spinning; on a shared machine that makes a small LSTM run tens of
times slower whenever another process is busy. ``limit_threads(n)`` sets the
environment the libraries read when they load (and that every child process
inherits) and, if torch is already imported, its intra-op thread count too.

Torch-free (the edge side may call it).
"""

from __future__ import annotations

import os
import sys

from plantml.errors import ConfigError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Use at most ``threads`` compute threads here and in every process started from here.

    Sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` to
    ``threads`` and ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead
    of spinning). Call it before numpy or torch is imported for the limits to
    reach them here; torch's own count is also set when torch is already loaded.
    """
    threads = int(threads)
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}; use 1 or more")
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
