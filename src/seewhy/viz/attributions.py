"""Pixel attributions drawn so they can be seen: percentile clipping, signed colours.

A pixel attribution is heavy-tailed: a few pixels hold most of its mass, so
a min-max scale leaves almost everything black (0.3% of Integrated
Gradients' map on the cat photo above a quarter of the scale). As Captum's
``visualize_image_attr`` does, the scale instead ends at a high percentile
of ``|a|`` (:data:`DEFAULT_PERCENTILE`) and larger values saturate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._kit.checks import bad_argument
from ..errors import InvalidInput
from ..inputs import to_numpy
from .colormaps import colorize
from .values import as_map

if TYPE_CHECKING:
    from ..explanation import Explanation

__all__ = [
    "DEFAULT_PERCENTILE",
    "SIGNED_CMAP",
    "clip_percentile",
    "diverging",
    "drawn_map",
    "is_pixel_method",
    "signed_to_rgb",
    "unsigned_to_rgb",
]

#: Pixel attributions are drawn with the colour scale ending at this percentile of |a|.
DEFAULT_PERCENTILE = 99.0
#: Colormap of signed displays: negative blue, zero white, positive red.
SIGNED_CMAP = "bwr"
_EPS = 1e-12


def _check_percentile(percentile: object) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.floating)):
        raise bad_argument("percentile", "a number in (0, 100]", percentile)
    value = float(percentile)
    if not 0.0 < value <= 100.0:
        raise bad_argument("percentile", "a number in (0, 100]", percentile)
    return value


def _scale(magnitude: np.ndarray, percentile: float) -> float:
    """The value drawn at the top of the scale: the percentile, else the maximum."""
    top = float(np.percentile(magnitude, percentile))
    return top if top > _EPS else float(magnitude.max())


def clip_percentile(
    map_: np.ndarray, percentile: float = DEFAULT_PERCENTILE, *, signed: bool = False
) -> np.ndarray:
    """A map in [0, 1] for colouring, its scale ending at ``percentile`` of ``|map|``.

    Unsigned: ``min(|a| / p, 1)``. Signed: ``0.5 + 0.5 * clip(a / p, -1, 1)``,
    so zero is the middle of a diverging colormap. An all-zero map gives
    zeros (unsigned) or 0.5 (signed).

    Parameters
    ----------
    map_ : numpy.ndarray
        (H, W) values of any scale and sign; NaN and infinities count as 0.
    percentile : float
        The percentile of ``|map|`` drawn at the top of the scale (0-100).
    signed : bool
        Keep the sign, with zero at 0.5.

    Returns
    -------
    numpy.ndarray
        (H, W) float32 in [0, 1].
    """
    level = _check_percentile(percentile)
    values = np.nan_to_num(as_map(map_, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    magnitude = np.abs(values)
    top = _scale(magnitude, level)
    unit = values / top if top > _EPS else np.zeros_like(values)
    if signed:
        return (0.5 + 0.5 * np.clip(unit, -1.0, 1.0)).astype(np.float32)
    return np.minimum(np.abs(unit), 1.0).astype(np.float32)


def is_pixel_method(explanation: Explanation) -> bool:
    """True for the methods that attribute single pixels (their maps get percentile clipping).

    Parameters
    ----------
    explanation : Explanation
        The result to ask about.
    """
    return "attributions" in explanation.extras


def drawn_map(
    explanation: Explanation,
    i: int,
    *,
    signed: bool = False,
    percentile: float = DEFAULT_PERCENTILE,
) -> np.ndarray:
    """Image ``i``'s map as it is coloured, at the model's input size, in [0, 1].

    Pixel methods: their channel reduction (``layer_maps``, ``signed``: the
    channel sum of ``extras["attributions"]``) through :func:`clip_percentile`.
    Every other method: ``maps`` as they are (already [0, 1]); ``signed`` is
    then refused, since those maps carry no sign.

    Parameters
    ----------
    explanation : Explanation
        The result holding the map.
    i : int
        Index of the image.
    signed : bool
        Keep the attributions' sign (pixel methods only).
    percentile : float
        Where a pixel method's scale ends, as in :func:`clip_percentile`.

    Raises
    ------
    InvalidInput
        ``signed`` for a method whose maps carry no sign.
    """
    if not is_pixel_method(explanation):
        if signed:
            raise InvalidInput(
                f"signed: {explanation.method} maps carry no sign; signed display is for "
                "pixel attribution methods"
            )
        return np.asarray(explanation.maps[i], dtype=np.float32)
    if signed:
        attributions = np.asarray(explanation.extras["attributions"][i], dtype=np.float64)
        return clip_percentile(attributions.sum(axis=-1), percentile, signed=True)
    raw = np.asarray(explanation.layer_maps[i])
    if raw.shape != explanation.maps.shape[1:]:
        raw = explanation.maps[i]
    return clip_percentile(raw, percentile)


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

    Parameters
    ----------
    x : numpy.ndarray
        (H, W) or (H, W, 3) attribution.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) uint8.
    """
    values = _attribution(x, "x")
    centred = values - values.mean()
    scaled = centred / (centred.std() + 1e-5) * 0.1 + 0.5
    return _to_rgb_uint8(scaled)


def unsigned_to_rgb(x: np.ndarray, *, percentile: float = DEFAULT_PERCENTILE) -> np.ndarray:
    """Show attribution magnitude: ``|x|`` scaled so the given percentile is white.

    Using a high percentile rather than the maximum stops a few extreme
    pixels from turning everything else black. (H, W) gives grey, (H, W, 3)
    keeps per-channel colour.

    Parameters
    ----------
    x : numpy.ndarray
        (H, W) or (H, W, 3) attribution.
    percentile : float
        The percentile of ``|x|`` drawn white (0-100).

    Returns
    -------
    numpy.ndarray
        (H, W, 3) uint8.
    """
    magnitude = np.abs(_attribution(x, "x"))
    top = _scale(magnitude, _check_percentile(percentile))
    if top <= _EPS:
        return _to_rgb_uint8(np.zeros_like(magnitude))
    return _to_rgb_uint8(magnitude / top)


def diverging(
    map_: np.ndarray, cmap: str = SIGNED_CMAP, *, vmax: float | None = None
) -> np.ndarray:
    """Colour a signed (H, W) map with 0 at the colormap's centre.

    Values are scaled by ``vmax`` (default: the largest ``|value|``) to
    [-1, 1] and then to [0, 1], so with ``bwr`` negative evidence is blue,
    positive red and zero white. Pass one ``vmax`` to compare several maps.

    Parameters
    ----------
    map_ : numpy.ndarray
        (H, W) signed values.
    cmap : str
        A diverging colormap name.
    vmax : float, optional
        The ``|value|`` drawn at the colormap's ends; one value for several maps
        makes them comparable.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) uint8 RGB.
    """
    values = np.nan_to_num(as_map(map_, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if vmax is None:
        scale = float(np.abs(values).max())
    else:
        if isinstance(vmax, bool) or not np.isfinite(vmax) or vmax <= 0:
            raise InvalidInput(f"vmax: expected a positive number or None, got {vmax!r}")
        scale = float(vmax)
    unit = values / scale if scale > _EPS else np.zeros_like(values)
    return colorize(np.clip(unit, -1.0, 1.0) * 0.5 + 0.5, cmap)
