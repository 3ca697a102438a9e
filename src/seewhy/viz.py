"""Pictures of explanations: coloured heatmaps, overlays and side-by-side panels.

The look follows the classic Grad-CAM tutorials: the map is coloured with a
matplotlib colormap (viridis by default) and blended with the photo as
``alpha * image + (1 - alpha) * heatmap``; a panel shows original | heatmap |
overlay with the predicted label in a black box. Matplotlib is imported only
inside the functions that need it, so ``import seewhy`` stays fast.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import InvalidInput
from .inputs import load_image, to_numpy

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "colorize",
    "diverging",
    "figure",
    "overlay",
    "panel",
    "signed_to_rgb",
    "unsigned_to_rgb",
]

_LUT_SIZE = 256
_GAP = 4  # white pixels between the parts of a panel
_EPS = 1e-12


# --------------------------------------------------------------------------- colormaps


@functools.lru_cache(maxsize=64)
def _lut(cmap: str) -> np.ndarray:
    """The colormap sampled at 256 points as uint8 RGB, cached per name."""
    import matplotlib

    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        known = sorted(matplotlib.colormaps)
        near = difflib.get_close_matches(cmap, known, n=3, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(repr(n) for n in near)}?"
            if near
            else "expected a matplotlib colormap name such as 'viridis', 'jet' or 'inferno'"
        )
        raise InvalidInput(f"cmap: unknown colormap {cmap!r}; {hint}") from None
    rgba = np.asarray(colormap(np.linspace(0.0, 1.0, _LUT_SIZE), bytes=True), dtype=np.uint8)
    lut = np.ascontiguousarray(rgba[:, :3])
    lut.setflags(write=False)
    return lut


def _check_cmap(cmap: object) -> str:
    if not isinstance(cmap, str) or not cmap:
        raise InvalidInput(f"cmap: expected a matplotlib colormap name, got {cmap!r}")
    return cmap


def _as_map(map_: object, name: str = "map_", dtype: type = np.float32) -> np.ndarray:
    """A 2-D float map; (H, W, 1) and (1, H, W) are squeezed, NaN stays NaN.

    float32 is plenty for 256 colour levels and halves the work of drawing;
    signed maps of any magnitude ask for float64 before they are scaled.
    """
    arr = to_numpy(map_, name=name)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:2])
    if arr.ndim != 2:
        raise InvalidInput(f"{name}: expected a 2-D map of shape (H, W), got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidInput(f"{name}: map is empty (shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise InvalidInput(f"{name}: expected a real-valued map, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):  # huge values become inf, which the callers clip
        return arr.astype(dtype, copy=False)


def colorize(map_: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """Colour a map with values in [0, 1] as uint8 RGB (H, W, 3).

    Values are clipped to [0, 1] and NaN counts as 0, so a partly broken map
    still renders. Colours follow matplotlib's ``cmap(x)`` (256 levels); the
    lookup table is cached per name and applied by indexing.
    """
    lut = _lut(_check_cmap(cmap))
    values = _as_map(map_) * np.float32(_LUT_SIZE)  # NaN stays NaN, +-inf stay infinite
    index = np.nan_to_num(values, nan=0.0, posinf=_LUT_SIZE - 1, neginf=0.0)
    index = np.clip(index, 0, _LUT_SIZE - 1).astype(np.intp)
    colours: np.ndarray = lut[index]
    return colours


def _resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (H, W); NaN is treated as 0 first."""
    if values.shape == size:
        return values
    clean = np.nan_to_num(values, nan=0.0).astype(np.float32)
    im = Image.fromarray(clean)  # mode "F"
    resized = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def _check_alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)):
        raise InvalidInput(f"alpha: expected a number in [0, 1], got {alpha!r}")
    value = float(alpha)
    if not 0.0 <= value <= 1.0:
        raise InvalidInput(f"alpha: expected a number in [0, 1], got {value}")
    return value


def overlay(
    image: object,
    map_: np.ndarray,
    *,
    cmap: str = "viridis",
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend the coloured map over the picture: ``alpha * image + (1 - alpha) * heatmap``.

    ``alpha=1`` shows only the picture, ``alpha=0`` only the heatmap. The map
    is resized bilinearly to the picture when their sizes differ (CAMs come
    at the layer's resolution). ``image`` is anything :func:`seewhy.inputs.load_image`
    accepts; the result is uint8 (H, W, 3).
    """
    weight = _check_alpha(alpha)
    rgb = load_image(image)
    values = _resize_map(_as_map(map_), rgb.shape[:2])
    heat = colorize(values, cmap).astype(np.float32)
    blended = np.float32(weight) * rgb.astype(np.float32) + np.float32(1.0 - weight) * heat
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- attributions


def _attribution(x: object, name: str) -> np.ndarray:
    arr = to_numpy(x, name=name)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        raise InvalidInput(f"{name}: expected a map of shape (H, W) or (H, W, 3), got {arr.shape}")
    if arr.size == 0:
        raise InvalidInput(f"{name}: map is empty (shape {arr.shape})")
    values = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return values


def _to_rgb_uint8(unit: np.ndarray) -> np.ndarray:
    """Values in [0, 1], (H, W) or (H, W, 3) -> uint8 (H, W, 3)."""
    out = np.clip(np.rint(np.clip(unit, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(out[:, :, None], 3, axis=2) if out.ndim == 2 else out


def signed_to_rgb(x: np.ndarray) -> np.ndarray:
    """Show a signed pixel attribution (e.g. Guided Backprop) as in the tutorials.

    The tutorials' ``deprocess_image``: subtract the mean, scale so one
    standard deviation is 0.1, shift to 0.5 and clip, so the typical value is
    mid-grey and strong positive/negative evidence goes bright/dark. Works on
    (H, W) (grey result) and (H, W, 3) (per-channel colour) maps.
    """
    values = _attribution(x, "x")
    centred = values - values.mean()
    scaled = centred / (centred.std() + 1e-5) * 0.1 + 0.5
    return _to_rgb_uint8(scaled)


def unsigned_to_rgb(x: np.ndarray, *, percentile: float = 99.0) -> np.ndarray:
    """Show attribution magnitude: ``|x|`` scaled so the given percentile is white.

    Using a high percentile rather than the maximum stops a few extreme
    pixels from turning everything else black. (H, W) gives grey, (H, W, 3)
    keeps per-channel colour.
    """
    if not 0.0 < percentile <= 100.0:
        raise InvalidInput(f"percentile: expected a number in (0, 100], got {percentile}")
    magnitude = np.abs(_attribution(x, "x"))
    top = float(np.percentile(magnitude, percentile))
    if top <= _EPS:
        top = float(magnitude.max())
    if top <= _EPS:
        return _to_rgb_uint8(np.zeros_like(magnitude))
    return _to_rgb_uint8(magnitude / top)


def diverging(map_: np.ndarray, cmap: str = "bwr", *, vmax: float | None = None) -> np.ndarray:
    """Colour a signed (H, W) map with 0 at the colormap's centre.

    Values are scaled by ``vmax`` (default: the largest ``|value|``) to
    [-1, 1] and then to [0, 1], so with ``bwr`` negative evidence is blue,
    positive red and zero white. Pass one ``vmax`` to compare several maps.
    """
    values = np.nan_to_num(_as_map(map_, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if vmax is None:
        scale = float(np.abs(values).max())
    else:
        if isinstance(vmax, bool) or not np.isfinite(vmax) or vmax <= 0:
            raise InvalidInput(f"vmax: expected a positive number or None, got {vmax!r}")
        scale = float(vmax)
    unit = values / scale if scale > _EPS else np.zeros_like(values)
    return colorize(np.clip(unit, -1.0, 1.0) * 0.5 + 0.5, cmap)


# --------------------------------------------------------------------------- panels


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px (bitmap fallback without FreeType)."""
    return ImageFont.load_default(size=size)


def _fit_text(
    draw: ImageDraw.ImageDraw,
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    max_width: float,
) -> str:
    """Shorten ``text`` with '...' until it fits ``max_width`` pixels."""
    if draw.textlength(text, font=font) <= max_width:
        return text
    for end in range(len(text) - 1, 0, -1):
        candidate = text[:end].rstrip() + "..."
        if draw.textlength(candidate, font=font) <= max_width:
            return candidate
    return "..."


def _draw_label(picture: Image.Image, label: str) -> None:
    """White text on a black box fitted to it, at the top-left, scaled to the picture."""
    text = " ".join(label.split())
    if not text:
        return
    short = min(picture.width, picture.height)
    size = max(10, round(short / 16))
    pad = max(2, size // 4)
    margin = max(2, size // 3)
    draw = ImageDraw.Draw(picture)
    font = _font(size)
    text = _fit_text(draw, text, font, picture.width - 2 * (margin + pad))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    box = (margin, margin, margin + (right - left) + 2 * pad, margin + (bottom - top) + 2 * pad)
    draw.rectangle(box, fill=(0, 0, 0))
    draw.text((margin + pad - left, margin + pad - top), text, font=font, fill=(255, 255, 255))


def panel(
    image: object,
    map_: np.ndarray,
    *,
    label: str | None = None,
    cmap: str = "viridis",
    alpha: float = 0.5,
    layout: str = "horizontal",
) -> Image.Image:
    """Original | heatmap | overlay side by side, the label drawn on the overlay.

    The parts are separated by 4 white pixels; a horizontal panel of an
    (H, W) picture is (3W + 8) x H. The label (e.g. ``"tabby: 87.3%"``) is
    white on a black box whose text size follows the picture's size.
    """
    if layout not in ("horizontal", "vertical"):
        raise InvalidInput(f"layout: expected 'horizontal' or 'vertical', got {layout!r}")
    if label is not None and not isinstance(label, str):
        raise InvalidInput(f"label: expected a string or None, got {type(label).__name__}")
    rgb = load_image(image)
    values = _resize_map(_as_map(map_), rgb.shape[:2])
    heat = colorize(values, cmap)
    blended = Image.fromarray(overlay(rgb, values, cmap=cmap, alpha=alpha))
    if label:
        _draw_label(blended, label)
    parts = [Image.fromarray(rgb), Image.fromarray(heat), blended]
    h, w = rgb.shape[:2]
    if layout == "horizontal":
        canvas = Image.new("RGB", (3 * w + 2 * _GAP, h), (255, 255, 255))
        for i, part in enumerate(parts):
            canvas.paste(part, (i * (w + _GAP), 0))
    else:
        canvas = Image.new("RGB", (w, 3 * h + 2 * _GAP), (255, 255, 255))
        for i, part in enumerate(parts):
            canvas.paste(part, (0, i * (h + _GAP)))
    return canvas


def _as_list(items: object, name: str) -> list[object]:
    """A batch array (N, ...) or a sequence -> list of single items."""
    if isinstance(items, (str, bytes, Image.Image)):
        return [items]
    if isinstance(items, np.ndarray) or hasattr(items, "__array__") or hasattr(items, "detach"):
        return list(to_numpy(items, name=name))
    if isinstance(items, Sequence):
        return list(items)
    raise InvalidInput(f"{name}: expected a sequence or a batch array, got {type(items).__name__}")


def figure(
    images: object,
    maps: object,
    labels: Sequence[str] | None = None,
    cmap: str = "viridis",
    alpha: float = 0.5,
) -> Figure:
    """A matplotlib Figure, one row per image: original, heatmap, overlay.

    Built on :class:`matplotlib.figure.Figure` (not pyplot), so it works on
    any backend, headless included; save it with ``fig.savefig(path)``.
    """
    from matplotlib.figure import Figure

    pictures = _as_list(images, "images")
    heatmaps = _as_list(maps, "maps")
    if len(pictures) != len(heatmaps):
        raise InvalidInput(
            f"maps: expected one map per image ({len(pictures)}), got {len(heatmaps)}"
        )
    if not pictures:
        raise InvalidInput("images: expected at least one image, got none")
    if labels is not None and len(labels) != len(pictures):
        raise InvalidInput(
            f"labels: expected one label per image ({len(pictures)}), got {len(labels)}"
        )
    rows = len(pictures)
    decoded = [load_image(picture) for picture in pictures]
    aspect = max(rgb.shape[0] / rgb.shape[1] for rgb in decoded)
    fig = Figure(figsize=(9.0, rows * (3.0 * aspect + 0.4)), layout="constrained")
    axes = fig.subplots(rows, 3, squeeze=False)
    for r, (rgb, heat_map) in enumerate(zip(decoded, heatmaps, strict=True)):
        values = _resize_map(_as_map(heat_map, "maps"), rgb.shape[:2])
        row = axes[r]
        row[0].imshow(rgb)
        row[0].set_title(labels[r] if labels is not None else "image")
        row[1].imshow(colorize(values, cmap))
        row[1].set_title("heatmap")
        row[2].imshow(overlay(rgb, values, cmap=cmap, alpha=alpha))
        row[2].set_title("overlay")
        for ax in row:
            ax.set_axis_off()
    return fig
