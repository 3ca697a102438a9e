"""The stripes set: the class is a stripe pattern's orientation, inside one bright object.

Why: explanation methods can only be tested for *where* they look when we know
where the evidence is. Each picture is a noisy, blotchy background with one
bright object (a square or a disc) filled with stripes of period 4: horizontal,
vertical or checkered. Mean colour and area are the same in distribution for
every class, so a classifier has to look at the object. Smaller and simpler
than :func:`~seewhy.synthetic.make_shapes` (a 3-class, 32 px set a tiny CNN
learns in a few seconds).
"""

from __future__ import annotations

import numpy as np

from ..preprocess import Preprocess
from .data import ShapesData, preprocess_for

__all__ = ["STRIPES", "STRIPES_PREPROCESS", "make_stripes"]

#: Stripe classes, in label order.
STRIPES: tuple[str, ...] = ("horizontal", "vertical", "checker")
#: How the default 32 px stripes become model inputs (``data.preprocess`` of any set).
STRIPES_PREPROCESS: Preprocess = preprocess_for(32)


def _smooth_noise(rng: np.random.Generator, n: int, size: int, cells: int) -> np.ndarray:
    """(n, size, size) blotchy noise in [0, 1]: a coarse random grid, bilinearly enlarged."""
    coarse = rng.random((n, cells + 1, cells + 1))
    pos = np.linspace(0, cells, size)
    lo = np.minimum(pos.astype(np.int64), cells - 1)
    frac = pos - lo
    rows = coarse[:, lo, :] * (1 - frac)[None, :, None] + coarse[:, lo + 1, :] * frac[None, :, None]
    return rows[:, :, lo] * (1 - frac)[None, None, :] + rows[:, :, lo + 1] * frac[None, None, :]


def _pattern(kind: int, yy: np.ndarray, xx: np.ndarray, phase: tuple[int, int]) -> np.ndarray:
    """0/1 stripes of period 4 on the grid (yy, xx): 0 horizontal, 1 vertical, 2 checker."""
    rows = ((yy + phase[0]) // 2) % 2
    cols = ((xx + phase[1]) // 2) % 2
    return np.asarray([rows, cols, rows ^ cols][kind], dtype=np.float64)


def make_stripes(n: int, *, size: int = 32, seed: int = 0) -> ShapesData:
    """``n`` pictures, classes balanced, everything drawn from ``seed``.

    Boxes are ``(x0, y0, x1, y1)`` with exclusive ends, as in every
    :class:`ShapesData`; there is no shortcut.

    Parameters
    ----------
    n : int
        How many pictures.
    size : int
        Side of the square pictures.
    seed : int
        Everything is drawn from it.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % len(STRIPES)
    rng.shuffle(labels)
    background = 0.15 + 0.4 * _smooth_noise(rng, n, size, 4)[..., None] * rng.uniform(
        0.6, 1.0, (n, 1, 1, 3)
    )
    images = background + rng.normal(0.0, 0.04, (n, size, size, 3))
    masks = np.zeros((n, size, size), dtype=bool)
    boxes = np.zeros((n, 4), dtype=np.int64)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        side = int(rng.integers(size // 3, size // 3 + 5))
        top, left = (int(v) for v in rng.integers(1, size - side, 2))
        if rng.random() < 0.5:
            shape = (yy >= top) & (yy < top + side) & (xx >= left) & (xx < left + side)
        else:
            c = (side - 1) / 2.0
            shape = (yy - top - c) ** 2 + (xx - left - c) ** 2 <= (c + 0.5) ** 2
        phase = (int(rng.integers(0, 4)), int(rng.integers(0, 4)))
        pattern = _pattern(int(labels[i]), yy, xx, phase)
        colour = rng.uniform(0.75, 1.0, 3)
        obj = (0.55 + 0.45 * pattern)[..., None] * colour
        images[i][shape] = obj[shape]
        masks[i] = shape
        rows, cols = np.nonzero(shape)
        boxes[i] = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    pictures = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
    return ShapesData(
        images=pictures,
        labels=labels,
        masks=masks,
        boxes=boxes,
        shortcut_labels=np.full(n, -1, dtype=np.int64),
        shortcut_masks=np.zeros_like(masks),
        classes=STRIPES,
    )
