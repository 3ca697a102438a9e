"""Sample photos for examples, docs and tests, without any download.

The pictures come from scikit-image's bundled data (public domain or CC0,
see ``skimage.data``); ``path`` writes one to a PNG in the user's cache so
command-line examples have a real file to point at.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from seewhy.errors import InvalidInput

__all__ = ["cache_dir", "load", "names", "path"]

# Our name -> scikit-image loader name. Photos an ImageNet model has a class
# for, plus one greyscale picture so the RGB conversion is exercised.
_SOURCES: dict[str, str] = {
    "astronaut": "astronaut",
    "camera": "camera",
    "chelsea": "chelsea",
    "coffee": "coffee",
    "rocket": "rocket",
}


def names() -> list[str]:
    """Names accepted by :func:`load` and :func:`path`, sorted."""
    return sorted(_SOURCES)


def _check(name: str) -> str:
    if not isinstance(name, str) or name not in _SOURCES:
        raise InvalidInput(f"name: unknown sample {name!r}; available: {', '.join(names())}")
    return name


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Map scikit-image's value conventions (bool, float in [0, 1], wider ints) to uint8."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    if np.issubdtype(image.dtype, np.unsignedinteger):
        top = float(np.iinfo(image.dtype).max)
        return np.rint(image.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    raise InvalidInput(f"image: unsupported dtype {image.dtype}")


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any scikit-image picture -> contiguous uint8 (H, W, 3).

    Greyscale is repeated over three channels; an alpha channel is composited
    over white so transparent parts do not turn black.
    """
    arr = _to_uint8(np.asarray(image))
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        rgb = arr[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        arr = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidInput(f"image: expected greyscale, RGB or RGBA, got shape {image.shape}")
    return np.ascontiguousarray(arr)


def load(name: str) -> np.ndarray:
    """The sample ``name`` as a fresh RGB uint8 array of shape (H, W, 3).

    Parameters
    ----------
    name : str
        One of :func:`names` (``chelsea``, ``coffee``, ``rocket``, ...).
    """
    import skimage.data

    loader = getattr(skimage.data, _SOURCES[_check(name)])
    return _as_rgb_uint8(np.asarray(loader()))


def cache_dir() -> Path:
    """Where samples are written: ``$SEEWHY_CACHE/samples``, else the XDG cache."""
    root = os.environ.get("SEEWHY_CACHE")
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "seewhy"
    return base / "samples"


def path(name: str) -> Path:
    """A PNG file of the sample, written on first use and reused afterwards.

    The file appears atomically (temporary file, then ``os.replace``), so two
    processes asking at once never see a half-written picture.

    Parameters
    ----------
    name : str
        One of :func:`names`.
    """
    from PIL import Image

    name = _check(name)
    target = cache_dir() / f"{name}.png"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".png.tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            Image.fromarray(load(name)).save(fh, format="PNG")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cached sample need not be
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
