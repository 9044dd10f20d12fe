"""Wall-clock timing the way the course reports it: the median of a few repeats, after a warm-up.

Timings are noisy (other processes, CPU frequency, caches): compare them as ratios measured in
one run, and never check their digits.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch

from .validation import check_positive_int


def median_seconds(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls, under
    ``torch.no_grad()`` (inference is what the course times). CUDA work is waited for."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    repeats = check_positive_int(repeats, "repeats")
    warmup = check_positive_int(warmup, "warmup", allow_zero=True)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            fn()
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)
