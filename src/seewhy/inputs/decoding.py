"""Decode whatever a picture came as (file, bytes, sample, PIL image, array) to RGB.

Every picture ends as RGB uint8 (H, W, 3), whatever its mode, bit depth,
alpha or orientation, so that models always see the same thing; every
failure is one :class:`~seewhy.InvalidInput` line naming the source.

A file's cost is bounded by what is explained, not by what the file claims:
given the model's :class:`~seewhy.Preprocess`, a picture far larger than the
model input and the kept photo (:data:`~seewhy.inputs.photos.PHOTO_MAX_SIDE`)
is shrunk by a whole factor in Pillow, in bands of rows and in its own
compact mode (a JPEG already while decoding), before it becomes full-size
RGB. A 9000 x 9000 1-bit PNG of 250 KB would take 633 MiB as full-size RGB;
this way it takes what Pillow needs to hold it decoded (1 byte a pixel) and a
2250 x 2250 picture.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import TypeAlias

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from ..errors import InvalidInput, SeewhyError
from ..preprocess import Preprocess
from .arrays import array_to_rgb, is_array_like, to_numpy
from .photos import PHOTO_MAX_SIDE

__all__ = ["SAMPLE_PREFIX", "ImageSource", "load_image", "load_named"]

#: A source naming a bundled picture of :mod:`seewhy.samples`: ``"sample:chelsea"``.
SAMPLE_PREFIX = "sample:"

#: What :func:`load_image` accepts (tensors are accepted too, by duck typing).
ImageSource: TypeAlias = "str | os.PathLike[str] | Image.Image | np.ndarray | bytes"

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")

#: A picture is shrunk before resizing only while the model's own resize still
#: shrinks it by at least this much: Pillow's documentation finds a two-step
#: resize with this gap "indistinguishable from fair resampling".
REDUCING_GAP = 3
#: Pixels converted to RGB at a time when a picture is shrunk (bounds the bands).
_BAND_PIXELS = 1 << 22
#: EXIF orientation -> the transposition that makes the picture upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def reduction(height: int, width: int, pre: Preprocess) -> int:
    """The whole factor an upright ``height`` x ``width`` picture may be shrunk by first.

    Both what seewhy makes of the picture stay as they are: the model's resize
    to ``pre`` still shrinks by :data:`REDUCING_GAP` or more, and the photo kept
    for display keeps :data:`PHOTO_MAX_SIDE` pixels on its long side.
    """
    if height <= 0 or width <= 0:
        return 1
    new_h, new_w, _, _ = pre.plan(height, width)
    for_model = min(height / (REDUCING_GAP * new_h), width / (REDUCING_GAP * new_w))
    for_photo = max(height, width) / PHOTO_MAX_SIDE
    return max(1, int(min(for_model, for_photo)))


def _upright(im: Image.Image) -> Image.Transpose | None:
    """How to turn the picture upright by its EXIF orientation (None: it is)."""
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a broken EXIF block: the picture is shown as stored
        return None
    return _UPRIGHT.get(orientation)


def _upright_size(im: Image.Image, turn: Image.Transpose | None) -> tuple[int, int]:
    """(height, width) once upright."""
    swaps = turn in (
        Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE,
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_270,
    )
    return (im.width, im.height) if swaps else (im.height, im.width)


def _shrunk_rgb(im: Image.Image, factor: int, name: str) -> np.ndarray:
    """``im`` shrunk about ``factor`` times (area average) to RGB uint8, a band at a time.

    The size is rounded and each output pixel averages exactly the source area
    it stands for (``Image.reduce`` would shrink the last row and column's area
    instead, shifting a 6200-pixel picture's crop by up to 7 grey levels); where
    ``factor`` divides both sides, ``Image.reduce`` is exact and used. A
    band of source rows goes to RGB at a time, so a full-size RGB copy of the
    picture never exists.
    """
    out_w, out_h = max(1, round(im.width / factor)), max(1, round(im.height / factor))
    step = im.height / out_h  # source rows per output row
    exact = im.width % factor == 0 and im.height % factor == 0
    rows = max(1, _BAND_PIXELS // (im.width * math.ceil(step)))  # output rows per band
    bands = []
    for top in range(0, out_h, rows):
        bottom = min(out_h, top + rows)
        y0, y1 = top * step, bottom * step
        first, last = int(y0), min(im.height, math.ceil(y1))
        band = Image.fromarray(_pil_to_rgb(im.crop((0, first, im.width, last)), name))
        if exact:  # one rounding, not one per pass
            shrunk = band.reduce(factor)
        else:
            area = (0.0, y0 - first, float(im.width), y1 - first)
            shrunk = band.resize((out_w, bottom - top), Image.Resampling.BOX, box=area)
        bands.append(np.asarray(shrunk, dtype=np.uint8))
    return np.ascontiguousarray(np.concatenate(bands, axis=0))


def _to_rgb(im: Image.Image, name: str, pre: Preprocess | None) -> np.ndarray:
    """A decoded picture, upright, as RGB uint8: shrunk first where ``pre`` allows.

    The user's own PIL image is never changed (a turn or a crop is a new image).
    """
    turn = _upright(im)
    factor = reduction(*_upright_size(im, turn), pre) if pre is not None else 1
    if factor > 1:
        rgb = _shrunk_rgb(im, factor, name)
        if turn is None:
            return rgb
        return np.asarray(Image.fromarray(rgb).transpose(turn), dtype=np.uint8).copy()
    return _pil_to_rgb(im.transpose(turn) if turn is not None else im, name)


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


def _decode_file(path: Path, name: str, pre: Preprocess | None = None) -> np.ndarray:
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
    return _decode_bytes(data, f"image file {name!r}", pre)


def _decode_bytes(data: bytes, what: str, pre: Preprocess | None = None) -> np.ndarray:
    """Decode an encoded image (PNG, JPEG, ...) held in memory."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            factor = reduction(*_upright_size(im, _upright(im)), pre) if pre is not None else 1
            if factor > 1 and im.format == "JPEG":  # decoded at 1/2, 1/4 or 1/8 size
                im.draft(im.mode, (im.width // factor, im.height // factor))
            # Decode everything now: a truncated file must fail here rather than
            # come back half grey later.
            im.load()
            return _to_rgb(im, what, pre)
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

    Parameters
    ----------
    source : object
        A path, ``"sample:NAME"``, bytes, a PIL image, an array or a tensor.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) uint8.
    """
    return load_named(source, None)


def load_named(source: object, label: str | None, pre: Preprocess | None = None) -> np.ndarray:
    """:func:`load_image`, with ``label`` naming in-memory sources in error messages.

    With ``pre`` (what the picture is prepared for), a file, bytes or PIL image
    far larger than that needs comes back shrunk by a whole factor
    (:func:`reduction`), never decoded to full-size RGB.
    """
    if isinstance(source, str) and source.startswith(SAMPLE_PREFIX):
        return _load_sample(source[len(SAMPLE_PREFIX) :])
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return _decode_file(path, os.fspath(source), pre)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise InvalidInput(f"{label or 'image bytes'}: expected an encoded image, got 0 bytes")
        return _decode_bytes(data, label or "image bytes", pre)
    if isinstance(source, Image.Image):
        name = label or f"PIL image {getattr(source, 'filename', '') or ''}".strip()
        if source.width == 0 or source.height == 0:
            return _pil_to_rgb(source, name)  # says it is empty
        try:
            source.load()
            return _to_rgb(source, name, pre)
        except SeewhyError:
            raise
        except (OSError, ValueError, SyntaxError) as exc:
            raise InvalidInput(f"{name}: could not read the image data ({exc})") from exc
    if is_array_like(source):
        name = label or "image array"
        return array_to_rgb(to_numpy(source, name=name), name)
    raise InvalidInput(
        "image: expected a path, 'sample:NAME', bytes, PIL image or array, "
        f"got {type(source).__name__}"
    )
