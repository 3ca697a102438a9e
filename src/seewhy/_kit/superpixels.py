"""Superpixels for LIME and Kernel SHAP: segmentation, fast masking, pictures.

Segmentation runs on the uint8 picture (what a person sees), masking on the
model inputs. Masking is the hot loop of LIME (1000 perturbed images per
picture), so it is written as one gather and one masked copy per batch, with
each pixel's channels moved as a single 4*C-byte item.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ..errors import FewSuperpixelsWarning, InvalidInput
from . import compiled
from .quickshift import quickshift
from .warn import warn_user

__all__ = [
    "DEFAULTS",
    "FEW_SEGMENTS",
    "LabelRuns",
    "boundary_picture",
    "compose",
    "label_runs",
    "scaled_defaults",
    "segment",
    "segment_means",
]

#: Default parameters per algorithm (quickshift's as the lime package sets them).
DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "quickshift": {"kernel_size": 4, "max_dist": 200, "ratio": 0.2},
    "slic": {"n_segments": 100, "compactness": 10.0, "start_label": 0},
    "felzenszwalb": {"scale": 100.0, "sigma": 0.5, "min_size": 50},
}

Segmentation = str | np.ndarray | Callable[[np.ndarray], np.ndarray]

#: Below this many superpixels an explanation can say little, and seewhy says so.
FEW_SEGMENTS = 8
#: The picture side the default quickshift kernel (4 px) was chosen for; it scales with it.
_QUICKSHIFT_SIDE = 224


def scaled_defaults(how: str, height: int, width: int) -> dict[str, Any]:
    """:data:`DEFAULTS` for a ``height`` x ``width`` picture: quickshift's kernel follows its size.

    A fixed 4-px kernel leaves a 32 x 32 picture with one or two superpixels
    (a constant map); scaled, it keeps about as many as at 224 px.
    """
    options = dict(DEFAULTS[how])
    if how == "quickshift":
        side = min(height, width)
        options["kernel_size"] = max(1.0, options["kernel_size"] * side / _QUICKSHIFT_SIDE)
    return options


def segment(
    picture: np.ndarray,
    how: Segmentation = "quickshift",
    params: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
) -> np.ndarray:
    """Superpixel labels (H, W) int64, numbered 0..S-1, for a uint8 picture (H, W, 3).

    ``how`` is ``"quickshift"``, ``"slic"``, ``"felzenszwalb"`` (scikit-image,
    ``params`` override :data:`DEFAULTS`), a function picture -> labels, or a
    fixed (H, W) label array. Quickshift runs compiled (:mod:`.quickshift`,
    the same labels as scikit-image's) unless it is given options only
    scikit-image knows.
    """
    h, w = picture.shape[:2]
    if isinstance(how, np.ndarray):
        labels = how
    elif callable(how):
        labels = np.asarray(how(picture))
    elif isinstance(how, str) and how in DEFAULTS:
        from skimage import segmentation as sk

        options = {**scaled_defaults(how, h, w), **(params or {})}
        if how == "quickshift":
            options.setdefault("rng", seed)
        fast = how == "quickshift" and set(options) <= {"ratio", "kernel_size", "max_dist", "rng"}
        try:
            labels = (
                quickshift(picture, **options) if fast else getattr(sk, how)(picture, **options)
            )
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"segmentation_params: {how} rejects {dict(params or {})}: {exc}"
            ) from None
    else:
        raise InvalidInput(
            "segmentation: expected 'quickshift', 'slic', 'felzenszwalb', a function or an "
            f"(H, W) label array, got {how!r}"
        )
    if labels.shape != (h, w) or not np.issubdtype(labels.dtype, np.integer):
        raise InvalidInput(
            f"segmentation: expected integer labels of shape {(h, w)}, got "
            f"{labels.dtype} {labels.shape}"
        )
    _, dense = np.unique(labels, return_inverse=True)
    count = int(dense.max()) + 1 if dense.size else 0
    if count < FEW_SEGMENTS and h * w >= FEW_SEGMENTS:
        warn_user(
            f"segmentation: a {h}x{w} picture gave only {count} superpixel(s), so the map can "
            "say little; pass segmentation_params (e.g. kernel_size=1 for quickshift) or "
            "segmentation='slic' with more n_segments",
            FewSuperpixelsWarning,
        )
    return dense.reshape(h, w).astype(np.int64)


def segment_means(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(H, W, C) image where each superpixel holds its own mean value (per channel)."""
    count = int(labels.max()) + 1
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=count).astype(np.float64)
    means = (
        np.stack(
            [
                np.bincount(flat, weights=x[..., c].ravel(), minlength=count)
                for c in range(x.shape[-1])
            ],
            axis=1,
        )
        / np.maximum(sizes, 1.0)[:, None]
    )
    return means[labels].astype(np.float32)


def _pixels(a: np.ndarray) -> np.ndarray:
    """View (..., H, W, C) float32 as (..., H, W) items of C floats (one copy per pixel)."""
    c = a.shape[-1]
    return a.view(np.dtype((np.void, a.dtype.itemsize * c)))[..., 0]


class LabelRuns(NamedTuple):
    """Runs of equal label in raster order: pixels ``[starts[k], stops[k])`` carry ``labels[k]``."""

    starts: np.ndarray
    stops: np.ndarray
    labels: np.ndarray


def label_runs(labels: np.ndarray) -> LabelRuns:
    """The runs of an (H, W) label image; quickshift superpixels give about 20 pixels a run."""
    flat = np.ascontiguousarray(labels).reshape(-1)
    starts = np.flatnonzero(np.diff(flat)) + 1
    stops = np.append(starts, flat.size)
    starts = np.insert(starts, 0, 0)
    return LabelRuns(starts, stops, flat[starts])


def compose(
    on: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray,
    fill: np.ndarray,
    out: np.ndarray,
    runs: LabelRuns | None = None,
) -> np.ndarray:
    """Perturbed inputs: ``out[i] = where(on[i, labels], x, fill)``, written into ``out``.

    ``on`` (B, S) bool; ``x`` and ``fill`` (H, W, C) float32 C-contiguous;
    ``out`` (>= B, H, W, C) float32. Returns ``out[:B]``. ``runs``
    (:func:`label_runs` of ``labels``) saves recomputing them for each batch
    of the same image.
    """
    batch = out[: len(on)]
    if compiled.available():
        compiled.compose(on, runs if runs is not None else label_runs(labels), x, fill, batch)
        return batch
    shown = on[:, labels]  # (B, H, W): one gather of S-long rows
    dst = _pixels(batch)
    dst[...] = _pixels(fill)
    np.copyto(dst, _pixels(x), where=shown)
    return batch


def boundary_picture(picture: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The picture with only ``mask`` lit, the rest dimmed, kept superpixels outlined in yellow."""
    from skimage.segmentation import find_boundaries

    out = np.where(mask[..., None], picture, (picture.astype(np.float32) * 0.3).astype(np.uint8))
    edges = find_boundaries(np.where(mask, labels + 1, 0), mode="inner")  # type: ignore[no-untyped-call]
    edges &= mask
    out[edges] = (255, 220, 0)
    return out.astype(np.uint8)
