"""Localisation: does the map sit on the object a person would point at?

Given object masks or boxes (ground truth in the model input's pixels):

* pointing game (Zhang et al., 2016): a hit when the map's peak lies on the
  object, within a tolerance in pixels;
* energy-based pointing game (Wang et al., Score-CAM, 2020): the share of the
  map's total mass that falls inside the object;
* IoU of the thresholded map with the object.

Pure numpy (and scipy's distance transform); no model is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._kit.checks import bad_argument, finite_float, unit_float
from ..errors import InvalidInput
from ..explanation import Explanation
from ._maps import as_maps
from .registry import Direction, Need, metric

__all__ = [
    "LocalisationScore",
    "boxes_to_masks",
    "energy_in_box",
    "energy_pointing_game",
    "iou",
    "object_masks",
    "pointing_game",
    "threshold_maps",
]


@dataclass(frozen=True)
class LocalisationScore:
    """One number per image and their mean.

    Attributes
    ----------
    metric : str
        The metric's registered name.
    values : numpy.ndarray
        (N,) float64, the metric per image (pointing game: 1 for a hit, 0 for a miss).
    params : Mapping
        The settings it was computed with (tolerance, threshold, mode, objects).
    """

    metric: str
    values: np.ndarray  # (N,) float64
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        """The mean over images (for the pointing game: the hit rate)."""
        return float(self.values.mean()) if len(self.values) else float("nan")

    def __float__(self) -> float:
        return self.mean

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        return {
            "metric": self.metric,
            "mean": round(self.mean, 6),
            "values": [round(float(v), 6) for v in self.values],
            "params": dict(self.params),
        }


# --------------------------------------------------------------------------- inputs


def _maps(explanation: Explanation | np.ndarray) -> np.ndarray:
    """(N, H, W) float64 maps of an Explanation or an array, NaN and infinities as 0."""
    if isinstance(explanation, Explanation):
        arr = np.asarray(explanation.maps)
    else:
        arr = as_maps(explanation)
    out: np.ndarray = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return out


def boxes_to_masks(boxes: Any, count: int, size: tuple[int, int]) -> np.ndarray:
    """Boxes ``(x0, y0, x1, y1)`` (pixels, ends exclusive) to (N, H, W) masks.

    ``boxes`` is one box per image (N, 4), or per image a list of boxes (the
    object is their union); one box alone applies to every image.
    """
    h, w = size
    arr = None
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (ValueError, TypeError):
        arr = None  # ragged: a list of box lists
    if arr is not None and arr.ndim == 1 and arr.shape == (4,):
        per_image: list[Any] = [[arr]] * count
    elif arr is not None and arr.ndim == 2 and arr.shape[1] == 4:
        per_image = [[b] for b in arr]
    elif arr is not None and arr.ndim == 3 and arr.shape[2] == 4:
        per_image = list(arr)
    elif isinstance(boxes, Sequence) and not isinstance(boxes, (str, bytes)):
        per_image = [b if _is_box_list(b) else [b] for b in boxes]
    else:
        raise InvalidInput(
            f"boxes: expected (x0, y0, x1, y1) per image, got {type(boxes).__name__}"
        )
    if len(per_image) != count:
        raise InvalidInput(f"boxes: expected boxes for {count} images, got {len(per_image)}")
    masks = np.zeros((count, h, w), dtype=bool)
    for i, image_boxes in enumerate(per_image):
        for box in image_boxes:
            values = np.asarray(box, dtype=np.float64).ravel()
            if values.shape != (4,) or not np.all(np.isfinite(values)):
                raise InvalidInput(f"boxes: expected 4 finite numbers per box, got {box!r}")
            x0, y0, x1, y1 = values
            if x1 < x0 or y1 < y0:
                raise InvalidInput(f"boxes: expected x0 <= x1 and y0 <= y1, got {tuple(values)}")
            c0, r0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
            c1, r1 = min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
            masks[i, r0:r1, c0:c1] = True
    return masks


def _is_box_list(item: Any) -> bool:
    if isinstance(item, np.ndarray):
        return item.ndim == 2
    return (
        isinstance(item, Sequence)
        and len(item) > 0
        and all(isinstance(b, (Sequence, np.ndarray)) for b in item)
    )


def object_masks(
    count: int,
    size: tuple[int, int],
    *,
    masks: Any = None,
    boxes: Any = None,
    as_boxes: bool = False,
) -> np.ndarray:
    """(N, H, W) bool ground truth from masks or boxes, at the maps' size.

    Masks of another size are resized (nearest neighbour). ``as_boxes`` turns
    each mask into its bounding box.
    """
    from ..inputs import to_numpy

    if (masks is None) == (boxes is None):
        raise InvalidInput("objects: expected exactly one of masks= or boxes=")
    if boxes is not None:
        return boxes_to_masks(boxes, count, size)
    arr = to_numpy(masks, name="masks")
    if arr.ndim == 2:
        arr = np.broadcast_to(arr, (count, *arr.shape))
    if arr.ndim != 3 or len(arr) != count:
        raise InvalidInput(
            f"masks: expected (N, H, W) masks for {count} maps, got shape {arr.shape}"
        )
    out = arr > 0.5 if np.issubdtype(arr.dtype, np.floating) else arr.astype(bool)
    if out.shape[1:] != size:
        rows = np.minimum((np.arange(size[0]) + 0.5) * out.shape[1] / size[0], out.shape[1] - 1)
        cols = np.minimum((np.arange(size[1]) + 0.5) * out.shape[2] / size[1], out.shape[2] - 1)
        out = out[:, rows.astype(np.int64)][:, :, cols.astype(np.int64)]
    if as_boxes:
        boxes_: list[list[list[int]]] = []
        for m in out:
            ys, xs = np.nonzero(m)
            box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            boxes_.append([box] if len(ys) else [])
        return boxes_to_masks(boxes_, count, size)
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------- metrics


@metric(
    "pointing_game",
    direction=Direction.HIGHER,
    needs=frozenset({Need.OBJECTS}),
    settings=("tolerance",),
)
def pointing_game(
    explanation: Explanation | np.ndarray,
    *,
    masks: Any = None,
    boxes: Any = None,
    tolerance: float | None = None,
) -> LocalisationScore:
    """Pointing game: 1 when the map's peak is on the object, else 0.

    ``tolerance`` (pixels) also counts peaks that close to the object; the
    default is Zhang et al.'s 15 px at 224 px, scaled with the map size
    (4 px at 64 px). When several pixels share the maximum, it is a hit if at
    least half of them are; a flat map points nowhere and is a miss.

    Parameters
    ----------
    explanation : Explanation or numpy.ndarray
        The explanation, or its maps (N, H, W) / (H, W).
    masks : array-like, optional
        The objects as (N, H, W) or (H, W) masks (true, or above 0.5 for floats,
        on the object) at the maps' size; another size is resized. Give masks or
        boxes.
    boxes : array-like, optional
        The objects as boxes ``(x0, y0, x1, y1)`` in the model input's pixels
        (ends exclusive): one for all images, one per image, or a list per
        image whose union is the object.
    tolerance : float, optional
        How far from the object, in pixels, a peak still counts as a hit; None
        scales 15 px at 224 px with the map size.

    Returns
    -------
    LocalisationScore
        1 or 0 per image; ``mean`` is the hit rate.

    Raises
    ------
    InvalidInput
        Neither or both of ``masks`` and ``boxes``, or objects that do not fit the maps.
    """
    from scipy.ndimage import distance_transform_edt

    maps = _maps(explanation)
    n, h, w = maps.shape
    objects = object_masks(n, (h, w), masks=masks, boxes=boxes)
    if tolerance is None:
        tol = 15.0 * min(h, w) / 224.0
    else:
        tol = finite_float(tolerance, "tolerance", where="pointing_game", minimum=0.0)
    hits = np.zeros(n, dtype=np.float64)
    for i in range(n):
        m = maps[i]
        top, low = float(m.max()), float(m.min())
        span = top - low
        if span <= 1e-12 * max(abs(top), 1.0) or not objects[i].any():
            continue
        peaks = m >= top - 1e-6 * span
        if tol > 0:
            near = distance_transform_edt(~objects[i]) <= tol
        else:
            near = objects[i]
        hits[i] = 1.0 if near[peaks].mean() >= 0.5 else 0.0
    return LocalisationScore("pointing_game", hits, {"tolerance": tol})


@metric("energy_pointing_game", direction=Direction.HIGHER, needs=frozenset({Need.OBJECTS}))
def energy_pointing_game(
    explanation: Explanation | np.ndarray,
    *,
    masks: Any = None,
    boxes: Any = None,
) -> LocalisationScore:
    """Share of the map's mass inside the object: sum(map * object) / sum(map).

    1 means every bit of attention is on the object; a uniform map scores the
    object's share of the picture. Negative map values are clipped to 0; an
    all-zero map scores 0.

    Parameters
    ----------
    explanation, masks, boxes
        As in :func:`pointing_game`.

    Returns
    -------
    LocalisationScore
        The share inside the object per image, 0 to 1.
    """
    maps = np.maximum(_maps(explanation), 0.0)
    n, h, w = maps.shape
    objects = object_masks(n, (h, w), masks=masks, boxes=boxes)
    total = maps.sum(axis=(1, 2))
    inside = (maps * objects).sum(axis=(1, 2))
    values = np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)
    return LocalisationScore("energy_pointing_game", values, {"objects": _kind(masks)})


@metric("energy_in_box", direction=Direction.HIGHER, needs=frozenset({Need.OBJECTS}))
def energy_in_box(
    explanation: Explanation | np.ndarray,
    *,
    masks: Any = None,
    boxes: Any = None,
) -> LocalisationScore:
    """Energy-based pointing game on bounding boxes, as in Score-CAM.

    Masks are replaced by their bounding boxes first, so thin or holed objects
    are judged like boxed ones.

    Parameters
    ----------
    explanation, masks, boxes
        As in :func:`pointing_game`.

    Returns
    -------
    LocalisationScore
        The share inside the object's box per image, 0 to 1.
    """
    maps = _maps(explanation)
    n, h, w = maps.shape
    objects = object_masks(n, (h, w), masks=masks, boxes=boxes, as_boxes=True)
    result = energy_pointing_game(maps, masks=objects)
    return LocalisationScore("energy_in_box", result.values, {"objects": "boxes"})


def threshold_maps(maps: np.ndarray, threshold: float, mode: str) -> np.ndarray:
    """(N, H, W) bool: ``"relative"`` map >= threshold * max, ``"top"`` the top
    ``threshold`` fraction of pixels, ``"absolute"`` map >= threshold."""
    threshold = finite_float(threshold, "threshold")
    n = len(maps)
    if mode == "relative":
        if not 0.0 <= threshold <= 1.0:
            raise bad_argument("threshold", "a fraction in [0, 1]", threshold)
        top = maps.reshape(n, -1).max(axis=1)[:, None, None]
        out: np.ndarray = (maps >= threshold * top) & (top > 0)
        return out
    if mode == "top":
        threshold = unit_float(threshold, "threshold")
        flat = maps.reshape(n, -1)
        keep = max(1, round(threshold * flat.shape[1]))
        order = np.argsort(-flat, axis=1, kind="stable")[:, :keep]
        chosen = np.zeros_like(flat, dtype=bool)
        np.put_along_axis(chosen, order, True, axis=1)
        return chosen.reshape(maps.shape)
    if mode == "absolute":
        absolute: np.ndarray = maps >= threshold
        return absolute
    raise bad_argument("mode", "'relative', 'top' or 'absolute'", mode)


@metric(
    "iou",
    direction=Direction.HIGHER,
    needs=frozenset({Need.OBJECTS}),
    settings=("threshold",),
)
def iou(
    explanation: Explanation | np.ndarray,
    *,
    masks: Any = None,
    boxes: Any = None,
    threshold: float = 0.5,
    mode: str = "relative",
) -> LocalisationScore:
    """Intersection over union of the thresholded map with the object.

    ``mode="relative"`` keeps pixels at or above ``threshold`` times the map's
    maximum (the CAM papers' 50%-of-max box), ``"top"`` keeps the top
    ``threshold`` fraction of pixels, ``"absolute"`` compares with the value.

    Parameters
    ----------
    explanation, masks, boxes
        As in :func:`pointing_game`.
    threshold : float
        Where the map is cut, read as ``mode`` says.
    mode : str
        ``"relative"``, ``"top"`` or ``"absolute"``.

    Returns
    -------
    LocalisationScore
        The IoU per image, 0 to 1.
    """
    maps = _maps(explanation)
    n, h, w = maps.shape
    objects = object_masks(n, (h, w), masks=masks, boxes=boxes)
    chosen = threshold_maps(maps, float(threshold), mode)
    inter = (chosen & objects).sum(axis=(1, 2)).astype(np.float64)
    union = (chosen | objects).sum(axis=(1, 2)).astype(np.float64)
    values = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return LocalisationScore("iou", values, {"threshold": float(threshold), "mode": mode})


def _kind(masks: Any) -> str:
    return "boxes" if masks is None else "masks"
