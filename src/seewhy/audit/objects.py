"""The ground truth drawn in the report: boxes and mask outlines in the model's picture.

The report shows what the model saw (the picture after the resize and the
crop), so the boxes given in the original image's pixels are carried through
the same geometry as :func:`seewhy.inputs.resize_for_model`, and a mask is
reduced to the outline of its pixels there. Both go into the audit's records
as plain numbers and one SVG path of straight moves, which the page checks
before it draws them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from seewhy.preprocess import Preprocess

from .dataset import Box

__all__ = ["OUTLINE_CELLS", "input_boxes", "objects_record", "outline_path", "picture_geometry"]

#: A mask outline follows a grid of at most this many cells a side: sharp enough
#: over a 320 px picture, and a few hundred bytes an image in the page.
OUTLINE_CELLS = 64


def picture_geometry(
    original_size: tuple[int, int], pre: Preprocess
) -> tuple[float, float, int, int]:
    """(x scale, y scale, left, top): original pixel x maps to ``x * sx - left``.

    The sizes :func:`seewhy.inputs.resize_for_model` computes, from the same
    :meth:`~seewhy.Preprocess.plan` (a negative offset is padding).
    """
    h, w = original_size
    new_h, new_w, top, left = pre.plan(h, w)
    return new_w / w, new_h / h, left, top


def input_boxes(
    boxes: Sequence[Box], original_size: tuple[int, int], pre: Preprocess
) -> list[list[float]]:
    """Boxes in the model picture's pixels, clipped to it; boxes the crop cut off are dropped.

    Fractions (all four values <= 1) are read as fractions of the original,
    as :func:`seewhy.audit.flags.object_mask` reads them.
    """
    h, w = original_size
    out_h, out_w = pre.size
    sx, sy, left, top = picture_geometry(original_size, pre)
    out: list[list[float]] = []
    for x0, y0, x1, y1 in boxes:
        if max(x0, y0, x1, y1) <= 1.0:
            x0, x1, y0, y1 = x0 * w, x1 * w, y0 * h, y1 * h
        a = min(max(x0 * sx - left, 0.0), out_w)
        b = min(max(y0 * sy - top, 0.0), out_h)
        c = min(max(x1 * sx - left, 0.0), out_w)
        d = min(max(y1 * sy - top, 0.0), out_h)
        if c > a and d > b:
            out.append([round(a, 2), round(b, 2), round(c, 2), round(d, 2)])
    return out


def _cells(mask: np.ndarray, cells: int) -> tuple[np.ndarray, int]:
    """The mask on a coarser grid (a cell is in when half its pixels are), and the cell size."""
    h, w = mask.shape
    step = max(1, math.ceil(max(h, w) / cells))
    if step == 1:
        return mask.astype(bool), 1
    gh, gw = math.ceil(h / step), math.ceil(w / step)
    padded = np.zeros((gh * step, gw * step), dtype=np.float32)
    padded[:h, :w] = mask
    share = padded.reshape(gh, step, gw, step).mean(axis=(1, 3))
    return share >= 0.5, step


def _runs(changed: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1-D bool array."""
    edges = np.diff(np.concatenate(([0], changed.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)]


def outline_path(mask: np.ndarray, cells: int = OUTLINE_CELLS) -> str:
    """SVG path (``M x y h n`` / ``v n`` moves, picture pixels) along the mask's edges.

    Every edge between an object cell and a background cell becomes a
    straight run, merged along rows and columns; the page strokes them with
    square caps, so the corners close. Where the crop cut the object the
    outline stays open rather than run along the picture's frame.
    """
    grid, step = _cells(mask, cells)
    h, w = mask.shape
    padded = np.pad(grid, 1, mode="edge")
    parts: list[str] = []
    across = padded[1:, 1:-1] != padded[:-1, 1:-1]  # (gh + 1, gw): edges along rows
    for y, row in enumerate(across):
        for x, n in _runs(row):
            x_end = min((x + n) * step, w)
            parts.append(f"M{x * step} {min(y * step, h)}h{x_end - x * step}")
    down = padded[1:-1, 1:] != padded[1:-1, :-1]  # (gh, gw + 1): edges along columns
    for x, col in enumerate(down.T):
        for y, n in _runs(col):
            y_end = min((y + n) * step, h)
            parts.append(f"M{min(x * step, w)} {y * step}v{y_end - y * step}")
    return "".join(parts)


def objects_record(
    original_size: tuple[int, int],
    pre: Preprocess,
    boxes: Sequence[Box],
    shape: np.ndarray | None,
) -> dict[str, Any] | None:
    """What the report draws over a picture, or None when there is nothing to draw.

    ``size`` is the picture's (width, height): the page's coordinate space.
    """
    drawn = input_boxes(boxes, original_size, pre) if boxes else []
    outline = outline_path(shape) if shape is not None and shape.any() else ""
    if not drawn and not outline:
        return None
    out_h, out_w = pre.size
    return {"size": [out_w, out_h], "boxes": drawn, "outline": outline}
