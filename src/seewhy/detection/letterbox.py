"""What an ultralytics model's pictures become, read from the model.

A YOLO detector or segmenter is fed its photo *letterboxed*: resized with
its aspect kept to fit ``imgsz`` (the size it was trained at, kept in the
checkpoint's args), centred, the rest filled with grey 114, resized by
OpenCV without antialiasing, pixels scaled to 0..1 (ultralytics'
``LetterBox``). A classifier is fed a short-side resize and a centre crop
(``classify_transforms``). As a :class:`~seewhy.preprocess.Preprocess`,
seewhy feeds the same pixels and takes maps and boxes back onto the photo
through the same geometry (:meth:`~seewhy.preprocess.Preprocess.plan`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..preprocess import Preprocess

__all__ = ["LETTERBOX_FILL", "classify_preprocess", "imgsz_of", "letterbox", "opencv_resize"]

#: ultralytics' padding grey (``LetterBox.padding_value``).
LETTERBOX_FILL = 114

#: ultralytics' default ``imgsz`` when neither the model nor the YOLO object names one.
DEFAULT_IMGSZ = 640


def letterbox(size: tuple[int, int]) -> Preprocess:
    """ultralytics' ``LetterBox(size, auto=False, center=True)`` and its 0..1 scaling.

    Parameters
    ----------
    size : (int, int)
        (H, W) the model is fed, multiples of its stride.

    Returns
    -------
    Preprocess
    """
    return Preprocess(
        size=size,
        resize=size,
        fit="contain",
        fill=(LETTERBOX_FILL,) * 3,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        interpolation="bilinear",
        resampler="opencv",
    )


def classify_preprocess(size: tuple[int, int]) -> Preprocess:
    """ultralytics' ``classify_transforms``: short side (or both sides) resized, centre crop, 0..1.

    Parameters
    ----------
    size : (int, int)
        (H, W) the classifier is fed.

    Returns
    -------
    Preprocess
    """
    square = size[0] == size[1]
    return Preprocess(
        size=size,
        resize=size[0] if square else size,
        fit="short" if square else "stretch",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        interpolation="bilinear",
    )


def imgsz_of(owner: Any, net: Any) -> tuple[tuple[int, int], str]:
    """The (H, W) a YOLO model is fed and where it was read: the YOLO object's overrides,
    the model's training args, else ultralytics' 640; rounded up to the stride as
    ultralytics' ``check_imgsz`` does."""
    found, where = None, f"ultralytics' default {DEFAULT_IMGSZ}"
    overrides = getattr(owner, "overrides", None)
    if isinstance(overrides, dict) and overrides.get("imgsz"):
        found, where = overrides["imgsz"], "the YOLO object's imgsz"
    else:
        args = getattr(net, "args", None)
        value = args.get("imgsz") if isinstance(args, dict) else getattr(args, "imgsz", None)
        if value:
            found, where = value, "the model's training args (imgsz)"
    sides = _sides(DEFAULT_IMGSZ if found is None else found)
    stride = _stride(net)
    sized = tuple(max(stride, -(-side // stride) * stride) for side in sides)
    return (sized[0], sized[1]), where


def _sides(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return int(value[0]), int(value[0])
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _stride(net: Any) -> int:
    """The model's largest stride (32 for YOLOv8n); a tensor, a number, or missing (32)."""
    stride: Any = getattr(net, "stride", None)
    if stride is None:
        return 32
    values = np.asarray(stride.tolist() if hasattr(stride, "tolist") else stride, dtype=float)
    return max(1, int(values.max()))


_CV2_FILTERS = {"nearest": 0, "bilinear": 1, "bicubic": 2, "box": 3, "lanczos": 4}


def opencv_resize(rgb: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """uint8 (H, W, 3) -> (size[0], size[1], 3) as ``cv2.resize`` makes it (no antialiasing).

    Parameters
    ----------
    rgb : numpy.ndarray
        The picture.
    size : (int, int)
        (H, W) wanted.
    interpolation : str
        seewhy's filter name ("box" is OpenCV's area filter).

    Returns
    -------
    numpy.ndarray
    """
    try:
        import cv2
    except ImportError:
        raise InvalidInput(
            "preprocess: resampler='opencv' needs OpenCV; pip install opencv-python-headless "
            "(or seewhy[detect]), or use resampler='pillow'"
        ) from None
    if interpolation not in _CV2_FILTERS:
        raise InvalidInput(
            f"preprocess: resampler='opencv' has no {interpolation!r} filter; use one of "
            f"{', '.join(_CV2_FILTERS)}"
        )
    flag = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA,
            cv2.INTER_LANCZOS4)[_CV2_FILTERS[interpolation]]  # fmt: skip
    out = cv2.resize(np.ascontiguousarray(rgb), (int(size[1]), int(size[0])), interpolation=flag)
    return np.asarray(out, dtype=np.uint8).reshape(int(size[0]), int(size[1]), -1)
