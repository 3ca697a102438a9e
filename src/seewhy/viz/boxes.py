"""A detection's box drawn on its panel: the ``Box`` target an image was explained for.

The box is in the model input's pixels (what the detector saw); on a kept
photo it is carried back through the resize and crop the input came from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from ..explanation import Explanation
    from ..inputs import Photo

__all__ = ["draw_target_box", "target_box"]

BOX_COLOUR = (255, 64, 64)


def target_box(explanation: Explanation, i: int) -> tuple[float, float, float, float] | None:
    """Image ``i``'s ``Box`` target corners (x0, y0, x1, y1) in input pixels, if it has one."""
    recorded: Any = explanation.params.get("target")
    if isinstance(recorded, list):
        recorded = recorded[i] if i < len(recorded) else None
    if not isinstance(recorded, dict) or recorded.get("kind") != "box":
        return None
    x0, y0, x1, y1 = (float(v) for v in recorded["xyxy"])
    return x0, y0, x1, y1


def draw_target_box(
    picture: np.ndarray,
    explanation: Explanation,
    i: int,
    photo: Photo | None,
) -> np.ndarray:
    """``picture`` (uint8 H, W, 3) with image ``i``'s target box outlined; as it is without one."""
    box = target_box(explanation, i)
    if box is None:
        return picture
    in_h, in_w = explanation.images.shape[1:3]
    x0, y0, x1, y1 = box
    if photo is not None:  # input pixels -> the photo's, through the box the input came from
        top, left, bottom, right = photo.box
        sx, sy = (right - left) / in_w, (bottom - top) / in_h
        x0, x1 = left + x0 * sx, left + x1 * sx
        y0, y1 = top + y0 * sy, top + y1 * sy
    image = Image.fromarray(np.ascontiguousarray(picture))
    width = max(1, round(max(image.size) / 150))
    ImageDraw.Draw(image).rectangle((x0, y0, x1, y1), outline=BOX_COLOUR, width=width)
    return np.asarray(image)
