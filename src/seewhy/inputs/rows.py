"""A batch with one row per thing to explain: per detection, per prompt, per answer token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np

from .._kit.warn import warn_user
from ..errors import InvalidInput
from .batches import Batch

__all__ = ["batch_rows", "rows_of"]

_T = TypeVar("_T")


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


def rows_of(
    batch: Any, found: Sequence[Sequence[_T]], *, what: str, how: str
) -> tuple[Any, tuple[_T, ...]]:
    """The batch with one row per target in ``found`` (one list per picture), and the targets.

    A picture with none gets no row (one warning names them, ``what`` in them);
    none at all is a one-line error saying how to choose a target (``how``).
    """
    rows = [i for i, targets in enumerate(found) for _ in targets]
    picked = tuple(t for targets in found for t in targets)
    empty = [batch.sources[i] for i in range(len(batch)) if not found[i]]
    if not rows:
        raise InvalidInput(f"target: {what} in {', '.join(empty[:3])}; {how}")
    if empty:
        warn_user(f"{what} in {', '.join(empty[:10])}; those images are not explained")
    return batch_rows(batch, rows), picked
