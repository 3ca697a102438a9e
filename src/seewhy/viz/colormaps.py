"""Colormaps as 256-entry uint8 tables: any matplotlib name, and OpenCV's JET and VIRIDIS.

OpenCV's ``COLORMAP_JET`` differs from matplotlib's ``jet`` by up to 34/255,
so code compared against OpenCV pictures needs OpenCV's own table. The
``"cv2:jet"`` and ``"cv2:viridis"`` tables are computed here, without
OpenCV, from their definitions: the jet ramps (each channel
``clip(1.5 - |4x - c|, 0, 1)``, c = 3, 2, 1 for red, green, blue) and the
viridis colours of van der Walt and Smith (the data matplotlib ships),
resampled to 256 levels and scaled to bytes in float32 as OpenCV's
``applyColorMap`` does, which decides the half-level ties.
"""

from __future__ import annotations

import difflib
import functools

import numpy as np

from .._kit.checks import bad_argument
from ..errors import InvalidInput
from .values import as_map

__all__ = ["OPENCV_COLORMAPS", "colorize", "colormap_table"]

LEVELS = 256
_OPENCV = "cv2:"
#: The OpenCV colormaps seewhy reproduces exactly, by their ``cmap`` names.
OPENCV_COLORMAPS = ("cv2:jet", "cv2:viridis")


def _jet_definition(x: np.ndarray) -> np.ndarray:
    """The jet ramps at positions ``x`` in [0, 1], (len(x), 3) float64."""
    centres = np.array([3.0, 2.0, 1.0])
    return np.clip(1.5 - np.abs(4.0 * x[:, None] - centres[None, :]), 0.0, 1.0)


def _opencv_resample(values: np.ndarray) -> np.ndarray:
    """Values at 256 float32 stops, resampled onto the same stops as OpenCV does.

    OpenCV interpolates its base table at ``linspace(0, 1, 256)`` with a
    binary search that lands every stop on the segment ending there, so each
    level is ``y[k-1] + (x[k] - x[k-1]) * (y[k] - y[k-1]) / (x[k] - x[k-1])``
    in float32: not always ``y[k]`` to the last bit, which picks the rounding
    of a half level.
    """
    f32 = np.float32
    step = f32(1.0) / f32(LEVELS - 1)
    stops = np.arange(LEVELS, dtype=np.float32) * step
    y = values.astype(np.float32)
    out = y.copy()
    dx = (stops[1:] - stops[:-1])[:, None]
    out[1:] = y[:-1] + (dx * (y[1:] - y[:-1])) / dx
    return np.clip(np.rint(out * f32(255.0)), 0, 255).astype(np.uint8)


def _opencv_table(name: str) -> np.ndarray:
    if name == "cv2:jet":
        base = _jet_definition(np.arange(LEVELS, dtype=np.float64) / (LEVELS - 1))
    elif name == "cv2:viridis":
        import matplotlib

        listed = matplotlib.colormaps["viridis"]  # its 256 published colours, each once
        base = np.asarray(listed(np.linspace(0.0, 1.0, LEVELS)), dtype=np.float64)[:, :3]
    else:
        near = difflib.get_close_matches(name, OPENCV_COLORMAPS, n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise InvalidInput(
            f"cmap: expected one of {', '.join(OPENCV_COLORMAPS)} or a matplotlib name, "
            f"got {name!r}{hint}"
        )
    return _opencv_resample(base)


def _matplotlib_table(cmap: str) -> np.ndarray:
    import matplotlib

    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        known = sorted(matplotlib.colormaps)
        near = difflib.get_close_matches(cmap, [*known, *OPENCV_COLORMAPS], n=3, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(repr(n) for n in near)}?"
            if near
            else "expected a matplotlib colormap name such as 'viridis', 'jet' or 'inferno', "
            "or 'cv2:jet' / 'cv2:viridis'"
        )
        raise InvalidInput(f"cmap: unknown colormap {cmap!r}; {hint}") from None
    rgba = np.asarray(colormap(np.linspace(0.0, 1.0, LEVELS), bytes=True), dtype=np.uint8)
    return rgba[:, :3]


@functools.lru_cache(maxsize=64)
def _table(cmap: str) -> np.ndarray:
    table = _opencv_table(cmap) if cmap.startswith(_OPENCV) else _matplotlib_table(cmap)
    lut = np.ascontiguousarray(table, dtype=np.uint8)
    lut.setflags(write=False)
    return lut


def check_cmap(cmap: object) -> str:
    """A colormap name (its table is checked when first used)."""
    if not isinstance(cmap, str) or not cmap:
        raise bad_argument("cmap", "a matplotlib colormap name or 'cv2:jet' / 'cv2:viridis'", cmap)
    return cmap


def colormap_table(cmap: str = "viridis") -> np.ndarray:
    """The colormap as a read-only (256, 3) uint8 RGB table, cached per name.

    Matplotlib names give ``cmap(linspace(0, 1, 256))``; ``"cv2:jet"`` and
    ``"cv2:viridis"`` give OpenCV's ``COLORMAP_JET`` / ``COLORMAP_VIRIDIS``
    exactly (as RGB; OpenCV returns BGR).

    Parameters
    ----------
    cmap : str
        A matplotlib colormap name, ``"cv2:jet"`` or ``"cv2:viridis"``.
    """
    return _table(check_cmap(cmap))


def colorize(map_: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """Colour a map with values in [0, 1] as uint8 RGB (H, W, 3).

    Values are clipped to [0, 1] and NaN counts as 0, so a partly broken map
    still renders. Level ``k`` is ``floor(256 x)`` (capped at 255): for a
    uint8 picture ``u / 255`` that is level ``u``, as OpenCV's
    ``applyColorMap`` indexes.

    Parameters
    ----------
    map_ : numpy.ndarray
        (H, W) values in [0, 1].
    cmap : str
        A matplotlib colormap name, ``"cv2:jet"`` or ``"cv2:viridis"``.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) uint8 RGB.
    """
    lut = colormap_table(cmap)
    values = as_map(map_) * np.float32(LEVELS)  # NaN stays NaN, +-inf stay infinite
    index = np.nan_to_num(values, nan=0.0, posinf=LEVELS - 1, neginf=0.0)
    index = np.clip(index, 0, LEVELS - 1).astype(np.intp)
    colours: np.ndarray = lut[index]
    return colours
