"""Text on pictures: a caption in a black box, sized to the picture, never wider than it.

A caption that does not fit on one line wraps onto more (at a smaller size
first, down to :data:`SMALLEST`), so on a small picture "golden retriever:
73.1%" still shows the class and its probability; "..." only ends a caption
longer than the top half of the picture holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

__all__ = ["SMALLEST", "Caption", "draw_label", "fit_text", "font", "layout_label"]

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

SMALLEST = 8  # px: the smallest size at which the bundled font stays readable


def font(size: int) -> Font:
    """Pillow's bundled font at ``size`` px (bitmap fallback without FreeType)."""
    return ImageFont.load_default(size=size)


def fit_text(draw: ImageDraw.ImageDraw, text: str, face: Font, max_width: float) -> str:
    """Shorten ``text`` with '...' until it fits ``max_width`` pixels."""
    if draw.textlength(text, font=face) <= max_width:
        return text
    for end in range(len(text) - 1, 0, -1):
        candidate = text[:end].rstrip() + "..."
        if draw.textlength(candidate, font=face) <= max_width:
            return candidate
    return "..."


@dataclass(frozen=True)
class Caption:
    """How a caption is drawn: its size, margins (px) and lines, top to bottom."""

    size: int
    pad: int
    margin: int
    lines: tuple[str, ...]


def _gap(size: int) -> int:
    """Pixels between two lines of text of ``size`` px."""
    return max(1, size // 5)


def _spacing(size: int) -> tuple[int, int]:
    """Padding inside the box and margin outside it, for text of ``size`` px."""
    return max(2, size // 4), max(2, size // 3)


def _wrap(
    draw: ImageDraw.ImageDraw, words: list[str], face: Font, width: float
) -> tuple[list[str], bool]:
    """Words joined into lines no wider than ``width``; True when a word had to be cut."""
    lines: list[str] = []
    cut = False
    for word in words:
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and draw.textlength(joined, font=face) <= width:
            lines[-1] = joined
        elif draw.textlength(word, font=face) <= width:
            lines.append(word)
        else:  # one word wider than the picture: as many letters as fit
            lines.append(fit_text(draw, word, face, width))
            cut = True
    return lines, cut


def _line_height(draw: ImageDraw.ImageDraw, face: Font) -> int:
    top, bottom = draw.textbbox((0, 0), "Ag", font=face)[1::2]
    return int(bottom - top)


def layout_label(picture: Image.Image, label: str, size: int | None = None) -> Caption:
    """The caption for ``label`` on ``picture``: one line if it fits, else wrapped.

    Tries ``size`` (default 1/16 of the picture's short side, at least 10 px)
    on one line, then wrapped, then each smaller size down to
    :data:`SMALLEST`; the lines may take the top half of the picture. Only
    when even that is too little does the last line end in "...".
    """
    words = " ".join(label.split()).split(" ")
    draw = ImageDraw.Draw(picture)
    start = size or max(10, round(min(picture.width, picture.height) / 16))
    for s in range(start, min(start, SMALLEST) - 1, -1):
        pad, margin = _spacing(s)
        face = font(s)
        width = picture.width - 2 * (margin + pad)
        gap = _gap(s)
        rows = (picture.height // 2 - margin - 2 * pad + gap) // (_line_height(draw, face) + gap)
        lines, cut = _wrap(draw, words, face, width)
        if len(lines) <= max(1, rows) and not cut:
            return Caption(s, pad, margin, tuple(lines))
    return Caption(s, pad, margin, _shortened(draw, " ".join(words), face, width, max(1, rows)))


def _shortened(
    draw: ImageDraw.ImageDraw, text: str, face: Font, width: float, rows: int
) -> tuple[str, ...]:
    """``text`` in ``rows`` lines, its name shortened with "..." and its score (after ": ") kept."""
    name, colon, score = text.rpartition(": ")
    if not colon:
        name, score = text, ""
    while name:
        name = name[:-1].rstrip()
        lines, cut = _wrap(draw, f"{name}...{colon}{score}".split(" "), face, width)
        if len(lines) <= rows and not cut:
            return tuple(lines)
    return (fit_text(draw, score or text, face, width),)  # no room for a name: the score


def draw_label(picture: Image.Image, label: str, *, size: int | None = None) -> None:
    """White text on a black box fitted to it, at the top-left, scaled to the picture."""
    if not label.split():
        return
    caption = layout_label(picture, label, size)
    draw = ImageDraw.Draw(picture)
    face = font(caption.size)
    pad, margin = caption.pad, caption.margin
    step = _line_height(draw, face) + _gap(caption.size)
    width = max(draw.textlength(line, font=face) for line in caption.lines)
    height = step * (len(caption.lines) - 1) + _line_height(draw, face)
    box = (margin, margin, margin + round(width) + 2 * pad, margin + height + 2 * pad)
    draw.rectangle(box, fill=(0, 0, 0))
    top = draw.textbbox((0, 0), "Ag", font=face)[1]
    for k, line in enumerate(caption.lines):
        left = draw.textbbox((0, 0), line, font=face)[0]
        xy = (margin + pad - left, margin + pad - top + k * step)
        draw.text(xy, line, font=face, fill=(255, 255, 255))
