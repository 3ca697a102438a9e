"""Side-by-side timing for the benchmark scripts: interleaved rounds, medians, page faults.

Imported by the scripts in this folder (run as ``python benchmarks/bench_x.py``,
which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """One candidate's median seconds per call and median minor page faults per call."""

    seconds: float
    faults: int


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed_all(
    fns: dict[str, Callable[[], Any]], repeats: int, *, settle: bool = False
) -> dict[str, Timing]:
    """Each candidate timed in turn every round; the median of the rounds.

    Interleaving spreads the machine's load swings over all candidates alike.
    With ``settle`` each timed call comes right after an untimed one of the
    same candidate, so one candidate's freed memory (a full backward frees
    hundreds of MB) does not make the next one fault in fresh pages; without
    it there is one warm-up call each. The page faults are printed beside the
    times because the C allocator's state, not the code, is often what makes
    two runs of the same script differ (a plain ViT-S forward measured 5,000
    faults in one process and 56,000 in another).
    """
    if not settle:
        for fn in fns.values():
            fn()  # warm-up
    seconds: dict[str, list[float]] = {label: [] for label in fns}
    faults: dict[str, list[int]] = {label: [] for label in fns}
    for _ in range(repeats):
        for label, fn in fns.items():
            if settle:
                fn()
            before, start = _faults(), time.perf_counter()
            fn()
            seconds[label].append(time.perf_counter() - start)
            faults[label].append(_faults() - before)
    return {
        label: Timing(statistics.median(seconds[label]), int(statistics.median(faults[label])))
        for label in fns
    }


def medians(
    fns: dict[str, Callable[[], Any]], repeats: int, *, settle: bool = False
) -> dict[str, float]:
    """:func:`timed_all`, the median seconds only."""
    return {label: t.seconds for label, t in timed_all(fns, repeats, settle=settle).items()}
