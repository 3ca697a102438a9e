"""Compiled inner loops (numba) for superpixels: quickshift and LIME masking.

numba is optional (``seewhy[fast]``). The loops live in :mod:`._numba_loops`,
imported on first use (so ``import seewhy`` never imports numba); numba caches their machine code on
disk, so only the first use after an install compiles (a few seconds). Callers check
:func:`available` and keep a plain numpy or scikit-image path beside it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator

import numpy as np

__all__ = ["available", "compose", "quickshift_density", "quickshift_parents", "threads"]


def available() -> bool:
    """Whether the compiled kernels can run (numba is installed)."""
    return importlib.util.find_spec("numba") is not None


@contextlib.contextmanager
def _keeping_torch_threads() -> Iterator[None]:
    """PyTorch's thread count as it was: numba's OpenMP layer, started on first use, sets
    the OpenMP count PyTorch shares to every core (1 thread became 2, and each small op of
    a loaded 2-core machine's next passes then waited ~15 ms for the second thread)."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if torch is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)


def threads() -> int:
    """numba's thread count (``NUMBA_NUM_THREADS``; the number of cores by default)."""
    import numba

    with _keeping_torch_threads():
        return int(numba.get_num_threads())


def quickshift_density(image: np.ndarray, kernel_size: float, chunks: int) -> np.ndarray:
    """Parzen density (H, W) of (H, W, C) float64 features, quickshift's Gaussian window.

    Each pair of pixels in the square window of half-width ceil(3 kernel_size)
    is visited once and its term added to both; rows are split into
    ``chunks`` parts that run in parallel, each into its own buffer.
    """
    from . import _numba_loops

    with _keeping_torch_threads():
        return np.asarray(_numba_loops.density(image, kernel_size, chunks))


def quickshift_parents(
    image: np.ndarray, density: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's link to the nearest denser pixel in the window, and its length.

    ``offsets`` (K, 3) rows (dr, dc, dr^2 + dc^2), nearest first: the scan
    stops once the spatial distance alone exceeds the best link, and a tie
    goes to the pixel first in raster order (what a raster scan keeps).
    """
    from . import _numba_loops

    with _keeping_torch_threads():
        parent, distance = _numba_loops.parents(image, density, offsets)
    return np.asarray(parent), np.asarray(distance)


def compose(
    on: np.ndarray,
    runs: tuple[np.ndarray, np.ndarray, np.ndarray],
    x: np.ndarray,
    fill: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[i, p] = x[p] if on[i, labels[p]] else fill[p]``, images in parallel.

    ``runs`` are (starts, stops, labels) of the runs of equal label in raster
    order (``superpixels.label_runs``): whole runs are copied instead of
    deciding pixel by pixel, half the time.
    """
    from . import _numba_loops

    starts, stops, run_labels = runs
    with _keeping_torch_threads():
        _numba_loops.compose(on, starts, stops, run_labels, x, fill, out)
