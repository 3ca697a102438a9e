"""Decode whatever a picture came as (file, bytes, sample, PIL image, array) to RGB.

Every picture ends as RGB uint8 (H, W, 3), whatever its mode, bit depth,
alpha or orientation, so that models always see the same thing; every
failure is one :class:`~seewhy.InvalidInput` line naming the source.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TypeAlias

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InvalidInput, SeewhyError
from .arrays import array_to_rgb, is_array_like, to_numpy

__all__ = ["SAMPLE_PREFIX", "ImageSource", "load_image", "load_named"]

#: A source naming a bundled picture of :mod:`seewhy.samples`: ``"sample:chelsea"``.
SAMPLE_PREFIX = "sample:"

#: What :func:`load_image` accepts (tensors are accepted too, by duck typing).
ImageSource: TypeAlias = "str | os.PathLike[str] | Image.Image | np.ndarray | bytes"

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _pil_to_rgb(im: Image.Image, name: str) -> np.ndarray:
    """Decoded PIL image in any mode -> RGB uint8, respecting bit depth and alpha."""
    if im.width == 0 or im.height == 0:
        raise InvalidInput(f"{name}: image is empty ({im.width}x{im.height} pixels)")
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode in ("L", "1"):
        grey = im if mode == "L" else im.convert("L")
        return array_to_rgb(np.asarray(grey, dtype=np.uint8), name)
    if mode in _SIXTEEN_BIT_MODES:
        # PIL's own convert("L") clips 16-bit values at 255; scale instead.
        return array_to_rgb(np.asarray(im).astype(np.uint16), name)
    if mode == "I":
        return array_to_rgb(np.asarray(im, dtype=np.int32), name)
    if mode == "F":
        return array_to_rgb(np.asarray(im, dtype=np.float32), name)
    if mode == "P":
        has_alpha = "transparency" in im.info or (
            im.palette is not None and im.palette.mode == "RGBA"
        )
        im = im.convert("RGBA" if has_alpha else "RGB")
        return _pil_to_rgb(im, name)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return array_to_rgb(np.asarray(im.convert("RGBA"), dtype=np.uint8), name)
    if mode == "RGBX":
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    try:  # CMYK, YCbCr, HSV, LAB, ...
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"{name}: cannot convert image mode {mode!r} to RGB ({exc})") from exc


def _decode_file(path: Path, name: str) -> np.ndarray:
    """Open, fully decode and orient an image file; every failure becomes InvalidInput."""
    if not path.exists():
        raise InvalidInput(f"image file {name!r} does not exist")
    if path.is_dir():
        raise InvalidInput(f"image file {name!r} is a directory, expected an image file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidInput(f"image file {name!r} cannot be read ({exc.strerror})") from exc
    if size == 0:
        raise InvalidInput(f"image file {name!r} is empty (0 bytes)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"image file {name!r} cannot be read ({exc.strerror})") from exc
    return _decode_bytes(data, f"image file {name!r}")


def _decode_bytes(data: bytes, what: str) -> np.ndarray:
    """Decode an encoded image (PNG, JPEG, ...) held in memory."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            # Decode everything now: a truncated file must fail here rather than
            # come back half grey later.
            im.load()
            oriented = ImageOps.exif_transpose(im)
            return _pil_to_rgb(oriented, what)
    except SeewhyError:
        raise
    except MemoryError:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidInput(f"{what} is not an image file Pillow can read") from exc
    except Image.DecompressionBombError as exc:
        raise InvalidInput(f"{what} has too many pixels to decode safely ({exc})") from exc
    except Exception as exc:  # corrupt data surfaces as OSError, SyntaxError, ValueError...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kind = "truncated or corrupt" if isinstance(exc, (OSError, SyntaxError)) else "corrupt"
        raise InvalidInput(
            f"{what} is {kind} and could not be decoded as {_format_name(data)} ({reason})"
        ) from exc


def _format_name(data: bytes) -> str:
    """Best-effort name of the file format from its magic bytes, for error messages."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] == b"GIF8":
        return "GIF"
    if data[:4] == b"RIFF":
        return "WEBP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return "an image"


def _load_sample(name: str) -> np.ndarray:
    """Resolve ``sample:NAME`` through :mod:`seewhy.samples` (imported only when used)."""
    import importlib

    label = f"{SAMPLE_PREFIX}{name}"
    if not name:
        raise InvalidInput(f"image {label!r}: expected a sample name after 'sample:'")
    try:
        samples = importlib.import_module("seewhy.samples")
    except ImportError as exc:
        raise InvalidInput(f"image {label!r}: sample images are not available ({exc})") from exc
    try:
        picture = samples.load(name)
    except SeewhyError:
        raise
    except (KeyError, LookupError, FileNotFoundError, ValueError) as exc:
        raise InvalidInput(f"image {label!r}: unknown or unreadable sample ({exc})") from exc
    return array_to_rgb(to_numpy(picture, name=label), label)


def load_image(source: object) -> np.ndarray:
    """Decode one picture to RGB uint8 (H, W, 3), whatever it came as.

    ``source`` may be a path (``str``/``PathLike``), ``"sample:NAME"`` (a bundled
    sample via :mod:`seewhy.samples`), encoded file ``bytes``, a PIL image, or an
    array/tensor. Pictures are normalised so models always see the same thing:

    * grey (``L``, 2-D arrays) is repeated to RGB;
    * transparency (RGBA, LA, palette with a transparent colour, 2/4-channel
      arrays) is composited **on white**, the colour most viewers show;
    * 16-bit images (``I;16``, ``uint16``) are scaled by 255/65535, not clipped;
    * float arrays in [0, 1] are multiplied by 255, those in [0, 255] kept;
    * CMYK and other modes are converted by Pillow;
    * the EXIF orientation tag is applied, so phone photos are upright;
    * animated or multi-page files give their first frame.

    Raises :class:`InvalidInput` (one line naming the file) for a missing file, a
    directory, an empty or non-image file, truncated data, an empty image, a
    wrong array shape, or NaN/inf values.
    """
    return load_named(source, None)


def load_named(source: object, label: str | None) -> np.ndarray:
    """:func:`load_image`, with ``label`` naming in-memory sources in error messages."""
    if isinstance(source, str) and source.startswith(SAMPLE_PREFIX):
        return _load_sample(source[len(SAMPLE_PREFIX) :])
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return _decode_file(path, os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise InvalidInput(f"{label or 'image bytes'}: expected an encoded image, got 0 bytes")
        return _decode_bytes(data, label or "image bytes")
    if isinstance(source, Image.Image):
        name = label or f"PIL image {getattr(source, 'filename', '') or ''}".strip()
        try:
            oriented = ImageOps.exif_transpose(source)
        except (OSError, ValueError, SyntaxError) as exc:
            raise InvalidInput(f"{name}: could not read the image data ({exc})") from exc
        return _pil_to_rgb(oriented, name)
    if is_array_like(source):
        name = label or "image array"
        return array_to_rgb(to_numpy(source, name=name), name)
    raise InvalidInput(
        "image: expected a path, 'sample:NAME', bytes, PIL image or array, "
        f"got {type(source).__name__}"
    )
