"""Arrays and tensors as numpy pictures: coercion, layouts, value ranges, channels.

Tensors are read by duck typing (``detach``/``cpu``/``numpy``/``__array__``)
so that no framework is imported here; every rule about what a pixel value
means (bit depth, [0, 1] versus [0, 255], alpha, grey) lives in this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..errors import InvalidInput, SeewhyError

__all__ = [
    "UNIT_TOLERANCE",
    "array_to_rgb",
    "batch_to_nhwc",
    "check_finite",
    "is_array_like",
    "to_numpy",
    "wrong_channels",
]

#: Float pictures may stray this far outside [0, 1] (resampling overshoot).
UNIT_TOLERANCE = 1e-3
# ... and this far outside [0, 255].
_BYTE_TOLERANCE = 0.5


def is_array_like(obj: object) -> bool:
    """True for numpy arrays and tensors of any framework (duck typed)."""
    return isinstance(obj, np.ndarray) or any(
        hasattr(obj, attr) for attr in ("__array__", "numpy", "detach")
    )


def to_numpy(obj: object, *, name: str = "input") -> np.ndarray:
    """Read a numpy array out of an array or a framework tensor without importing it.

    Torch tensors go through ``detach().cpu()`` first so that tensors that need
    grad or live on a GPU work; dtypes numpy lacks (bfloat16) are widened.

    Parameters
    ----------
    obj : object
        A numpy array, a PIL image, or a torch, TensorFlow or JAX tensor.
    name : str
        What the value is called in an error.
    """
    if isinstance(obj, np.ndarray):
        return obj
    if isinstance(obj, Image.Image):
        return np.asarray(obj)
    try:
        x: Any = obj
        if hasattr(x, "detach"):
            x = x.detach()
            if hasattr(x, "cpu"):
                x = x.cpu()
        if hasattr(x, "numpy"):
            try:
                return np.asarray(x.numpy())
            except TypeError:
                if hasattr(x, "float"):  # torch bfloat16 and friends
                    return np.asarray(x.float().numpy())
                raise
        return np.asarray(x)
    except SeewhyError:
        raise
    except Exception as exc:
        raise InvalidInput(
            f"{name}: expected an image, array or tensor, could not read "
            f"{type(obj).__name__} as an array ({type(exc).__name__}: {exc})"
        ) from exc


def check_finite(arr: np.ndarray, name: str) -> None:
    """Refuse float pixels that are NaN or infinite, counting each kind."""
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise InvalidInput(
            f"{name}: expected finite pixel values, found {n_nan} NaN and {n_inf} infinite"
        )


def _channels_last(arr: np.ndarray, name: str) -> np.ndarray:
    """Picture array as (H, W, C); a clearly channels-first (C, H, W) one is transposed."""
    if arr.ndim == 2:
        return arr[:, :, None]
    if arr.ndim != 3:
        raise InvalidInput(
            f"{name}: expected an image array of shape (H, W), (H, W, C) or (C, H, W), "
            f"got shape {arr.shape}"
        )
    if arr.shape[-1] not in (1, 2, 3, 4) and arr.shape[0] in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.shape[-1] not in (1, 2, 3, 4):
        raise InvalidInput(
            f"{name}: expected 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels, "
            f"got shape {arr.shape}"
        )
    return arr


#: Pixels converted at a time: float64 work arrays stay a few MiB whatever the picture.
_BLOCK_PIXELS = 1 << 18


#: How values map to [0, 255]: clipped to (lowest, highest), times a multiplier, over a divisor.
_Scale = tuple[float, float, float, float]


def _byte_scale(arr: np.ndarray, name: str) -> _Scale:
    """How ``arr``'s values map to [0, 255], bit depth respected.

    Read from the whole array (its range) but without converting it, so a
    large grey or 16-bit picture is never held in float64 at once.
    """
    if arr.dtype == np.uint8:
        return 0.0, 255.0, 1.0, 1.0
    if arr.dtype == np.bool_:
        return 0.0, 1.0, 255.0, 1.0
    if np.issubdtype(arr.dtype, np.floating):
        check_finite(arr, name)
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= -UNIT_TOLERANCE and hi <= 1.0 + UNIT_TOLERANCE:
            return 0.0, 1.0, 255.0, 1.0
        if lo >= -_BYTE_TOLERANCE and hi <= 255.0 + _BYTE_TOLERANCE:
            return 0.0, 255.0, 1.0, 1.0
        raise InvalidInput(
            f"{name}: expected float pixel values in [0, 1] or [0, 255], got [{lo:.4g}, "
            f"{hi:.4g}] (normalised model inputs must be a 4-D batch, or 3-D channels-first "
            f"with channels_first=True)"
        )
    if np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == np.uint16:
            return 0.0, 65535.0, 1.0, 257.0
        lo_i, hi_i = int(arr.min()), int(arr.max())
        if lo_i >= 0 and hi_i <= 255:
            return 0.0, 255.0, 1.0, 1.0
        if lo_i >= 0 and hi_i <= 65535:
            return 0.0, 65535.0, 1.0, 257.0
        raise InvalidInput(
            f"{name}: expected integer pixel values in [0, 255] or [0, 65535], got [{lo_i}, {hi_i}]"
        )
    raise InvalidInput(f"{name}: expected a numeric image array, got dtype {arr.dtype}")


def _composite_on_white(values: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend colour values (0..255) over white using alpha (0..255)."""
    a = alpha / 255.0
    return values * a + 255.0 * (1.0 - a)


def _rgb_block(block: np.ndarray, scale: _Scale) -> np.ndarray:
    """A few rows of a (h, W, C) picture -> RGB uint8 (h, W, 3), through float64 only here."""
    lo, hi, multiplier, divisor = scale
    vals = np.clip(block.astype(np.float64), lo, hi)
    if multiplier != 1.0:
        vals *= multiplier
    if divisor != 1.0:
        vals /= divisor
    channels = vals.shape[-1]
    if channels == 1:
        rgb = np.repeat(vals, 3, axis=-1)
    elif channels == 2:
        rgb = np.repeat(_composite_on_white(vals[..., :1], vals[..., 1:]), 3, axis=-1)
    elif channels == 3:
        rgb = vals
    else:
        rgb = _composite_on_white(vals[..., :3], vals[..., 3:])
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    """Picture array of any supported dtype/layout -> RGB uint8 (H, W, 3).

    uint8 grey and RGB are copied as they are; every other kind is converted a
    block of rows at a time, so the float work arrays stay small.
    """
    arr = _channels_last(arr, name)
    height, width, channels = arr.shape
    if height == 0 or width == 0:
        raise InvalidInput(f"{name}: image is empty (shape {arr.shape})")
    if arr.dtype == np.uint8 and channels in (1, 3):
        return np.ascontiguousarray(np.broadcast_to(arr, (height, width, 3)))
    scale = _byte_scale(arr, name)
    out = np.empty((height, width, 3), dtype=np.uint8)
    rows = max(1, _BLOCK_PIXELS // width)
    for top in range(0, height, rows):
        out[top : top + rows] = _rgb_block(arr[top : top + rows], scale)
    return out


def batch_to_nhwc(arr: np.ndarray, channels_first: bool, name: str) -> np.ndarray:
    """Preprocessed 4-D float batch -> NHWC, following the layout the shape implies.

    A shape that can only be one layout wins over ``channels_first``; an
    ambiguous one (or one matching neither) follows the flag.
    """
    c1, c_last = arr.shape[1] in (1, 3), arr.shape[-1] in (1, 3)
    first = channels_first
    if c1 and not c_last:
        first = True
    elif c_last and not c1:
        first = False
    if not (c1 if first else c_last):
        raise wrong_channels(name, tuple(arr.shape), first)
    return np.moveaxis(arr, 1, -1) if first else arr


def wrong_channels(name: str, shape: tuple[int, ...], first: bool) -> InvalidInput:
    """The one line for a model input whose channel count seewhy does not feed, in the
    shape the user gave (not seewhy's NHWC), with the way out."""
    channels = shape[-3] if first else shape[-1]
    layout = "channels-first" if first else "channels-last"
    keep = "x[:, :3]" if first and len(shape) == 4 else "x[:3]" if first else "x[..., :3]"
    return InvalidInput(
        f"{name}: a preprocessed input of shape {shape} has {channels} channels (read "
        f"{layout}); seewhy feeds 1 (grey) or 3 (RGB) channels: keep three (e.g. {keep}) "
        "or pass the picture itself; other channel counts are not supported yet"
    )
