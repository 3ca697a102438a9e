"""Text on pictures: a caption in a black box, sized to the picture, never wider than it."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

__all__ = ["draw_label", "fit_text", "font"]

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


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


def draw_label(picture: Image.Image, label: str, *, size: int | None = None) -> None:
    """White text on a black box fitted to it, at the top-left, scaled to the picture."""
    text = " ".join(label.split())
    if not text:
        return
    short = min(picture.width, picture.height)
    size = size or max(10, round(short / 16))
    pad = max(2, size // 4)
    margin = max(2, size // 3)
    draw = ImageDraw.Draw(picture)
    face = font(size)
    text = fit_text(draw, text, face, picture.width - 2 * (margin + pad))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    box = (margin, margin, margin + (right - left) + 2 * pad, margin + (bottom - top) + 2 * pad)
    draw.rectangle(box, fill=(0, 0, 0))
    draw.text((margin + pad - left, margin + pad - top), text, font=face, fill=(255, 255, 255))
