"""The user's own photo, kept beside the model input, and where the input came from in it.

A model sees a resized, centre-cropped square; a person wants the map on the
photo they passed, at its own aspect. :class:`Photo` keeps that picture
(scaled down only when its long side exceeds :data:`PHOTO_MAX_SIDE`) with the
box of it that the model input covers, so a map can be drawn back onto it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..preprocess import Preprocess

__all__ = ["PHOTO_MAX_SIDE", "Photo", "keep_photo"]

#: Longest side of a kept photo: larger ones are scaled down for display (memory).
PHOTO_MAX_SIDE = 2048


@dataclass(frozen=True, eq=False)
class Photo:
    """A picture as the user gave it, and the part of it the model saw.

    ``picture`` is uint8 (H, W, 3); ``box`` is ``(top, left, bottom, right)``
    in ``picture``'s pixel coordinates (edges, not centres) of the region that
    became the model input; ``size`` is the (H, W) of the decoded original,
    before any scaling down for display.

    Attributes
    ----------
    picture : numpy.ndarray
        (H, W, 3) uint8, at most :data:`PHOTO_MAX_SIDE` on its long side.
    box : tuple of float
        ``(top, left, bottom, right)`` of the model's input in ``picture``.
    size : tuple of int
        (H, W) of the decoded original.
    """

    picture: np.ndarray
    box: tuple[float, float, float, float]
    size: tuple[int, int]


def keep_photo(rgb: np.ndarray, pre: Preprocess, *, max_side: int = PHOTO_MAX_SIDE) -> Photo:
    """The photo to draw on (at most ``max_side`` long) and the box the model input covers."""
    height, width = rgb.shape[:2]
    out_h, out_w = pre.size
    new_h, new_w, top, left = pre.plan(height, width)
    sy, sx = height / new_h, width / new_w
    box = (top * sy, left * sx, (top + out_h) * sy, (left + out_w) * sx)
    scale = min(1.0, max_side / max(height, width))
    picture = rgb
    if scale < 1.0:
        shown = (max(1, round(width * scale)), max(1, round(height * scale)))
        resized = Image.fromarray(np.ascontiguousarray(rgb)).resize(
            shown, Image.Resampling.BILINEAR
        )
        picture = np.asarray(resized, dtype=np.uint8)
        fy, fx = shown[1] / height, shown[0] / width
        box = (box[0] * fy, box[1] * fx, box[2] * fy, box[3] * fx)
    kept = np.array(picture, dtype=np.uint8, order="C", copy=True)  # never the caller's array
    kept.setflags(write=False)
    return Photo(picture=kept, box=box, size=(height, width))
