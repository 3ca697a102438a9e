"""Maps a metric is handed as an array: one check for every metric."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInput

__all__ = ["as_maps"]


def as_maps(value: Any, name: str = "explanation") -> np.ndarray:
    """Numeric maps (N, H, W) or (H, W) as (N, H, W), of their own dtype; else a one-line error."""
    from ..inputs import to_numpy

    arr = to_numpy(value, name=name)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.size == 0:
        raise InvalidInput(f"{name}: expected maps of shape (N, H, W) or (H, W), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise InvalidInput(f"{name}: expected numeric maps, got dtype {arr.dtype}")
    return arr
