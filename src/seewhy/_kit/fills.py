"""What a hidden pixel is replaced with: one meaning for methods and metrics alike.

Occlusion, RISE, Score-CAM, LIME and Integrated Gradients hide pixels to see
what the model misses; deletion, insertion and ROAD hide them to measure a
map. Both ask the same question, so both read the same words here:

- a number: that value in model-input units (``"zeros"`` is 0, the training
  mean under the usual normalisation);
- ``"black"``, ``"white"``, ``"gray"``/``"grey"`` or an RGB triple 0..255: a
  colour put through the model's preprocess (on inputs that are not RGB,
  ``"black"`` is the zero input and other colours are refused);
- ``"mean"``: each image's mean colour;
- ``"blur"``: a Gaussian blur of the image (see below);
- ``"noise"``/``"uniform"``: uniform random pixels drawn from ``seed`` (each
  image from its own stream of it, so a batch fills as its images would alone);
- an array broadcastable to the inputs.

Words are case-insensitive.

**One blur.** ``blur`` is a Gaussian over height and width only, with
*reflecting* borders and a kernel cut at 3 sigma; its default sigma is
5 px at 224 px, scaled with the shorter side (``5 * min(h, w) / 224``), the
blur the RISE paper's insertion metric uses. It removes shapes but keeps
colours: a reflected border repeats the picture's own colours, where
"nearest" borders smear the edge row inward, and a strong blur (the old
methods' ``max(h, w) / 16``) drifts towards one flat mean colour, which is
the ``"mean"`` fill's job, not the blur's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..preprocess import Preprocess
from .checks import bad_argument, finite_float

__all__ = ["FILLS", "blur", "check_fill", "chosen_blur_sigma", "default_blur_sigma", "fill_values"]

FILLS: tuple[str, ...] = ("zeros", "black", "white", "gray", "mean", "blur", "noise")

_GRAYS = {"black": 0.0, "white": 255.0, "gray": 128.0, "grey": 128.0}
_ALIASES = {"zero": "zeros", "uniform": "noise"}
_EXPECTED = f"a number, an RGB triple, an array or one of {', '.join(FILLS)}"


def default_blur_sigma(height: int, width: int) -> float:
    """5 px at 224 px, scaled with the shorter side: a blur that leaves colours, not objects."""
    return 5.0 * min(height, width) / 224.0


def chosen_blur_sigma(fill: Any, given: float | None, height: int, width: int) -> dict[str, float]:
    """``{"blur_sigma": ...}`` when a ``"blur"`` fill's sigma was left to the input size, else {}.

    For recording, in an explanation's settings, the value the fill worked out.
    """
    if given is not None or not (isinstance(fill, str) and fill.lower() == "blur"):
        return {}
    return {"blur_sigma": default_blur_sigma(height, width)}


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (N, H, W, C) inputs over H and W (reflecting borders), float32.

    ``sigma`` 0 returns an unblurred float32 copy.
    """
    from scipy.ndimage import gaussian_filter

    values = np.asarray(x, dtype=np.float32)
    if sigma <= 0:
        return values.copy()
    out = gaussian_filter(values, sigma=(0.0, sigma, sigma, 0.0), mode="reflect", truncate=3.0)
    return np.asarray(out, dtype=np.float32)


def check_fill(fill: Any, where: str = "fill") -> Any:
    """``fill`` unchanged when :func:`fill_values` can read it, checked before any data is seen.

    Methods call it when they are built, so a misspelt fill fails at once,
    not after the first forward pass.
    """
    if isinstance(fill, np.ndarray):
        return _finite_array(fill, where)
    if isinstance(fill, (int, float, np.integer, np.floating)) and not isinstance(fill, bool):
        finite_float(fill, where)
        return fill
    if isinstance(fill, (tuple, list)) and len(fill) == 3:
        for value in fill:
            finite_float(value, where)
        return fill
    if isinstance(fill, str) and _ALIASES.get(fill.lower(), fill.lower()) in (*FILLS, "grey"):
        return fill
    raise bad_argument(where, _EXPECTED, fill)


def _finite_array(fill: np.ndarray, where: str) -> np.ndarray:
    """A fill array of finite numbers: a NaN baseline would make every score NaN."""
    if not np.issubdtype(fill.dtype, np.number) or np.issubdtype(fill.dtype, np.complexfloating):
        raise bad_argument(where, "an array of real numbers", f"an array of {fill.dtype}")
    if not np.isfinite(fill).all():
        raise bad_argument(where, "an array of finite numbers", "an array with NaN or infinity")
    return fill


def _colour(
    rgb: tuple[float, float, float], preprocess: Preprocess | None, what: Any, where: str
) -> np.ndarray:
    """An RGB colour (0..255) as a model input value (C,)."""
    if preprocess is None:
        raise bad_argument(
            where, "a fill that needs no preprocess (a colour does; pass preprocess=...)", what
        )
    picture = np.asarray(rgb, dtype=np.float32).reshape(1, 1, 3)
    return np.asarray(preprocess.normalise(picture), dtype=np.float32)[0, 0]


def _full(x: np.ndarray, value: Any) -> np.ndarray:
    """A fresh float32 array shaped like ``x`` from anything that broadcasts to it."""
    return np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype=np.float32), x.shape))


def fill_values(
    x: np.ndarray,
    fill: Any,
    preprocess: Preprocess | None,
    *,
    seed: int | None = 0,
    sigma: float | None = None,
    where: str = "fill",
) -> np.ndarray:
    """What each pixel of ``x`` (N, H, W, C) becomes when hidden: (N, H, W, C) float32.

    ``fill`` takes the words of the module docstring; ``sigma`` overrides the
    blur's default (pixels, >= 0); ``where`` names the argument in errors
    (``"fill"``, ``"baseline"``, ...).
    """
    x = np.asarray(x, dtype=np.float32)
    _, h, w, c = x.shape
    if isinstance(fill, np.ndarray):
        _finite_array(fill, where)
        try:
            return _full(x, fill)
        except ValueError:
            raise bad_argument(
                where, f"an array that broadcasts to the inputs {x.shape}", fill.shape
            ) from None
    if isinstance(fill, (int, float, np.integer, np.floating)) and not isinstance(fill, bool):
        return np.full(x.shape, np.float32(finite_float(fill, where)), dtype=np.float32)
    if isinstance(fill, (tuple, list)) and len(fill) == 3:
        rgb = (float(fill[0]), float(fill[1]), float(fill[2]))
        return _full(x, _colour(rgb, preprocess, fill, where))
    kind = fill.lower() if isinstance(fill, str) else None
    kind = _ALIASES.get(kind, kind) if kind is not None else None
    if kind == "zeros":
        return np.zeros(x.shape, np.float32)
    if kind in _GRAYS:
        if c != 3:
            if kind == "black":  # no RGB picture: the zero input stands for black
                return np.zeros(x.shape, np.float32)
            raise bad_argument(where, f"a fill for {c}-channel inputs (not a colour)", fill)
        v = _GRAYS[kind]
        return _full(x, _colour((v, v, v), preprocess, fill, where))
    if kind == "mean":
        return _full(x, x.mean(axis=(1, 2), keepdims=True, dtype=np.float32))
    if kind == "blur":
        s = default_blur_sigma(h, w) if sigma is None else sigma
        return blur(x, finite_float(s, "sigma", where=where, minimum=0.0))
    if kind == "noise":
        # each image from its own stream of the seed: its fill does not depend on the
        # other images of the batch
        if preprocess is not None and c == 3:  # the same picture for every image
            pixels = np.random.default_rng(seed).integers(0, 256, (1, h, w, 3)).astype(np.float32)
            return _full(x, np.asarray(preprocess.normalise(pixels), dtype=np.float32))
        lows, highs = x.min(axis=(1, 2, 3)), x.max(axis=(1, 2, 3))
        return np.stack(
            [
                np.random.default_rng(seed).uniform(lo, hi, x.shape[1:])
                for lo, hi in zip(lows.tolist(), highs.tolist(), strict=True)
            ]
        ).astype(np.float32)
    raise bad_argument(where, _EXPECTED, fill)
