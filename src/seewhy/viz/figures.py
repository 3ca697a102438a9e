"""Matplotlib figures of explanations, one row per image (for notebooks and papers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import InvalidInput
from ..inputs import load_image, to_numpy
from .colormaps import colorize
from .overlays import overlay
from .values import as_map, resize_map

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure"]


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

    Parameters
    ----------
    images : sequence or array
        The pictures, anything :func:`seewhy.inputs.load_image` reads, or a batch array.
    maps : sequence or array
        One (h, w) map per image, values in [0, 1]; resized to its picture.
    labels : sequence of str, optional
        A title per row.
    cmap : str
        A matplotlib colormap name, ``"cv2:jet"`` or ``"cv2:viridis"``.
    alpha : float
        Weight of the picture in the overlay.

    Returns
    -------
    matplotlib.figure.Figure
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
        values = resize_map(as_map(heat_map, "maps"), rgb.shape[:2])
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
