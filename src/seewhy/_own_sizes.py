"""One Explanation of photos fed at their own sizes (Qwen2-VL's dynamic resolution).

A model that sizes each photo its own (:attr:`seewhy.adapters.Adapted.sizes`)
is fed every photo at the size its processor gives it, and photos of one
size are explained together. When a call's photos were fed at one size (one
photo, or several alike) the Explanation is at that size, exactly what the
model saw. When they were fed at several, an Explanation still holds one
(N, H, W) array, so each photo's map, picture and raw map are laid onto the
call's *canvas* (its preprocessing, ``spec.preprocess``: the photo fitted
with its aspect kept, padded) and its :class:`~seewhy.inputs.Photo` box is
moved to match, so the map still lands on the photo where the model saw
it. Each photo's fed size is in ``input_spec["fed_sizes"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .maps import postprocess, upsample

if TYPE_CHECKING:
    from .inputs import Photo
    from .methods.base import RawResult
    from .preprocess import Preprocess

__all__ = ["on_canvas"]


def on_canvas(
    results: Sequence[RawResult],
    sizes: Sequence[tuple[int, int]],
    pictures: np.ndarray | Sequence[np.ndarray],
    photos: Sequence[Photo | None],
    canvas: Preprocess,
    *,
    rectify: bool,
) -> tuple[RawResult, np.ndarray, np.ndarray, tuple[Photo | None, ...]]:
    """The results of photos fed at several sizes, laid onto ``canvas``.

    ``results`` are the method's, in order, ``sizes`` each result's fed (H, W);
    ``pictures`` (one per row, each at its fed size) and ``photos`` run over
    every row. Returns the joined result (raw maps and per-pixel extras on the
    canvas's pixels, zero in the padding), the maps as ``postprocess`` makes
    them, the pictures and the photos with their boxes on the canvas.
    """
    out_h, out_w = canvas.size
    fill = np.asarray(canvas.fill or (0,), np.uint8)
    maps, raws, images, boxes = [], [], [], []
    extras: dict[str, list[np.ndarray]] = {key: [] for key in results[0].extras}
    row = 0
    for result, size in zip(results, sizes, strict=True):
        shown = postprocess(result.maps, size, rectify=rectify)
        for i in range(len(result.maps)):
            photo = photos[row]
            whole = photo.size if photo is not None else size  # the photo's aspect
            new_h, new_w, top, left = canvas.plan(*whole)
            place = _Placement(new_h, new_w, top, left, out_h, out_w)
            maps.append(place.floats(shown[i]))
            raws.append(place.floats(upsample(result.maps[i : i + 1], size)[0]))
            images.append(place.picture(pictures[row], fill))
            boxes.append(None if photo is None else _moved(photo, place))
            for key, value in result.extras.items():
                extras[key].append(_extra(value[i], size, place))
            row += 1
    joined = replace(
        results[0],
        maps=np.stack(raws),
        logits=np.concatenate([r.logits for r in results]),
        targets=np.concatenate([r.targets for r in results]),
        extras={key: np.stack(values) for key, values in extras.items()},
    )
    return joined, np.stack(maps), np.stack(images), tuple(boxes)


class _Placement:
    """Where a photo lies on the canvas: resized to (new_h, new_w), its top-left corner at
    (-top, -left) (``Preprocess.plan``'s offsets: negative is padding)."""

    def __init__(self, new_h: int, new_w: int, top: int, left: int, out_h: int, out_w: int):
        self.new = (new_h, new_w)
        self.top, self.left = top, left
        self.out = (out_h, out_w)

    def _paste(self, value: np.ndarray, blank: np.ndarray) -> np.ndarray:
        (new_h, new_w), (out_h, out_w) = self.new, self.out
        y0, x0 = max(0, self.top), max(0, self.left)
        y1, x1 = min(new_h, self.top + out_h), min(new_w, self.left + out_w)
        blank[y0 - self.top : y1 - self.top, x0 - self.left : x1 - self.left] = value[y0:y1, x0:x1]
        return blank

    def floats(self, values: np.ndarray) -> np.ndarray:
        """A (h, w) map over the whole photo onto the canvas, zero where the photo is not."""
        resized = upsample(values[None].astype(np.float32), self.new)[0]
        return self._paste(resized, np.zeros(self.out, np.float32))

    def picture(self, rgb: np.ndarray, fill: np.ndarray) -> np.ndarray:
        """A uint8 (h, w, 3) picture of the whole photo onto the canvas, ``fill`` around it."""
        image = Image.fromarray(np.ascontiguousarray(rgb))
        resized = np.asarray(image.resize(self.new[::-1], Image.Resampling.BICUBIC), np.uint8)
        blank = np.empty((*self.out, rgb.shape[-1]), np.uint8)
        blank[...] = fill
        return self._paste(resized, blank)


def _moved(photo: Photo, place: _Placement) -> Photo:
    """``photo`` with its box the part of it the canvas covers."""
    from .inputs import Photo

    new_h, new_w = place.new  # the whole photo's size on the canvas
    fy, fx = photo.picture.shape[0] / new_h, photo.picture.shape[1] / new_w  # -> its pixels
    out_h, out_w = place.out
    box = (
        place.top * fy,
        place.left * fx,
        (place.top + out_h) * fy,
        (place.left + out_w) * fx,
    )
    return Photo(picture=photo.picture, box=box, size=photo.size)


def _extra(value: np.ndarray, size: tuple[int, int], place: _Placement) -> np.ndarray:
    """A per-image extra: a per-pixel array (h, w, ...) at the fed size onto the canvas, channel
    by channel; anything else (a score) as it is."""
    if value.ndim < 2 or tuple(value.shape[:2]) != size:
        return value
    flat = value.reshape(*size, -1).astype(np.float32)
    laid = np.stack([place.floats(flat[..., c]) for c in range(flat.shape[-1])], axis=-1)
    return laid.reshape(*place.out, *value.shape[2:])
