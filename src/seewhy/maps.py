"""Map post-processing shared by every method: upsampling and normalisation.

Written in numpy so that every backend's maps go through the very same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ._kit.warn import warn_user
from .errors import ConstantMapWarning

__all__ = ["bilinear_matrix", "normalise", "postprocess", "upsample", "warn_constant_maps"]


@lru_cache(maxsize=64)
def bilinear_matrix(out_len: int, in_len: int) -> np.ndarray:
    """(out_len, in_len) weights of 1-D linear interpolation, half-pixel centres.

    Matches ``cv2.resize`` / ``torch`` ``align_corners=False`` sampling, so a
    separable resize is two small matrix products.

    Parameters
    ----------
    out_len : int
        Samples out.
    in_len : int
        Samples in.
    """
    m = np.zeros((out_len, in_len), dtype=np.float32)
    if in_len == 1:
        m[:, 0] = 1.0
        return m
    src = (np.arange(out_len, dtype=np.float64) + 0.5) * (in_len / out_len) - 0.5
    src = np.clip(src, 0.0, in_len - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, in_len - 1)
    frac = (src - lo).astype(np.float32)
    rows = np.arange(out_len)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize (N, h, w) maps to (N, H, W).

    Parameters
    ----------
    maps : numpy.ndarray
        (N, h, w) maps.
    size : (int, int)
        (H, W) to resize to.
    """
    _, h, w = maps.shape
    height, width = size
    if (h, w) == (height, width):
        return maps.astype(np.float32, copy=False)
    rows = bilinear_matrix(height, h)
    cols = bilinear_matrix(width, w)
    out = np.matmul(np.matmul(rows, maps.astype(np.float32, copy=False)), cols.T)
    return np.ascontiguousarray(out, dtype=np.float32)


def normalise(maps: np.ndarray, *, rtol: float = 1e-6) -> np.ndarray:
    """Per-image min-max to [0, 1]; a constant (or non-finite) map becomes zeros.

    Parameters
    ----------
    maps : numpy.ndarray
        (N, h, w) maps.
    rtol : float
        A map whose range is below ``rtol`` times its largest magnitude counts
        as constant.
    """
    maps = np.nan_to_num(maps.astype(np.float32, copy=True), nan=0.0, posinf=0.0, neginf=0.0)
    flat = maps.reshape(len(maps), -1)
    lo = flat.min(axis=1, keepdims=True)
    hi = flat.max(axis=1, keepdims=True)
    span = hi - lo
    scale = np.maximum(np.abs(hi), np.abs(lo))
    flat_ok = span > rtol * np.maximum(scale, np.float32(1e-30))
    safe = np.where(flat_ok, span, np.float32(1.0))
    out = np.where(flat_ok, (flat - lo) / safe, np.float32(0.0))
    return out.reshape(maps.shape).astype(np.float32, copy=False)


def postprocess(raw: np.ndarray, size: tuple[int, int], *, rectify: bool) -> np.ndarray:
    """Rectify (optional), upsample to the input size, normalise per image.

    Parameters
    ----------
    raw : numpy.ndarray
        (N, h, w) raw maps.
    size : (int, int)
        The model's input size, (H, W).
    rectify : bool
        Keep only positive evidence (ReLU) first.
    """
    maps = np.maximum(raw, 0.0) if rectify else raw
    return normalise(upsample(maps.astype(np.float32, copy=False), size))


def warn_constant_maps(
    maps: np.ndarray, sources: Sequence[str], method: str, raw: np.ndarray | None = None
) -> None:
    """One warning naming the images whose normalised map is all zero, and why it likely is.

    Such a map shows nothing, and nothing else would tell. With ``raw`` (the
    method's maps before the ReLU) two causes are told apart: a raw map that
    is itself constant (a zero-initialised or untrained head, as torchvision's
    ViT starts with, gives zero gradients and equal scores everywhere), and
    one that varies but is negative everywhere, so the ReLU left nothing
    (every region lowers the target's score).

    Parameters
    ----------
    maps : numpy.ndarray
        (N, H, W) normalised maps.
    sources : sequence of str
        Each image's name, for the warning.
    method : str
        The method's name, for the warning.
    raw : numpy.ndarray, optional
        The method's maps before the ReLU, to tell the two causes apart.
    """
    flat = maps.reshape(len(maps), -1)
    blank = np.flatnonzero(~(flat > 0).any(axis=1))
    blank = blank[blank < len(sources)]
    if not blank.size:
        return
    negative: set[int] = set()
    if raw is not None and len(raw) == len(maps):
        values = raw.reshape(len(raw), -1)[blank].astype(np.float64)
        varies = (values.max(axis=1) - values.min(axis=1)) > 1e-12 * np.maximum(
            1.0, np.abs(values).max(axis=1)
        )
        negative = {int(i) for i in blank[varies]}
    flat_ones = [int(i) for i in blank if int(i) not in negative]
    if flat_ones:
        warn_user(
            f"{method}: the map of {len(flat_ones)} image(s) is constant, so it shows nothing: "
            f"{_names(flat_ones, sources)}. The target's score does not change with the input "
            "there; likely causes: a zero-initialised or untrained head, a saturated "
            "probability (try score='logit'), or a layer whose output does not reach the score",
            ConstantMapWarning,
        )
    if negative:
        warn_user(
            f"{method}: the map of {len(negative)} image(s) is negative everywhere, so after "
            f"the ReLU it shows nothing: {_names(sorted(negative), sources)}. Every region "
            "lowers the target's score there (is the target what the model sees?); "
            "ex.layer_maps holds the map before the ReLU",
            ConstantMapWarning,
        )


def _names(indices: Sequence[int], sources: Sequence[str]) -> str:
    names = [sources[i] for i in indices]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
