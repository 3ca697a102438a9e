"""One picture comparing methods: images down, methods across, every cell labelled.

Explanations of the same photos by several methods (or several batches of
one method, as the command line makes them) become one grid: a first column
with each photo and its name, then one column per method with the method's
overlay (its LIME view for LIME) and the explained class on each cell.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from .._kit.checks import bad_argument, positive_int
from .attributions import DEFAULT_PERCENTILE, is_pixel_method
from .labels import draw_label, fit_text, font
from .panels import GAP, explanation_parts

if TYPE_CHECKING:
    from ..explanation import Explanation

__all__ = ["grid"]

_MISSING = (230, 230, 230)  # a cell whose image failed for that method


def _short(source: str) -> str:
    return os.path.basename(source.rstrip("/\\")) or source


def _column_of(ex: Explanation, explanations: Sequence[Explanation]) -> str:
    """The column's name: the method, with its layer when one method comes with two layers."""
    plain = [e for e in explanations if e.method == ex.method]
    layered = len({e.layer for e in plain}) > 1
    return f"{ex.method} ({ex.layer})" if layered and ex.layer else ex.method


def _scaled(picture: np.ndarray, height: int) -> Image.Image:
    im = Image.fromarray(picture)
    width = max(1, round(picture.shape[1] * height / picture.shape[0]))
    return im.resize((width, height), Image.Resampling.LANCZOS)


def grid(
    explanations: Sequence[Explanation],
    *,
    cell: int = 224,
    cmap: str | None = None,
    alpha: float = 0.5,
    at: str = "original",
    signed: bool = False,
    percentile: float = DEFAULT_PERCENTILE,
    lime: str = "superpixels",
) -> Image.Image:
    """Images x methods in one labelled picture (rows: photos; columns: the photo, then methods).

    Each explanation is one method on some photos; rows are the photos in
    the order first met (a photo given twice is two rows), columns the
    methods. Every cell is ``cell`` px high at the photo's aspect; cells a
    method could not explain stay grey. Options are those of
    :meth:`seewhy.Explanation.panel`; ``signed`` applies to the pixel methods.

    Parameters
    ----------
    explanations : sequence of Explanation
        One per method, on the same or overlapping photos.
    cell : int
        Height of each cell in pixels (at least 16).
    cmap, alpha, at, percentile, lime
        As :meth:`seewhy.Explanation.panel` takes them.
    signed : bool
        Draw pixel methods' attributions with their sign.

    Returns
    -------
    PIL.Image.Image
    """
    from ..explanation import Explanation

    if isinstance(explanations, Explanation):
        explanations = [explanations]
    if not isinstance(explanations, Sequence) or not explanations:
        raise bad_argument("explanations", "a non-empty list of Explanations", explanations)
    for ex in explanations:
        if not isinstance(ex, Explanation):
            raise bad_argument("explanations", "a list of Explanations", type(ex).__name__)
    height = positive_int(cell, "cell", minimum=16)
    columns = list(dict.fromkeys(_column_of(ex, explanations) for ex in explanations))
    rows: list[tuple[str, int]] = []
    cells: dict[tuple[tuple[str, int], str], tuple[Explanation, int]] = {}
    for ex in explanations:
        seen: dict[str, int] = {}
        for i, source in enumerate(ex.sources):
            key = (source, seen.get(source, 0))
            seen[source] = key[1] + 1
            if key not in rows:
                rows.append(key)
            cells[(key, _column_of(ex, explanations))] = (ex, i)
    drawn: dict[tuple[tuple[str, int], str], Image.Image] = {}
    photos: dict[tuple[str, int], Image.Image] = {}
    for (row, column), (ex, i) in cells.items():
        picture, _, third = explanation_parts(
            ex,
            i,
            cmap=cmap,
            alpha=alpha,
            at=at,
            signed=signed and is_pixel_method(ex),
            percentile=percentile,
            lime=lime,
        )
        shown = _scaled(third, height)
        draw_label(shown, ex.label(i))
        drawn[(row, column)] = shown
        photos.setdefault(row, _scaled(picture, height))
    width = max(im.width for im in photos.values())
    header = max(14, height // 10)
    face = font(max(10, header - 4))
    total_w = (len(columns) + 1) * (width + GAP) - GAP
    total_h = header + GAP + len(rows) * (height + GAP) - GAP
    canvas = Image.new("RGB", (total_w, total_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(["image", *columns]):
        text = fit_text(draw, name, face, width - 4)
        x = c * (width + GAP) + (width - draw.textlength(text, font=face)) / 2
        draw.text((x, 1), text, font=face, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        y = header + GAP + r * (height + GAP)
        photo = photos[row].copy()
        draw_label(photo, _short(row[0]))
        canvas.paste(photo, ((width - photo.width) // 2, y))
        for c, name in enumerate(columns, start=1):
            x = c * (width + GAP)
            part = drawn.get((row, name))
            if part is None:
                canvas.paste(Image.new("RGB", (width, height), _MISSING), (x, y))
            else:
                canvas.paste(part, (x + (width - part.width) // 2, y))
    return canvas
