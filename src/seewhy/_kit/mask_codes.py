"""A region's mask in two compact forms: the map cells a resize reads, and run lengths.

A :class:`seewhy.targets.Region` keeps its mask as run lengths in its JSON
form (a 224 x 224 mask is a few hundred numbers, not 50,000) and reads a
layer's map through the cells a nearest-neighbour resize would take.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["from_run_lengths", "nearest_cells", "run_lengths"]


def nearest_cells(shape: tuple[int, ...], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a (h, w) map that a nearest-neighbour resize to ``size`` reads."""
    h, w = shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return rows, cols


def run_lengths(mask: np.ndarray) -> list[int]:
    """Run-length code of the flattened mask: lengths alternating False, True, False..."""
    flat = mask.reshape(-1).astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    lengths = np.diff(bounds).tolist()
    return [0, *lengths] if flat[0] else lengths


def from_run_lengths(shape: Sequence[int], runs: Sequence[int]) -> np.ndarray:
    """The mask that :func:`run_lengths` encoded, back at ``shape``."""
    values = np.repeat(np.arange(len(runs)) % 2 == 1, np.asarray(runs, dtype=np.int64))
    return values.reshape(tuple(shape))
