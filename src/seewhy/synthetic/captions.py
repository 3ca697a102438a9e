"""Captioned shapes: pictures of several coloured shapes, each with its caption, box and mask.

Why: a text prompt's map ("where is *a red circle*?") can only be scored when
the picture holds the named thing *and* something else, and the truth of
where each one lies is known. Every picture here holds ``objects`` solid shapes
(two by default) that differ from each other in colour and in kind, so each
caption (``"a red circle"``, ``"a blue square"``) names exactly one of them,
and neither word alone is shared with another shape of the picture. Shapes
never touch: a gap of at least an eighth of the picture separates them, so a
map's peak near one shape is far from the others (the pointing game's default
tolerance is 4 px at 64 px; the gap is 8 px).

The pictures suit a tiny dual encoder (a CLIP of two blocks) trained in
seconds with the contrastive loss on (picture, caption of one of its shapes)
pairs; ``tests/test_prompt_trained.py`` does exactly that and checks that a
``seewhy.targets.Prompt`` map points at the named shape.

Everything is drawn with numpy from ``seed``: the same seed gives the same
pictures, another seed independent ones (held-out pictures are a second seed).

Examples
--------
>>> from seewhy.synthetic import make_captioned_shapes
>>> data = make_captioned_shapes(4, seed=0)
>>> data.images.shape, data.masks.shape
((4, 64, 64, 3), (4, 2, 64, 64))
>>> data.captions[0]  # doctest: +SKIP
('a blue triangle', 'a red circle')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._kit.checks import bad_argument, finite_float, positive_int
from ..preprocess import Preprocess
from ._drawing import background, hsv_to_rgb, shape_mask
from .data import preprocess_for
from .shapes import SHAPES

__all__ = ["COLOURS", "NOUNS", "CaptionedShapes", "caption_for", "make_captioned_shapes"]

#: Colour words and their hues (HSV, in [0, 1]); each shape's hue is jittered a little
#: around its word's, so a word names a range of colours, not one RGB triple.
COLOURS: dict[str, float] = {
    "red": 0.0,
    "yellow": 0.15,
    "green": 0.33,
    "cyan": 0.5,
    "blue": 0.63,
    "purple": 0.8,
}

#: The word a caption uses for each shape of :data:`~seewhy.synthetic.SHAPES`.
NOUNS: dict[str, str] = {
    "disc": "circle",
    "square": "square",
    "triangle": "triangle",
    "cross": "cross",
    "ring": "ring",
}

_WHERE = "make_captioned_shapes"


def caption_for(colour: str, shape: str) -> str:
    """The caption of one shape: ``caption_for("red", "disc") == "a red circle"``.

    Parameters
    ----------
    colour : str
        A key of :data:`COLOURS`.
    shape : str
        A name from :data:`~seewhy.synthetic.SHAPES`.

    Returns
    -------
    str
        ``"a <colour> <noun>"``.
    """
    return f"a {colour} {NOUNS[shape]}"


@dataclass(frozen=True, eq=False)
class CaptionedShapes:
    """Pictures of several coloured shapes, with each shape's caption, mask and box.

    Axis 1 of ``kinds``, ``colours``, ``masks`` and ``boxes`` is the shape
    within its picture, in drawing order (shapes never overlap, so the order
    hides nothing).

    Attributes
    ----------
    images : numpy.ndarray
        (N, H, W, 3) uint8 pictures.
    kinds : numpy.ndarray
        (N, K) int64, each shape's index into ``shapes``.
    colours : numpy.ndarray
        (N, K) int64, each shape's index into ``colour_names``.
    masks : numpy.ndarray
        (N, K, H, W) bool, each shape's pixels.
    boxes : numpy.ndarray
        (N, K, 4) int64 ``(x0, y0, x1, y1)`` of each shape, exclusive ends.
    shapes : tuple of str
        The shape kinds that can occur (names from ``SHAPES``).
    colour_names : tuple of str
        The colour words that can occur (keys of ``COLOURS``).
    """

    images: np.ndarray
    kinds: np.ndarray
    colours: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    shapes: tuple[str, ...]
    colour_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        """Side length of the square pictures."""
        return int(self.images.shape[1])

    @property
    def objects(self) -> int:
        """Shapes per picture."""
        return int(self.kinds.shape[1])

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Every caption that can occur, colour by colour: the zero-shot classes."""
        return tuple(caption_for(c, s) for c in self.colour_names for s in self.shapes)

    @property
    def caption_ids(self) -> np.ndarray:
        """(N, K) int64, each shape's caption as an index into :attr:`vocabulary`."""
        return self.colours * len(self.shapes) + self.kinds

    @property
    def captions(self) -> tuple[tuple[str, ...], ...]:
        """Each picture's captions, one per shape, in the order of axis 1."""
        words = self.vocabulary
        return tuple(tuple(words[j] for j in row) for row in self.caption_ids.tolist())

    def inputs(self, preprocess: Preprocess | None = None) -> np.ndarray:
        """Model inputs, float32 NHWC: the pictures normalised by ``preprocess``.

        Parameters
        ----------
        preprocess : Preprocess, optional
            The model's own normalisation (a CLIP's mean and std); None uses
            the synthetic sets' ``(x / 255 - 0.5) / 0.25``.

        Returns
        -------
        numpy.ndarray
            (N, H, W, 3) float32.
        """
        chosen = preprocess_for(self.size) if preprocess is None else preprocess
        return np.asarray(chosen.normalise(self.images), dtype=np.float32)

    def subset(self, index: Any) -> CaptionedShapes:
        """The pictures at ``index`` (a slice, an index array or a boolean mask).

        Parameters
        ----------
        index : slice, array-like of int or bool
            Which pictures to keep.

        Returns
        -------
        CaptionedShapes
            The same shapes and colours vocabulary, fewer pictures.
        """
        return replace(
            self,
            images=self.images[index],
            kinds=self.kinds[index],
            colours=self.colours[index],
            masks=self.masks[index],
            boxes=self.boxes[index],
        )


def _names(value: Sequence[str], known: Sequence[str], name: str, minimum: int) -> tuple[str, ...]:
    if isinstance(value, str):
        raise bad_argument(name, "a sequence of names, not one str", value, where=_WHERE)
    names = tuple(str(v) for v in value)
    if len(names) < minimum or len(set(names)) != len(names) or set(names) - set(known):
        expected = f"{minimum}+ distinct names from {', '.join(known)}"
        raise bad_argument(name, expected, list(names), where=_WHERE)
    return names


def _place(
    rng: np.random.Generator, count: int, size: int, radius: tuple[float, float]
) -> list[tuple[float, float, float]]:
    """``count`` circles (cx, cy, r) inside the picture, a gap of size / 8 between any two."""
    gap, margin = size / 8.0, max(1.0, size / 32.0)
    while True:  # redraw the radii too when the picture is full: always ends, usually at once
        placed: list[tuple[float, float, float]] = []
        for _ in range(200):
            r = float(rng.uniform(*radius)) * size
            cx, cy = rng.uniform(r + margin, size - r - margin, 2)
            if all(math.hypot(cx - x, cy - y) >= r + q + gap for x, y, q in placed):
                placed.append((float(cx), float(cy), r))
                if len(placed) == count:
                    return placed


def make_captioned_shapes(
    n: int,
    *,
    size: int = 64,
    objects: int = 2,
    shapes: Sequence[str] = ("disc", "square", "triangle", "cross"),
    colours: Sequence[str] = tuple(COLOURS),
    noise: float = 0.02,
    clutter: int = 2,
    rotation: float = 15.0,
    seed: int = 0,
) -> CaptionedShapes:
    """``n`` pictures of ``objects`` solid coloured shapes each, every shape with its caption.

    Within a picture no two shapes share a kind or a colour, and a gap of at
    least ``size / 8`` separates them. The background is a pale, faintly
    tinted grey gradient with ``clutter`` small strokes and dots, so a colour
    word names a shape and not the background; ``noise`` is the std of
    Gaussian pixel noise as a fraction of 255. Shapes are tilted by up to
    ``rotation`` degrees.

    With few colours a model can learn one colour word as "none of the
    others" (its maps then light the background): the default uses all six
    colours of :data:`COLOURS`, so two shapes never tell the rest by absence.

    Parameters
    ----------
    n : int
        How many pictures.
    size : int
        Side of the square pictures (at least 32).
    objects : int
        Shapes per picture: 2 up to the number of shapes and of colours.
    shapes : sequence of str
        The kinds that may be drawn, names from ``SHAPES``.
    colours : sequence of str
        The colour words that may be used, keys of :data:`COLOURS` (all six by default).
    noise : float
        Std of the Gaussian pixel noise, as a fraction of 255.
    clutter : int
        Strokes and dots drawn on the background.
    rotation : float
        Largest tilt of a shape, in degrees.
    seed : int
        Everything is drawn from it.

    Returns
    -------
    CaptionedShapes
        The pictures with each shape's kind, colour, mask, box and caption.

    Raises
    ------
    InvalidInput
        An argument out of its range, or more ``objects`` than kinds or colours.
    """
    n = positive_int(n, "n", where=_WHERE)
    size = positive_int(size, "size", where=_WHERE, minimum=32)
    kinds_named = _names(shapes, SHAPES, "shapes", 2)
    colours_named = _names(colours, tuple(COLOURS), "colours", 2)
    count = positive_int(objects, "objects", where=_WHERE, minimum=2)
    limit = min(len(kinds_named), len(colours_named), 4)
    if count > limit:
        expected = f"2..{limit} (distinct kinds and colours, at most 4)"
        raise bad_argument("objects", expected, objects, where=_WHERE)
    noise = finite_float(noise, "noise", where=_WHERE, minimum=0.0)
    if noise > 1.0:
        raise bad_argument("noise", "a number in [0, 1]", noise, where=_WHERE)
    tilt = finite_float(rotation, "rotation", where=_WHERE, minimum=0.0)
    clutter = positive_int(clutter, "clutter", where=_WHERE, minimum=0)
    draw_seq, noise_seq = np.random.SeedSequence(seed).spawn(2)
    rng, rng_noise = np.random.default_rng(draw_seq), np.random.default_rng(noise_seq)
    hues = np.array([COLOURS[c] for c in colours_named])

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + np.float32(0.5)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    kinds = np.empty((n, count), dtype=np.int64)
    tints = np.empty((n, count), dtype=np.int64)
    masks = np.zeros((n, count, size, size), dtype=bool)
    boxes = np.empty((n, count, 4), dtype=np.int64)
    radius = (0.13, 0.19) if count == 2 else (0.1, 0.14)
    for i in range(n):
        img = background(rng, yy, xx, size, clutter)
        grey = img.mean(axis=2, keepdims=True)
        img = (img + grey) * 0.25 + 90.0  # pale, faintly tinted: colour words name shapes
        kinds[i] = rng.choice(len(kinds_named), count, replace=False)
        tints[i] = rng.choice(len(colours_named), count, replace=False)
        for k, (cx, cy, r) in enumerate(_place(rng, count, size, radius)):
            theta = math.radians(rng.uniform(-tilt, tilt))
            u = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)
            v = -(xx - cx) * math.sin(theta) + (yy - cy) * math.cos(theta)
            mask = shape_mask(kinds_named[kinds[i, k]], u, v, r)
            hue = (hues[tints[i, k]] + rng.uniform(-0.02, 0.02)) % 1.0
            img[mask] = hsv_to_rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0))
            masks[i, k] = mask
            ys, xs = np.nonzero(mask)
            boxes[i, k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        if noise > 0:
            grain = rng_noise.standard_normal(img.shape, dtype=np.float32)
            img = img + grain * np.float32(noise * 255.0)
        images[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return CaptionedShapes(
        images=images,
        kinds=kinds,
        colours=tints,
        masks=masks,
        boxes=boxes,
        shapes=kinds_named,
        colour_names=colours_named,
    )
