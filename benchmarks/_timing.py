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
    """One candidate's median seconds per call and median minor page faults per call.

    ``rounds`` keeps every round's seconds, in order, so a script can compare
    candidates round by round (a ratio per round and its spread); ``cpu`` the
    same rounds' CPU seconds of this process (all its threads), which other
    processes on a shared machine disturb far less than the wall clock.
    """

    seconds: float
    faults: int
    rounds: tuple[float, ...] = ()
    cpu: tuple[float, ...] = ()


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
    cpu: dict[str, list[float]] = {label: [] for label in fns}
    faults: dict[str, list[int]] = {label: [] for label in fns}
    for _ in range(repeats):
        for label, fn in fns.items():
            if settle:
                fn()
            before, start, used = _faults(), time.perf_counter(), time.process_time()
            fn()
            seconds[label].append(time.perf_counter() - start)
            cpu[label].append(time.process_time() - used)
            faults[label].append(_faults() - before)
    return {
        label: Timing(
            statistics.median(seconds[label]),
            int(statistics.median(faults[label])),
            tuple(seconds[label]),
            tuple(cpu[label]),
        )
        for label in fns
    }


def medians(
    fns: dict[str, Callable[[], Any]], repeats: int, *, settle: bool = False
) -> dict[str, float]:
    """:func:`timed_all`, the median seconds only."""
    return {label: t.seconds for label, t in timed_all(fns, repeats, settle=settle).items()}


def ratio(top: Timing, bottom: Timing, *, cpu: bool = False) -> str:
    """``top / bottom`` round by round: the median and the quartiles, as text.

    A round's two calls ran seconds apart, so their ratio is steadier under a
    machine's load swings than the ratio of the two medians. ``cpu``: of the
    CPU seconds instead of the wall clock's.
    """
    tops, bottoms = (top.cpu, bottom.cpu) if cpu else (top.rounds, bottom.rounds)
    per_round = sorted(a / b for a, b in zip(tops, bottoms, strict=True))
    if len(per_round) < 2:
        return f"{per_round[0]:.3f}x" if per_round else "n/a"
    low, _, high = statistics.quantiles(per_round, n=4)
    middle = statistics.median(per_round)
    return f"{middle:.3f}x (quartiles {low:.3f}-{high:.3f}, {len(per_round)} rounds)"
