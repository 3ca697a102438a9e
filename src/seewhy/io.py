"""Turn files, PIL images, arrays and tensors into model-ready batches.

Nothing here imports a deep-learning framework: tensors are read by duck
typing (``detach``/``cpu``/``numpy``/``__array__``) so that ``import seewhy``
stays cheap and works without torch or tensorflow installed.

Two kinds of input are told apart:

* **raw pictures** (paths, PIL images, uint8 arrays, 2-D arrays, 3-D float
  arrays in channels-last layout) are decoded to RGB uint8, resized/cropped to
  the model's size and normalised with the model's :class:`Preprocess`;
* **preprocessed model inputs** (4-D float arrays or tensors, and 3-D float
  ones with a leading channel axis of 1 or 3 when ``channels_first``) are
  used exactly as given, only moved to NHWC.
"""

from __future__ import annotations

import io as _stdio
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidInput, SeewhyError
from .preprocess import Preprocess

__all__ = [
    "IMAGE_EXTENSIONS",
    "Batch",
    "Failure",
    "ImageSource",
    "iter_image_files",
    "load_image",
    "prepare",
    "resize_for_model",
    "to_numpy",
]

#: File name endings that a folder is searched for (compared case-insensitively).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)

SAMPLE_PREFIX = "sample:"

#: What :func:`load_image` accepts (tensors are accepted too, by duck typing).
ImageSource: TypeAlias = "str | os.PathLike[str] | Image.Image | np.ndarray | bytes"

# Float pictures may stray this far outside [0, 1] / [0, 255] (resampling overshoot).
_UNIT_TOLERANCE = 1e-3
_BYTE_TOLERANCE = 0.5
# Denormalised model inputs within this many grey levels of [0, 255] are trusted.
_DENORM_TOLERANCE = 4.0


# --------------------------------------------------------------------------- arrays


def _is_array_like(obj: object) -> bool:
    """True for numpy arrays and tensors of any framework (duck typed)."""
    return isinstance(obj, np.ndarray) or any(
        hasattr(obj, attr) for attr in ("__array__", "numpy", "detach")
    )


def to_numpy(obj: object, *, name: str = "input") -> np.ndarray:
    """Read a numpy array out of an array or a framework tensor without importing it.

    Torch tensors go through ``detach().cpu()`` first so that tensors that need
    grad or live on a GPU work; dtypes numpy lacks (bfloat16) are widened.
    """
    if isinstance(obj, np.ndarray):
        return obj
    if isinstance(obj, Image.Image):
        return np.asarray(obj)
    try:
        x: Any = obj
        if hasattr(x, "detach"):
            x = x.detach()
            if hasattr(x, "cpu"):
                x = x.cpu()
        if hasattr(x, "numpy"):
            try:
                return np.asarray(x.numpy())
            except TypeError:
                if hasattr(x, "float"):  # torch bfloat16 and friends
                    return np.asarray(x.float().numpy())
                raise
        return np.asarray(x)
    except SeewhyError:
        raise
    except Exception as exc:
        raise InvalidInput(
            f"{name}: expected an image, array or tensor, could not read "
            f"{type(obj).__name__} as an array ({type(exc).__name__}: {exc})"
        ) from exc


def _check_finite(arr: np.ndarray, name: str) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise InvalidInput(
            f"{name}: expected finite pixel values, found {n_nan} NaN and {n_inf} infinite"
        )


def _channels_last(arr: np.ndarray, name: str) -> np.ndarray:
    """Picture array as (H, W, C); a clearly channels-first (C, H, W) one is transposed."""
    if arr.ndim == 2:
        return arr[:, :, None]
    if arr.ndim != 3:
        raise InvalidInput(
            f"{name}: expected an image array of shape (H, W), (H, W, C) or (C, H, W), "
            f"got shape {arr.shape}"
        )
    if arr.shape[-1] not in (1, 2, 3, 4) and arr.shape[0] in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.shape[-1] not in (1, 2, 3, 4):
        raise InvalidInput(
            f"{name}: expected 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels, "
            f"got shape {arr.shape}"
        )
    return arr


def _to_byte_range(arr: np.ndarray, name: str) -> np.ndarray:
    """Any numeric picture array -> float64 values in [0, 255] (bit depth respected)."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float64)
    if arr.dtype == np.bool_:
        return arr.astype(np.float64) * 255.0
    if np.issubdtype(arr.dtype, np.floating):
        _check_finite(arr, name)
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= -_UNIT_TOLERANCE and hi <= 1.0 + _UNIT_TOLERANCE:
            return np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0
        if lo >= -_BYTE_TOLERANCE and hi <= 255.0 + _BYTE_TOLERANCE:
            return np.clip(arr.astype(np.float64), 0.0, 255.0)
        raise InvalidInput(
            f"{name}: expected float pixel values in [0, 1] or [0, 255], got [{lo:.4g}, "
            f"{hi:.4g}] (normalised model inputs must be a 4-D batch, or 3-D channels-first "
            f"with channels_first=True)"
        )
    if np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == np.uint16:
            return arr.astype(np.float64) / 257.0
        lo_i, hi_i = int(arr.min()), int(arr.max())
        if lo_i >= 0 and hi_i <= 255:
            return arr.astype(np.float64)
        if lo_i >= 0 and hi_i <= 65535:
            return arr.astype(np.float64) / 257.0
        raise InvalidInput(
            f"{name}: expected integer pixel values in [0, 255] or [0, 65535], got [{lo_i}, {hi_i}]"
        )
    raise InvalidInput(f"{name}: expected a numeric image array, got dtype {arr.dtype}")


def _composite_on_white(values: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend colour values (0..255) over white using alpha (0..255)."""
    a = alpha / 255.0
    return values * a + 255.0 * (1.0 - a)


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    """Picture array of any supported dtype/layout -> RGB uint8 (H, W, 3)."""
    arr = _channels_last(arr, name)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInput(f"{name}: image is empty (shape {arr.shape})")
    vals = _to_byte_range(arr, name)
    channels = vals.shape[-1]
    if channels == 1:
        rgb = np.repeat(vals, 3, axis=-1)
    elif channels == 2:
        rgb = np.repeat(_composite_on_white(vals[..., :1], vals[..., 1:]), 3, axis=-1)
    elif channels == 3:
        rgb = vals
    else:
        rgb = _composite_on_white(vals[..., :3], vals[..., 3:])
    return np.ascontiguousarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------- PIL


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _pil_to_rgb(im: Image.Image, name: str) -> np.ndarray:
    """Decoded PIL image in any mode -> RGB uint8, respecting bit depth and alpha."""
    if im.width == 0 or im.height == 0:
        raise InvalidInput(f"{name}: image is empty ({im.width}x{im.height} pixels)")
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode in ("L", "1"):
        return _array_to_rgb(np.asarray(im.convert("L"), dtype=np.uint8), name)
    if mode in _SIXTEEN_BIT_MODES:
        # PIL's own convert("L") clips 16-bit values at 255; scale instead.
        return _array_to_rgb(np.asarray(im).astype(np.uint16), name)
    if mode == "I":
        return _array_to_rgb(np.asarray(im, dtype=np.int32), name)
    if mode == "F":
        return _array_to_rgb(np.asarray(im, dtype=np.float32), name)
    if mode == "P":
        has_alpha = "transparency" in im.info or (
            im.palette is not None and im.palette.mode == "RGBA"
        )
        im = im.convert("RGBA" if has_alpha else "RGB")
        return _pil_to_rgb(im, name)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _array_to_rgb(np.asarray(im.convert("RGBA"), dtype=np.uint8), name)
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
        with Image.open(_stdio.BytesIO(data)) as im:
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
    return _array_to_rgb(to_numpy(picture, name=label), label)


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
    return _load(source, None)


def _load(source: object, label: str | None) -> np.ndarray:
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
    if _is_array_like(source):
        name = label or "image array"
        return _array_to_rgb(to_numpy(source, name=name), name)
    raise InvalidInput(
        "image: expected a path, 'sample:NAME', bytes, PIL image or array, "
        f"got {type(source).__name__}"
    )


# --------------------------------------------------------------------------- geometry


def resize_for_model(rgb: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Bring an RGB uint8 picture to ``pre.size`` (H, W) the way the model was trained.

    With ``pre.resize`` set, the shorter side is scaled to ``pre.resize`` (as
    torchvision's ``Resize(int)``) and the centre ``pre.size`` is cropped; if
    that would be smaller than the crop, the scale is raised so the crop fits.
    Without it the picture is stretched straight to ``pre.size`` (as Keras
    does). Resampling is Pillow's antialiased bilinear.
    """
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise InvalidInput(
            f"rgb: expected a uint8 array of shape (H, W, 3), got {rgb.dtype} {rgb.shape}"
        )
    out_h, out_w = pre.size
    if out_h <= 0 or out_w <= 0:
        raise InvalidInput(f"pre.size: expected positive (H, W), got {pre.size}")
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        raise InvalidInput(f"rgb: image is empty (shape {rgb.shape})")
    im = Image.fromarray(np.ascontiguousarray(rgb))
    if pre.resize is None:
        if (h, w) != (out_h, out_w):
            im = im.resize((out_w, out_h), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8).copy()
    if pre.resize <= 0:
        raise InvalidInput(f"pre.resize: expected a positive length or None, got {pre.resize}")
    short, long_ = min(h, w), max(h, w)
    new_short = pre.resize
    new_long = int(pre.resize * long_ / short)
    new_h, new_w = (new_short, new_long) if h <= w else (new_long, new_short)
    if new_h < out_h or new_w < out_w:
        factor = max(out_h / h, out_w / w)
        new_h, new_w = max(out_h, round(h * factor)), max(out_w, round(w * factor))
    if (new_h, new_w) != (h, w):
        im = im.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top = round((new_h - out_h) / 2.0)
    left = round((new_w - out_w) / 2.0)
    im = im.crop((left, top, left + out_w, top + out_h))
    return np.asarray(im, dtype=np.uint8).copy()


# --------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class Batch:
    """Model inputs together with the pictures a person should see for them.

    ``inputs`` are float32 (N, H, W, C), always channels-last; ``images`` are
    uint8 (N, H, W, 3) at the same H, W; ``sources`` name each item (a path,
    ``sample:NAME``, or ``<array i>`` / ``<PIL i>`` for in-memory inputs).
    ``indices`` are the items' positions among everything that was passed,
    failures included, so per-image arguments (targets) can follow the
    survivors; left empty it means ``0 .. N-1``.
    """

    inputs: np.ndarray
    images: np.ndarray
    sources: tuple[str, ...]
    indices: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.indices:
            object.__setattr__(self, "indices", tuple(range(len(self.sources))))

    def __len__(self) -> int:
        return len(self.sources)


@dataclass(frozen=True)
class Failure:
    """An input that could not be used, and the one-line reason why."""

    source: str
    reason: str


@dataclass(frozen=True)
class _Item:
    """One entry of the user's input before it is decoded."""

    value: object
    source: str
    preprocessed: bool = False  # already a model input (C-last float32)


def _source_name(value: object, index: int) -> str:
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, Image.Image):
        return f"<PIL {index}>"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<bytes {index}>"
    return f"<array {index}>"


def _float_layout_to_nhwc(arr: np.ndarray, channels_first: bool, name: str) -> np.ndarray:
    """Preprocessed 4-D float batch -> NHWC, following the layout the shape implies.

    A shape that can only be one layout wins over ``channels_first``; an
    ambiguous one (or one matching neither) follows the flag.
    """
    c1, c_last = arr.shape[1] in (1, 3), arr.shape[-1] in (1, 3)
    first = channels_first
    if c1 and not c_last:
        first = True
    elif c_last and not c1:
        first = False
    if first:
        arr = np.moveaxis(arr, 1, -1)
    if arr.shape[-1] not in (1, 3):
        raise InvalidInput(
            f"{name}: expected a preprocessed batch with 1 or 3 channels, got shape "
            f"{tuple(arr.shape)} (channels_first={channels_first})"
        )
    return arr


def _expand(images: object, channels_first: bool) -> Iterator[_Item]:
    """Flatten the user's argument into single items, tagging preprocessed ones."""
    is_single = isinstance(images, (str, os.PathLike, Image.Image, bytes, bytearray, memoryview))
    if is_single or _is_array_like(images):
        seq: Iterable[object] = [images]
    elif isinstance(images, Iterable):
        seq = images
    else:
        raise InvalidInput(
            "images: expected a path, PIL image, array, tensor or a sequence of them, "
            f"got {type(images).__name__}"
        )
    for index, value in enumerate(seq):
        if isinstance(value, (str, os.PathLike, Image.Image, bytes)) or not _is_array_like(value):
            yield _Item(value, _source_name(value, index))
            continue
        name = f"<array {index}>"
        try:
            arr = to_numpy(value, name=name)
        except InvalidInput as exc:
            yield _Item(exc, name)
            continue
        is_float = np.issubdtype(arr.dtype, np.floating)
        if arr.ndim == 4:
            nested = not _is_array_like(images)
            if is_float:
                try:
                    arr = _float_layout_to_nhwc(arr, channels_first, name)
                except InvalidInput as exc:
                    yield _Item(exc, name)
                    continue
            for j in range(arr.shape[0]):
                sub = f"<array {index}[{j}]>" if nested else f"<array {j}>"
                yield _Item(arr[j], sub, preprocessed=is_float)
        elif arr.ndim == 3 and is_float and channels_first and arr.shape[0] in (1, 3):
            yield _Item(np.moveaxis(arr, 0, -1), name, preprocessed=True)
        else:
            yield _Item(arr, name)


def _display_from_input(x: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Picture for a preprocessed input: undo ``pre`` if it plausibly applies, else min-max."""
    if x.shape[-1] == 3:
        scale = np.float32(pre.scale)
        back = (x * np.asarray(pre.std, np.float32) + np.asarray(pre.mean, np.float32)) / scale
        if back.min() >= -_DENORM_TOLERANCE and back.max() <= 255.0 + _DENORM_TOLERANCE:
            return np.asarray(pre.denormalise(x), dtype=np.uint8)
    else:
        lo, hi = float(x.min()), float(x.max())
        if lo >= -_UNIT_TOLERANCE and hi <= 1.0 + _UNIT_TOLERANCE:
            grey = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
            return np.repeat(grey, 3, axis=-1)
    lo, hi = float(x.min()), float(x.max())
    span = hi - lo
    scaled = (x - lo) / span * 255.0 if span > 0 else np.zeros_like(x)
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.repeat(out, 3, axis=-1) if out.shape[-1] == 1 else out


def _prepare_item(item: _Item, pre: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """One item -> (model input HWC float32, display picture HWC uint8)."""
    if isinstance(item.value, InvalidInput):
        raise item.value
    if item.preprocessed:
        x = np.asarray(item.value)
        _check_finite(x, item.source)
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise InvalidInput(f"{item.source}: preprocessed input is empty (shape {x.shape})")
        x = np.ascontiguousarray(x, dtype=np.float32)
        return x, _display_from_input(x, pre)
    rgb = _load(item.value, item.source)
    picture = resize_for_model(rgb, pre)
    model_input = np.asarray(pre.normalise(picture), dtype=np.float32)
    return model_input, picture


def _with_source(exc: InvalidInput, source: str) -> str:
    """The error's one line, prefixed by the source unless it already names it."""
    msg = str(exc)
    return msg if source in msg else f"{source}: {msg}"


def prepare(
    images: object,
    pre: Preprocess,
    *,
    channels_first: bool = False,
    strict: bool = False,
) -> tuple[Batch, list[Failure]]:
    """Decode and preprocess everything the user passed into one :class:`Batch`.

    ``images`` is one item or a sequence of items (paths, ``sample:NAME``,
    PIL images, arrays, tensors), or a 4-D array/tensor batch. Float 4-D
    inputs (and 3-D float ones with a leading 1/3 channel axis when
    ``channels_first``) are taken as already preprocessed: they are not
    resized or normalised, only moved to NHWC; they are shown via
    ``pre.denormalise`` when that yields valid pixels, else min-max scaled.
    Everything else (uint8 arrays included) is a raw picture:
    :func:`load_image` -> :func:`resize_for_model` -> ``pre.normalise``.

    A bad item does not stop the batch: it comes back as a :class:`Failure`
    and the good items keep their order. ``strict=True`` raises on the first
    bad item instead (for single-call APIs). If no item is usable an
    :class:`InvalidInput` names the first problem.
    """
    inputs: list[np.ndarray] = []
    pictures: list[np.ndarray] = []
    sources: list[str] = []
    positions: list[int] = []
    failures: list[Failure] = []
    count = 0
    for item in _expand(images, channels_first):
        count += 1
        try:
            x, picture = _prepare_item(item, pre)
            if inputs and x.shape != inputs[0].shape:
                raise InvalidInput(
                    f"{item.source}: model input shape {x.shape} differs from the batch's "
                    f"{inputs[0].shape}"
                )
        except InvalidInput as exc:
            if strict:
                raise InvalidInput(_with_source(exc, item.source)) from exc
            failures.append(Failure(item.source, _with_source(exc, item.source)))
            continue
        inputs.append(x)
        pictures.append(picture)
        sources.append(item.source)
        positions.append(count - 1)
    if count == 0:
        raise InvalidInput("images: expected at least one image, got none")
    if not inputs:
        first = failures[0]
        extra = f" (and {len(failures) - 1} more failed)" if len(failures) > 1 else ""
        raise InvalidInput(f"no usable image: {first.reason}{extra}")
    batch = Batch(
        inputs=np.ascontiguousarray(np.stack(inputs), dtype=np.float32),
        images=np.ascontiguousarray(np.stack(pictures), dtype=np.uint8),
        sources=tuple(sources),
        indices=tuple(positions),
    )
    return batch, failures


# --------------------------------------------------------------------------- files


def iter_image_files(paths: Sequence[str | Path], recursive: bool = False) -> list[Path]:
    """Expand folders into their image files, keeping explicitly named files as given.

    Folders contribute files whose extension is in :data:`IMAGE_EXTENSIONS`
    (hidden files skipped), sorted by path; with ``recursive`` subfolders are
    searched too. Files named explicitly are kept whatever their extension, and
    even if missing, so :func:`load_image` can report them. Arguments keep their
    order; a file reached twice is listed once.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)

    for raw in paths:
        root = Path(raw)
        if root.is_dir():
            pattern = root.rglob("*") if recursive else root.glob("*")
            found = [
                p
                for p in pattern
                if p.is_file()
                and p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(root).parts)
            ]
            for p in sorted(found):
                add(p)
        else:
            add(root)
    return out
