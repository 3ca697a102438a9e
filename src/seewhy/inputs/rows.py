"""A batch with one row per thing to explain: per detection, per prompt, per answer token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .batches import Batch

__all__ = ["batch_rows"]


def batch_rows(batch: Batch, picks: Sequence[int]) -> Batch:
    """``batch`` with its items at ``picks``, in that order (an item once per row it gets).

    Every field follows, so a batch whose photos were sized their own way
    (``fed``) keeps saying how.
    """
    at = np.asarray(picks, np.int64)
    indices = batch.indices or tuple(range(len(batch)))
    return replace(
        batch,
        inputs=batch.inputs[at],
        images=batch.images[at],
        sources=tuple(batch.sources[i] for i in picks),
        indices=tuple(indices[i] for i in picks),
        photos=tuple(batch.photos[i] for i in picks) if batch.photos else (),
    )
