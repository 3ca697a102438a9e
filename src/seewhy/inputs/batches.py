"""Assemble model-ready batches: resizing for the model, batch, failures.

Two kinds of input are told apart:

* **raw pictures** (paths, PIL images, uint8 arrays, 2-D arrays, 3-D float
  arrays in channels-last layout) are decoded to RGB uint8, resized/cropped to
  the model's size and normalised with the model's :class:`Preprocess`;
* **preprocessed model inputs** (4-D float arrays or tensors, and 3-D float
  ones with a leading channel axis of 1 or 3 when ``channels_first``) are
  used exactly as given, only moved to NHWC.

A bad item does not stop the batch: it becomes a :class:`Failure`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from ..errors import InvalidInput
from ..preprocess import Preprocess
from .arrays import (
    UNIT_TOLERANCE,
    batch_to_nhwc,
    check_finite,
    is_array_like,
    to_numpy,
    wrong_channels,
)
from .decoding import load_named
from .photos import Photo, keep_photo

__all__ = ["Batch", "BatchStream", "Failure", "no_usable_image", "prepare", "resize_for_model"]

#: A model's preprocessing per photo, from the photo's (height, width); None: one for all.
Sizes = Callable[[int, int], Preprocess] | None

# Denormalised model inputs within this many grey levels of [0, 255] are trusted.
_DENORM_TOLERANCE = 4.0

#: Resize-then-crop resizes the whole picture up to this many pixels (16 MiB as RGBA);
#: beyond, only the crop is resampled.
_WHOLE_RESIZE_PIXELS = 1 << 22


def resize_for_model(rgb: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Bring an RGB uint8 picture to ``pre.size`` (H, W) the way the model was trained.

    The geometry is :meth:`Preprocess.plan`'s: resized by ``pre.fit`` (the
    shorter side to ``pre.resize`` as torchvision's ``Resize(int)``, or a box
    stretched to, covered or contained as timm's and Hugging Face's pipelines
    do), then the centre ``pre.size`` cropped, padded with ``pre.fill`` where
    the picture is smaller; without ``pre.resize`` the picture is stretched
    straight to ``pre.size`` (as Keras does). Resampling is the antialiased
    filter ``pre.interpolation``, by Pillow or, for ``resampler="torchvision"``,
    by torchvision on a uint8 tensor (the two differ by a grey level here and there).

    Parameters
    ----------
    rgb : numpy.ndarray
        (H, W, 3) uint8 picture.
    pre : Preprocess
        The model's preprocessing; only its geometry is used here.

    Returns
    -------
    numpy.ndarray
        (``pre.size``, 3) uint8.
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
    new_h, new_w, top, left = pre.plan(h, w)
    whole = new_h * new_w <= _WHOLE_RESIZE_PIXELS or pre.resize is None
    if pre.resampler == "pillow" and not whole and top >= 0 and left >= 0:
        # Resample only the crop, taken back to the picture's own coordinates: a
        # 1 x 6000 strip would otherwise make a 256 x 1,536,000 intermediate
        # (1.5 GiB). Pillow may then order its two passes differently, so a
        # pixel can differ from the whole resize by one grey level.
        sy, sx = h / new_h, w / new_w
        box = (left * sx, top * sy, (left + out_w) * sx, (top + out_h) * sy)
        im = Image.fromarray(np.ascontiguousarray(rgb))
        resample = Image.Resampling[pre.interpolation.upper()]
        return np.asarray(im.resize((out_w, out_h), resample, box=box), dtype=np.uint8).copy()
    resized = _resample(rgb, (new_h, new_w), pre)
    return _crop_or_pad(resized, top, left, pre)


def _resample(rgb: np.ndarray, size: tuple[int, int], pre: Preprocess) -> np.ndarray:
    """``rgb`` resized to ``size`` (H, W) by ``pre``'s resampler and filter (as it is if equal)."""
    if size == rgb.shape[:2]:
        return rgb
    if pre.resampler == "torchvision":
        try:
            from ..backends.torch.resample import torchvision_resize
        except ImportError:
            raise InvalidInput(
                "preprocess: resampler='torchvision' needs torch and torchvision installed; "
                "install them or use resampler='pillow'"
            ) from None
        return torchvision_resize(rgb, size, pre.interpolation)
    if pre.resampler == "opencv":
        from ..detection.letterbox import opencv_resize

        return opencv_resize(rgb, size, pre.interpolation)
    im = Image.fromarray(np.ascontiguousarray(rgb))
    resample = Image.Resampling[pre.interpolation.upper()]
    return np.asarray(im.resize((size[1], size[0]), resample), dtype=np.uint8)


def _crop_or_pad(rgb: np.ndarray, top: int, left: int, pre: Preprocess) -> np.ndarray:
    """The ``pre.size`` window at (``top``, ``left``) of ``rgb``; outside it, ``pre.fill``."""
    out_h, out_w = pre.size
    h, w = rgb.shape[:2]
    if top >= 0 and left >= 0 and top + out_h <= h and left + out_w <= w:
        return np.ascontiguousarray(rgb[top : top + out_h, left : left + out_w])
    out = np.empty((out_h, out_w, 3), dtype=np.uint8)
    out[...] = np.asarray(pre.fill or (0,), dtype=np.uint8)
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(h, top + out_h), min(w, left + out_w)
    out[y0 - top : y1 - top, x0 - left : x1 - left] = rgb[y0:y1, x0:x1]
    return out


@dataclass(frozen=True)
class Batch:
    """Model inputs together with the pictures a person should see for them.

    ``inputs`` are float32 (N, H, W, C), always channels-last; ``images`` are
    uint8 (N, H, W, 3) at the same H, W; ``sources`` name each item (a path,
    ``sample:NAME``, or ``<array i>`` / ``<PIL i>`` for in-memory inputs).
    ``indices`` are the items' positions among everything that was passed,
    failures included, so per-image arguments (targets) can follow the
    survivors; left empty it means ``0 .. N-1``. ``photos`` keep each raw
    picture at its own size and where the input came from in it (None for
    preprocessed inputs, which have no other picture); left empty, none.

    Attributes
    ----------
    inputs : numpy.ndarray
        (N, H, W, C) float32 model inputs, channels last.
    images : numpy.ndarray
        (N, H, W, 3) uint8 pictures.
    sources : tuple of str
        What each item was.
    indices : tuple of int
        Each item's position among all inputs, failures included.
    photos : tuple of Photo or None
        Each raw picture and the box of it the model saw.
    fed : Preprocess or None
        These photos' own preprocessing, when each is sized its own (else None).
    """

    inputs: np.ndarray
    images: np.ndarray
    sources: tuple[str, ...]
    indices: tuple[int, ...] = ()
    photos: tuple[Photo | None, ...] = ()
    fed: Preprocess | None = None

    def __post_init__(self) -> None:
        if not self.indices:
            object.__setattr__(self, "indices", tuple(range(len(self.sources))))

    def __len__(self) -> int:
        return len(self.sources)


@dataclass(frozen=True)
class Failure:
    """An input that could not be used, and the one-line reason why.

    Attributes
    ----------
    source : str
        What the input was (a path, ``sample:NAME``, ``<array i>``).
    reason : str
        One line: what is wrong with it.
    """

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


def _expand(images: object, channels_first: bool) -> Iterator[_Item]:
    """Flatten the user's argument into single items, tagging preprocessed ones."""
    is_single = isinstance(images, (str, os.PathLike, Image.Image, bytes, bytearray, memoryview))
    if is_single or is_array_like(images):
        seq: Iterable[object] = [images]
    elif isinstance(images, Iterable):
        seq = images
    else:
        raise InvalidInput(
            "images: expected a path, PIL image, array, tensor or a sequence of them, "
            f"got {type(images).__name__}"
        )
    for index, value in enumerate(seq):
        if isinstance(value, (str, os.PathLike, Image.Image, bytes)) or not is_array_like(value):
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
            nested = not is_array_like(images)
            if is_float:
                try:
                    arr = batch_to_nhwc(arr, channels_first, name)
                except InvalidInput as exc:
                    yield _Item(exc, name)
                    continue
            for j in range(arr.shape[0]):
                sub = f"<array {index}[{j}]>" if nested else f"<array {j}>"
                yield _Item(arr[j], sub, preprocessed=is_float)
        elif arr.ndim == 3 and is_float and channels_first and arr.shape[0] in (1, 3):
            yield _Item(np.moveaxis(arr, 0, -1), name, preprocessed=True)
        elif arr.ndim == 3 and is_float and channels_first and arr.shape[-1] not in (1, 2, 3, 4):
            # (C, H, W) with C other than 1 or 3: a model input, not a picture to decode
            yield _Item(wrong_channels(name, tuple(arr.shape), True), name)
        else:
            yield _Item(arr, name)


def _display_from_input(x: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Picture for a preprocessed input: undo ``pre`` if it plausibly applies, else min-max."""
    if x.shape[-1] == pre.channels:
        scale = np.float32(pre.scale)
        back = (x * np.asarray(pre.std, np.float32) + np.asarray(pre.mean, np.float32)) / scale
        if back.min() >= -_DENORM_TOLERANCE and back.max() <= 255.0 + _DENORM_TOLERANCE:
            return pre.denormalise(x)
    elif x.shape[-1] == 1:
        lo, hi = float(x.min()), float(x.max())
        if lo >= -UNIT_TOLERANCE and hi <= 1.0 + UNIT_TOLERANCE:
            grey = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
            return np.repeat(grey, 3, axis=-1)
    lo, hi = float(x.min()), float(x.max())
    span = hi - lo
    scaled = (x - lo) / span * 255.0 if span > 0 else np.zeros_like(x)
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.repeat(out, 3, axis=-1) if out.shape[-1] == 1 else out


def _prepare_item(
    item: _Item, pre: Preprocess, keep: bool = True, own_size: bool = False, per_photo: Sizes = None
) -> tuple[np.ndarray, np.ndarray, Photo | None, Preprocess | None]:
    """One item -> (model input HWC float32, display HWC uint8, Photo or None, own Preprocess).

    ``own_size``: the model's size is only a guess, so a picture no larger
    than ``pre.size`` is fed as it is (a 32 x 32 CIFAR image stays 32 x 32).
    ``per_photo``: the photo's own preprocessing from its whole (unshrunk) size.
    """
    if isinstance(item.value, InvalidInput):
        raise item.value
    if item.preprocessed:
        x = np.asarray(item.value)
        check_finite(x, item.source)
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise InvalidInput(f"{item.source}: preprocessed input is empty (shape {x.shape})")
        x = np.ascontiguousarray(x, dtype=np.float32)
        return x, _display_from_input(x, pre), None, None
    rgb = load_named(item.value, item.source, None if per_photo else pre)  # shrunk if far large
    if per_photo is not None:
        pre = per_photo(rgb.shape[0], rgb.shape[1])
    elif own_size and rgb.shape[0] <= pre.size[0] and rgb.shape[1] <= pre.size[1]:
        pre = replace(pre, size=(rgb.shape[0], rgb.shape[1]), resize=None)
    picture = resize_for_model(rgb, pre)
    model_input = np.asarray(pre.normalise(picture), dtype=np.float32)
    return model_input, picture, keep_photo(rgb, pre) if keep else None, pre if per_photo else None


def _with_source(exc: InvalidInput, source: str) -> str:
    """The error's one line, prefixed by the source unless it already names it."""
    msg = str(exc)
    return msg if source in msg else f"{source}: {msg}"


def _assemble(
    items: Iterable[tuple[int, _Item]],
    pre: Preprocess,
    *,
    shape: tuple[int, ...] | None = None,
    strict: bool = False,
    photos: bool = True,
    own_size: bool = False,
    per_photo: Sizes = None,
) -> tuple[list[Batch], list[Failure]]:
    """Prepare numbered items into one :class:`Batch` (none when none is usable).

    ``shape`` is the model input shape earlier batches had: every batch of one
    call must match it, so their results can be joined. ``per_photo``: each
    photo at its own size, one batch per run of neighbours of one size.
    """
    inputs: list[np.ndarray] = []
    pictures: list[np.ndarray] = []
    sources: list[str] = []
    positions: list[int] = []
    kept: list[Photo | None] = []
    fed: list[Preprocess | None] = []
    failures: list[Failure] = []
    for position, item in items:
        try:
            x, picture, photo, own = _prepare_item(item, pre, photos, own_size, per_photo)
            expected = None if per_photo else inputs[0].shape if inputs else shape
            if expected is not None and x.shape != expected:
                raise InvalidInput(
                    f"{item.source}: model input shape {x.shape} differs from the batch's "
                    f"{expected}"
                )
        except InvalidInput as exc:
            if strict:
                raise InvalidInput(_with_source(exc, item.source)) from exc
            failures.append(Failure(item.source, _with_source(exc, item.source)))
            continue
        inputs.append(x)
        pictures.append(picture)
        sources.append(item.source)
        positions.append(position)
        kept.append(photo)
        fed.append(own)
    runs = [(x.shape, own) for x, own in zip(inputs, fed, strict=True)]
    cuts = [i for i in range(1, len(runs)) if runs[i] != runs[i - 1]]
    batches = [
        Batch(
            inputs=np.ascontiguousarray(np.stack(inputs[a:b]), dtype=np.float32),
            images=np.ascontiguousarray(np.stack(pictures[a:b]), dtype=np.uint8),
            sources=tuple(sources[a:b]),
            indices=tuple(positions[a:b]),
            photos=tuple(kept[a:b]),
            fed=fed[a],
        )
        for a, b in zip([0, *cuts], [*cuts, len(inputs)], strict=True)
        if b > a
    ]
    return batches, failures


def no_usable_image(failures: list[Failure]) -> InvalidInput:
    """The error when every item failed: the first reason, and how many more there were."""
    if not failures:
        return InvalidInput("images: expected at least one image, got none")
    extra = f" (and {len(failures) - 1} more failed)" if len(failures) > 1 else ""
    return InvalidInput(f"no usable image: {failures[0].reason}{extra}")


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
    :func:`~seewhy.inputs.load_image` -> :func:`resize_for_model` -> ``pre.normalise``.

    A bad item does not stop the batch: it comes back as a :class:`Failure`
    and the good items keep their order. ``strict=True`` raises on the first
    bad item instead (for single-call APIs). If no item is usable an
    :class:`InvalidInput` names the first problem. For many inputs,
    :class:`BatchStream` prepares them a batch at a time instead.

    Parameters
    ----------
    images : object
        One item or a sequence of items, or a 4-D batch.
    pre : Preprocess
        How pictures become model inputs.
    channels_first : bool
        Preprocessed inputs are (N, C, H, W).
    strict : bool
        Raise on the first bad item rather than reporting it.

    Returns
    -------
    tuple of (Batch, list of Failure)
    """
    items = list(enumerate(_expand(images, channels_first)))
    if not items:
        raise no_usable_image([])
    batches, failures = _assemble(items, pre, strict=strict)
    if not batches:
        raise no_usable_image(failures)
    return batches[0], failures


class BatchStream:
    """The user's inputs, decoded and preprocessed ``size`` at a time.

    Only the items themselves (paths, or views of the arrays given) are held
    up front; each batch's model inputs exist while it is explained, so
    10,000 paths never become 10,000 prepared inputs. ``len()`` is the
    number of items, failures included (per-image targets are checked
    against it before any work). Iterating gives ``(batch or None,
    failures)`` per group; ``Batch.indices`` are positions among all items.
    ``photos=False`` keeps no :class:`Photo` (callers that only predict, or
    that explain so many photos that keeping each one would not fit).
    ``own_size=True`` (the model's size is a guess) feeds pictures no larger
    than ``pre.size`` at their own size.

    Parameters
    ----------
    images : object
        One item or a sequence of items, or a 4-D batch.
    pre : Preprocess
        How pictures become model inputs.
    channels_first : bool
        Preprocessed inputs are (N, C, H, W).
    size : int
        Items per batch.
    photos : bool
        Keep each raw picture for drawing on.
    own_size : bool
        Feed pictures no larger than ``pre.size`` at their own size.
    per_photo : callable, optional
        Each photo's own Preprocess from its (height, width); one batch per run of one size.
    """

    def __init__(
        self,
        images: object,
        pre: Preprocess,
        *,
        channels_first: bool = False,
        size: int = 32,
        photos: bool = True,
        own_size: bool = False,
        per_photo: Sizes = None,
    ) -> None:
        self.items = list(enumerate(_expand(images, channels_first)))
        if not self.items:
            raise no_usable_image([])
        self.pre = pre
        self.size = max(1, size)
        self.photos = photos
        self.own_size = own_size
        self.per_photo = per_photo

    def __len__(self) -> int:
        return len(self.items)

    @property
    def pictures(self) -> bool:
        """True when some item is a picture (the preprocessing applies), not a model input."""
        return any(not item.preprocessed for _, item in self.items)

    def __iter__(self) -> Iterator[tuple[Batch | None, list[Failure]]]:
        shape: tuple[int, ...] | None = None
        for start in range(0, len(self.items), self.size):
            group = self.items[start : start + self.size]
            batches, failures = _assemble(
                group, self.pre, shape=shape, photos=self.photos, own_size=self.own_size,
                per_photo=self.per_photo,
            )  # fmt: skip
            if not batches:
                yield None, failures
            for i, batch in enumerate(batches):
                shape = batch.inputs.shape[1:]
                yield batch, failures if i == 0 else []
