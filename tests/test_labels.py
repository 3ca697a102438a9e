"""Captions on small pictures: the class and its probability are shown whole, not cut off.

The seed chapter's pictures are 64 px wide; a caption such as "golden retriever:
73.1%" used to end in "..." there. Each test reads what is laid out (the lines)
and what is drawn (the black box's pixels).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from seewhy.viz.labels import SMALLEST, draw_label, font, layout_label


def _box(picture: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1) of the caption's black box on a white picture."""
    dark = np.asarray(picture).max(axis=2) < 128
    rows, cols = np.nonzero(dark)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


@pytest.mark.parametrize("width", [64, 96, 224])
@pytest.mark.parametrize("text", ["dog: 73.1%", "golden retriever: 73.1%", "cat: 0.4%"])
def test_a_caption_is_shown_whole_inside_the_picture(width: int, text: str) -> None:
    picture = Image.new("RGB", (width, width), "white")
    caption = layout_label(picture, text)
    assert " ".join(caption.lines) == text  # every word, no "..."
    assert caption.size >= SMALLEST
    draw = ImageDraw.Draw(picture)
    room = width - 2 * (caption.margin + caption.pad)
    assert all(draw.textlength(line, font=font(caption.size)) <= room for line in caption.lines)
    draw_label(picture, text)
    x0, y0, x1, y1 = _box(picture)
    assert 0 < x0 and 0 < y0 and x1 < width and y1 <= width // 2 + 1  # inside, top half


def test_a_caption_that_fits_stays_on_one_line_at_its_size() -> None:
    caption = layout_label(Image.new("RGB", (224, 224)), "golden retriever: 73.1%")
    assert caption.lines == ("golden retriever: 73.1%",) and caption.size == 14


def test_a_caption_too_long_for_the_picture_keeps_its_score() -> None:
    for text, width in (
        ("a class name far too long to fit on so small a picture at any size: 3.2%", 64),
        ("golden retriever: 3.2%", 48),
    ):
        caption = layout_label(Image.new("RGB", (width, width)), text)
        shown = " ".join(caption.lines)
        assert shown != text and "..." in shown and shown.endswith(": 3.2%")
    tiny = layout_label(Image.new("RGB", (32, 32)), "golden retriever: 73.1%")
    assert tiny.lines == ("73.1%",)  # no room for a name: the probability
