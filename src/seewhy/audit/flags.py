"""Per-image warning signs: wrong class, map off the object, map on the border.

The scores are energies (the share of a map's total mass inside a region, as
in Score-CAM's "energy-based pointing game"), so they do not depend on a
threshold of the map and read as plain fractions in the report. The object
score comes from :mod:`seewhy.metrics` when it is there; the border band is
a plain sum computed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from seewhy.errors import InvalidInput
from seewhy.inputs import load_image, resize_for_model
from seewhy.inputs.files import display_path, safe_text
from seewhy.preprocess import Preprocess

from .dataset import Box

__all__ = [
    "BORDER_FRACTION",
    "border_energy",
    "box_energy",
    "box_notes",
    "detection_box",
    "image_notes",
    "object_energy",
    "object_mask",
    "suspicion",
]

#: Width of the border band, as a fraction of each side (a uniform map puts
#: 1 - 0.8**2 = 36 % of its energy there).
BORDER_FRACTION = 0.1


def _energy_inside(map_: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's mass inside ``mask``; NaN for an all-zero map."""
    values = np.clip(np.nan_to_num(map_.astype(np.float64)), 0.0, None)
    total = float(values.sum())
    if total <= 0.0:
        return math.nan
    return float(values[mask].sum() / total)


def object_energy(map_: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's energy on the object (1 = all of it); NaN for an empty map.

    Computed by :func:`seewhy.metrics.energy_pointing_game` when the metrics
    package is installed; an all-zero map shows nothing, so it gets NaN here
    (no flag) rather than the metric's 0.
    """
    if not float(np.clip(np.nan_to_num(map_), 0.0, None).sum()) > 0.0:
        return math.nan
    try:
        from seewhy.metrics import energy_pointing_game
    except ImportError:
        return _energy_inside(map_, mask)
    score = energy_pointing_game(map_[None].astype(np.float64), masks=mask[None])
    return float(score.values[0])


def border_energy(map_: np.ndarray, fraction: float = BORDER_FRACTION) -> float:
    """Share of the map's energy in the outer band of the picture."""
    h, w = map_.shape
    bh, bw = max(1, round(h * fraction)), max(1, round(w * fraction))
    band = np.ones((h, w), dtype=bool)
    band[bh : h - bh, bw : w - bw] = False
    return _energy_inside(map_, band)


def box_energy(map_: np.ndarray, xyxy: Sequence[float]) -> float:
    """Share of the map's energy inside a box in the map's own pixels (a detection's, as
    explained); NaN for an all-zero map or a box outside the map.

    Why the audit flags it below its object threshold (0.5 by default): a map
    putting most of its mass outside the box it explains says the detector
    decided from elsewhere (context, a neighbour, the picture's border).
    """
    h, w = map_.shape
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    c0, c1 = min(w, max(0, math.floor(x0))), min(w, max(0, math.ceil(x1)))
    r0, r1 = min(h, max(0, math.floor(y0))), min(h, max(0, math.ceil(y1)))
    if c1 <= c0 or r1 <= r0:
        return math.nan
    mask = np.zeros((h, w), dtype=bool)
    mask[r0:r1, c0:c1] = True
    return _energy_inside(map_, mask)


def detection_box(recorded: object, row: int) -> tuple[float, ...] | None:
    """The box row ``row`` explained, from ``Explanation.params["target"]`` (a Box's JSON
    form, one or one per row); None when that row's target is not a Box."""
    form = recorded[row] if isinstance(recorded, list) and row < len(recorded) else recorded
    if isinstance(form, dict) and form.get("kind") == "box" and len(form.get("xyxy", ())) == 4:
        return tuple(float(v) for v in form["xyxy"])
    return None


def object_mask(
    original_size: tuple[int, int],
    pre: Preprocess,
    *,
    boxes: Sequence[Box] = (),
    mask_path: str | None = None,
) -> np.ndarray | None:
    """Where the object is, in the model input's pixels (H, W) bool, or None.

    The boxes (or the mask file) are drawn at the original image's size and
    then sent through the very resize-and-crop the picture went through, so
    the two can never disagree. Boxes are clipped to the picture; when no
    object pixel lands in what the model saw (boxes outside the picture or
    cropped away, an empty mask) there is no object to score: None, so the
    map is not called "off-object" for an object that is not there.
    """
    h, w = original_size
    canvas: np.ndarray | None = None
    if mask_path is not None:
        try:
            mask_rgb = load_image(mask_path)
        except InvalidInput as exc:
            message = safe_text(str(exc)).replace(safe_text(mask_path), display_path(mask_path))
            raise InvalidInput(f"mask: {message}") from exc
        if mask_rgb.shape[:2] != (h, w):  # a mask of another size is stretched to fit
            from PIL import Image

            stretched = Image.fromarray(mask_rgb).resize((w, h), Image.Resampling.NEAREST)
            mask_rgb = np.asarray(stretched)
        canvas = np.where(mask_rgb.max(axis=2) > 0, 255, 0).astype(np.uint8)
    if boxes:
        if canvas is None:
            canvas = np.zeros((h, w), dtype=np.uint8)
        for box in boxes:
            x0, y0, x1, y1 = _pixels(box, original_size)
            # clamped at both ends: a negative end would count from the far side
            c0, c1 = (min(w, max(0, v)) for v in (math.floor(x0), math.ceil(x1)))
            r0, r1 = (min(h, max(0, v)) for v in (math.floor(y0), math.ceil(y1)))
            canvas[r0:r1, c0:c1] = 255
    if canvas is None:
        return None
    resized = resize_for_model(np.repeat(canvas[:, :, None], 3, axis=2), pre)
    result: np.ndarray = resized[:, :, 0] >= 128
    return result if result.any() else None


def _pixels(box: Box, size: tuple[int, int]) -> Box:
    h, w = size
    x0, y0, x1, y1 = box
    if max(x0, y0, x1, y1) <= 1.0:  # fractions of the picture
        return x0 * w, y0 * h, x1 * w, y1 * h
    return box


def box_notes(boxes: Sequence[Box], original_size: tuple[int, int]) -> list[str]:
    """One line per box that lies outside the picture (ignored) or reaches out of it (clipped).

    Why: a box drawn for another picture size would otherwise quietly score
    the map against the wrong place.
    """
    h, w = original_size
    notes: list[str] = []
    for n, box in enumerate(boxes, start=1):
        x0, y0, x1, y1 = _pixels(box, original_size)
        shown = "[" + ", ".join(f"{v:g}" for v in box) + "]"
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            notes.append(f"box {n} {shown} lies outside the {w}x{h} picture; ignored")
        elif x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            notes.append(f"box {n} {shown} reaches outside the {w}x{h} picture; clipped")
    return notes


def image_notes(rgb: np.ndarray) -> list[str]:
    """Odd but usable pictures: tiny, extreme shape, blank, greyscale."""
    h, w = rgb.shape[:2]
    notes: list[str] = []
    if min(h, w) < 32:
        notes.append(f"tiny ({w}x{h} px)")
    if max(h, w) > 4 * min(h, w):
        notes.append(f"extreme aspect ratio ({w}x{h})")
    sample = rgb[:: max(1, h // 128), :: max(1, w // 128)]  # enough pixels to judge
    if float(sample.std(dtype=np.float32)) < 2.0:
        notes.append("nearly blank")
    elif np.array_equal(sample[..., 0], sample[..., 1]) and np.array_equal(
        sample[..., 1], sample[..., 2]
    ):
        notes.append("greyscale")
    return notes


def suspicion(
    *,
    wrong: bool | None,
    confidence: float,
    object_energies: Sequence[float],
    border_energies: Sequence[float],
) -> float:
    """One number to sort by: confidently wrong first, then maps off the object.

    ``wrong`` adds 1 + confidence; each map adds its share off the object and
    its share on the border above what a uniform map would have (0.36).
    """
    score = (1.0 + confidence) if wrong else 0.0
    off = [1.0 - e for e in object_energies if not math.isnan(e)]
    border = [max(0.0, e - 0.36) for e in border_energies if not math.isnan(e)]
    score += max(off, default=0.0) + max(border, default=0.0)
    return round(score, 6)
