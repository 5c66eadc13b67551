"""What the benches share for timing a call: the fastest of several runs."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], repeats: int, *, warmup: bool = False) -> float:
    """The fastest of ``repeats`` timed calls of ``fn``, in seconds; ``warmup`` makes one
    untimed call first (kernels, allocator, caches)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
