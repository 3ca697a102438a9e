"""Blending a coloured map over a picture, optionally only where the map is defined."""

from __future__ import annotations

import numpy as np

from ..inputs import load_image
from .colormaps import colorize
from .values import as_map, check_alpha, resize_map

__all__ = ["blend", "overlay"]


def blend(
    rgb: np.ndarray,
    heat: np.ndarray,
    alpha: float,
    inside: np.ndarray | None = None,
) -> np.ndarray:
    """``alpha * rgb + (1 - alpha) * heat`` as uint8; outside ``inside`` the picture itself."""
    weight = np.float32(alpha)
    mixed = weight * rgb.astype(np.float32) + (np.float32(1.0) - weight) * heat.astype(np.float32)
    out = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    if inside is not None:
        out = np.where(inside[:, :, None], out, rgb)
    return out


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

    Parameters
    ----------
    image : object
        The picture: a path, a PIL image, a uint8 array.
    map_ : numpy.ndarray
        (h, w) values in [0, 1].
    cmap : str
        A matplotlib colormap name, ``"cv2:jet"`` or ``"cv2:viridis"``.
    alpha : float
        Weight of the picture, in [0, 1].
    """
    weight = check_alpha(alpha)
    rgb = load_image(image)
    values = resize_map(as_map(map_), rgb.shape[:2])
    return blend(rgb, colorize(values, cmap), weight)
