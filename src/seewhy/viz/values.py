"""Maps as arrays for drawing: shape checks, resizing, and the alpha check."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .._kit.checks import bad_argument
from ..errors import InvalidInput
from ..inputs import to_numpy

__all__ = ["as_map", "check_alpha", "resize_map"]


def as_map(map_: object, name: str = "map_", dtype: type = np.float32) -> np.ndarray:
    """A 2-D float map; (H, W, 1) and (1, H, W) are squeezed, NaN stays NaN.

    float32 is plenty for 256 colour levels and halves the work of drawing;
    signed maps of any magnitude ask for float64 before they are scaled.
    """
    arr = to_numpy(map_, name=name)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:2])
    if arr.ndim != 2:
        raise InvalidInput(f"{name}: expected a 2-D map of shape (H, W), got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidInput(f"{name}: map is empty (shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise InvalidInput(f"{name}: expected a real-valued map, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):  # huge values become inf, which the callers clip
        return arr.astype(dtype, copy=False)


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (H, W); NaN is treated as 0 first."""
    if values.shape == size:
        return values
    clean = np.nan_to_num(values, nan=0.0).astype(np.float32)
    im = Image.fromarray(clean)  # mode "F"
    resized = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def check_alpha(alpha: object) -> float:
    """The picture's weight in an overlay, a number in [0, 1]."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)):
        raise bad_argument("alpha", "a number in [0, 1]", alpha)
    value = float(alpha)
    if not 0.0 <= value <= 1.0:
        raise bad_argument("alpha", "a number in [0, 1]", value)
    return value
