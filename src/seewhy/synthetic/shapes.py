"""The shapes set: one textured shape per picture, optionally with a planted shortcut.

Objects and shortcuts draw from separate random streams of the same seed, so
``make_shapes(n, seed=s)`` and ``make_shapes(n, seed=s, shortcut="patch")``
hold the very same objects and backgrounds, differing only in the shortcut.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..errors import InvalidInput
from ._drawing import background, object_fill, shape_mask
from .data import ShapesData

__all__ = ["SHAPES", "make_shapes"]

#: Shape classes that can be drawn, in label order when ``classes`` is a count.
SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "ring")

Shortcut = Literal["patch", "tint"]

# Saturated, well separated colours: the shortcut's code for each class.
_PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [255, 225, 25],
        [145, 30, 180],
        [245, 130, 48],
        [70, 240, 240],
        [240, 50, 230],
    ],
    dtype=np.float32,
)


def _class_names(classes: int | Sequence[str]) -> tuple[str, ...]:
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        if not 2 <= int(classes) <= len(SHAPES):
            raise InvalidInput(f"classes: expected 2..{len(SHAPES)}, got {classes}")
        return SHAPES[: int(classes)]
    if isinstance(classes, str):
        raise InvalidInput("classes: expected a count or a sequence of shape names, got a str")
    names = tuple(str(c) for c in classes)  # type: ignore[union-attr]
    unknown = [c for c in names if c not in SHAPES]
    if unknown or len(names) < 2 or len(set(names)) != len(names):
        raise InvalidInput(
            f"classes: expected 2+ distinct names from {', '.join(SHAPES)}, got {list(names)}"
        )
    return names


def make_shapes(
    n: int,
    *,
    size: int = 64,
    classes: int | Sequence[str] = 4,
    noise: float = 0.04,
    clutter: int = 8,
    texture: float = 0.4,
    rotation: float = 15.0,
    shortcut: str | None = None,
    shortcut_rate: float = 1.0,
    seed: int = 0,
) -> ShapesData:
    """``n`` pictures of one textured shape each on a cluttered background.

    Labels cycle through the classes in a shuffled order, so every class is
    equally common. ``noise`` is the std of Gaussian pixel noise as a fraction
    of 255. With ``shortcut="patch"`` a coloured square in the top-left corner
    names a class; with ``"tint"`` the background is tinted in that class's
    colour. The shortcut names the true label with probability
    ``shortcut_rate`` and a uniformly chosen wrong class otherwise, so ``1.0``
    is a perfect shortcut, ``1 / classes`` an uninformative one and ``0.0`` one
    that always lies. Objects never overlap the patch. Shapes are tilted by up
    to ``rotation`` degrees: the small default lets a tiny CNN learn the task
    in seconds (full rotation needs a bigger net and more epochs).

    Parameters
    ----------
    n : int
        How many pictures.
    size : int
        Side of the square pictures (at least 24).
    classes : int or sequence of str
        How many shapes, or their names.
    noise : float
        Std of the Gaussian pixel noise, as a fraction of 255.
    clutter : int
        Strokes and dots drawn on the background.
    texture : float
        Contrast of the shape's pattern: 0 a solid fill, 1 full contrast.
    rotation : float
        Largest tilt of a shape, in degrees.
    shortcut : {None, "patch", "tint"}
        A cue that names a class besides the shape.
    shortcut_rate : float
        How often the shortcut names the true label.
    seed : int
        Everything is drawn from it.
    """
    names = _class_names(classes)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise InvalidInput(f"n: expected a positive integer, got {n!r}")
    if not isinstance(size, (int, np.integer)) or size < 24:
        raise InvalidInput(f"size: expected an integer >= 24, got {size!r}")
    if not 0.0 <= float(noise) <= 1.0:
        raise InvalidInput(f"noise: expected a number in [0, 1], got {noise!r}")
    if not isinstance(clutter, (int, np.integer)) or clutter < 0:
        raise InvalidInput(f"clutter: expected a non-negative integer, got {clutter!r}")
    if shortcut not in (None, "patch", "tint"):
        raise InvalidInput(f"shortcut: expected None, 'patch' or 'tint', got {shortcut!r}")
    if not 0.0 <= float(shortcut_rate) <= 1.0:
        raise InvalidInput(f"shortcut_rate: expected a number in [0, 1], got {shortcut_rate!r}")
    k = len(names)
    object_seq, shortcut_seq, noise_seq = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(object_seq)
    rng_short = np.random.default_rng(shortcut_seq)
    rng_noise = np.random.default_rng(noise_seq)

    labels = np.tile(np.arange(k), -(-n // k))[:n]
    labels = rng.permutation(labels).astype(np.int64)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy += 0.5
    xx += 0.5
    patch = max(4, size // 8)
    margin = max(1, size // 32)
    patch_mask = np.zeros((size, size), dtype=bool)
    patch_mask[margin : margin + patch, margin : margin + patch] = True
    patch_centre = margin + patch / 2

    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=bool)
    boxes = np.empty((n, 4), dtype=np.int64)
    short_labels = np.full(n, -1, dtype=np.int64)
    short_masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        img = background(rng, yy, xx, size, int(clutter))
        r = rng.uniform(0.16, 0.25) * size
        while True:  # keep the object inside the picture and clear of the patch corner
            cx, cy = rng.uniform(r + margin, size - r - margin, 2)
            if math.hypot(cx - patch_centre, cy - patch_centre) > r + patch * 0.75 + margin:
                break
        theta = math.radians(rng.uniform(-rotation, rotation))
        u = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)
        v = -(xx - cx) * math.sin(theta) + (yy - cy) * math.cos(theta)
        mask = shape_mask(names[labels[i]], u, v, r)
        behind = float(img[mask].max(axis=1).mean()) / 255.0 if mask.any() else 0.5
        fill = object_fill(rng, u, v, size, float(texture), behind)
        if shortcut is not None:
            code = int(labels[i])
            if rng_short.random() >= shortcut_rate:
                code = int((labels[i] + rng_short.integers(1, k)) % k)
            short_labels[i] = code
            colour = _PALETTE[code % len(_PALETTE)]
            if shortcut == "patch":
                img[patch_mask] = colour
                inner = patch_mask.copy()
                inner[margin + 1 : margin + patch - 1, margin + 1 : margin + patch - 1] = False
                img[inner] = 255.0  # a white rim makes the watermark stand out
                short_masks[i] = patch_mask
            else:
                img = img * 0.65 + colour[None, None, :] * 0.35
                short_masks[i] = ~mask
        img[mask] = fill[mask]
        if noise > 0:
            img = img + rng_noise.normal(0.0, float(noise) * 255.0, img.shape)
        images[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        masks[i] = mask
        ys, xs = np.nonzero(mask)
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return ShapesData(
        images=images,
        labels=labels,
        masks=masks,
        boxes=boxes,
        shortcut_labels=short_labels,
        shortcut_masks=short_masks,
        classes=names,
        shortcut=shortcut,
        shortcut_rate=None if shortcut is None else float(shortcut_rate),
    )
