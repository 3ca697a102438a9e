"""The numba loops behind :mod:`.compiled` (imported only when numba is installed and used).

Module-level functions, so numba can cache their machine code on disk.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(inline="always")
def distance2(image: np.ndarray, r: int, c: int, r2: int, c2: int) -> float:
    """Squared distance of two pixels in (colour, row, column) space."""
    d = 0.0
    for q in range(image.shape[2]):
        t = image[r, c, q] - image[r2, c2, q]
        d += t * t
    return d + (r - r2) * (r - r2) + (c - c2) * (c - c2)


@njit(cache=True, parallel=True)
def density(image: np.ndarray, kernel_size: float, chunks: int) -> np.ndarray:
    h, w = image.shape[:2]
    width = math.ceil(3 * kernel_size)
    scale = -0.5 / (kernel_size * kernel_size)
    partial = np.zeros((chunks, h, w))
    rows = (h + chunks - 1) // chunks
    for k in prange(chunks):
        acc = partial[k]
        for r in range(k * rows, min(h, (k + 1) * rows)):
            for c in range(w):
                acc[r, c] += 1.0  # the pixel itself
                for r2 in range(r, min(r + width + 1, h)):  # the later half of the window
                    first = c + 1 if r2 == r else max(c - width, 0)
                    for c2 in range(first, min(c + width + 1, w)):
                        e = math.exp(distance2(image, r, c, r2, c2) * scale)
                        acc[r, c] += e
                        acc[r2, c2] += e
    return partial.sum(axis=0)


@njit(cache=True, parallel=True)
def parents(
    image: np.ndarray, density: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    parent = np.empty(h * w, np.int64)
    distance = np.empty(h * w)
    for r in prange(h):
        for c in range(w):
            here = density[r, c]
            best = r * w + c
            closest = np.inf
            for k in range(offsets.shape[0]):
                if offsets[k, 2] > closest:
                    break  # every later offset is at least this far away
                r2 = r + offsets[k, 0]
                c2 = c + offsets[k, 1]
                if r2 < 0 or r2 >= h or c2 < 0 or c2 >= w or density[r2, c2] <= here:
                    continue
                d = distance2(image, r, c, r2, c2)
                index = r2 * w + c2
                if d < closest or (d == closest and index < best):
                    closest = d
                    best = index
            parent[r * w + c] = best
            distance[r * w + c] = math.sqrt(closest)
    return parent, distance


@njit(cache=True, parallel=True)
def compose(
    on: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    run_labels: np.ndarray,
    x: np.ndarray,
    fill: np.ndarray,
    out: np.ndarray,
) -> None:
    channels = x.shape[-1]
    source = x.reshape(-1)
    background = fill.reshape(-1)
    for i in prange(on.shape[0]):
        dst = out[i].reshape(-1)
        for k in range(starts.shape[0]):
            a = starts[k] * channels
            b = stops[k] * channels
            if on[i, run_labels[k]]:
                dst[a:b] = source[a:b]
            else:
                dst[a:b] = background[a:b]
