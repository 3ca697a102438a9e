"""Black-box models: any function from a batch of prepared inputs to class scores.

``seewhy.BlackBox(fn)`` says how to call ``fn`` (layout, batch, input size,
classes); a plain callable passed to ``explain`` is wrapped with the
defaults. Only predictions are asked of it, so every method that only
predicts works (occlusion, RISE, LIME, Kernel SHAP) with the metrics that
only predict (deletion, insertion, Average Drop, ROAD).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._kit.checks import bad_argument, flag, optional_positive_int, positive_int
from ..errors import BackendError
from .base import Framework
from .common import PackedModel
from .hints import ModelHints
from .predict_only import PredictOnlyBackend

__all__ = ["BlackBox", "BlackBoxBackend", "blackbox_backend", "unpack"]

#: Inputs per call to a function that names no batch size of its own.
DEFAULT_BATCH = 32


class BlackBox:
    """A function ``fn(batch) -> scores`` explained by the methods that only predict.

    ``fn`` takes a float32 batch of prepared inputs, (N, H, W, C) or (N, C, H, W)
    with ``channels_first=True``, and returns (N, K) scores as an array (numpy, or
    anything ``numpy.asarray`` reads). It gets arrays of its own: changing them
    in place changes nothing else. ``batch_size`` caps the inputs per call
    (default 32); ``classes`` is K or the K class names; ``size`` (H, W) and
    ``channels`` describe the input ``fn`` expects; ``name`` names the model in
    results. Scores are taken as logits unless ``score="probability"`` is asked.

    Parameters
    ----------
    fn : callable
        From a float32 batch of prepared inputs to (N, K) scores.
    channels_first : bool
        ``fn`` takes (N, C, H, W) rather than (N, H, W, C).
    batch_size : int, optional
        Most inputs per call (default 32).
    classes : int or sequence of str, optional
        K, or the K class names.
    size : int or (int, int), optional
        The input size ``fn`` expects, (H, W).
    channels : int
        Channels of the input ``fn`` expects.
    name : str, optional
        The model's name in results (default: the function's).
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], Any],
        *,
        channels_first: bool = False,
        batch_size: int | None = None,
        classes: int | Sequence[str] | None = None,
        size: int | tuple[int, int] | None = None,
        channels: int = 3,
        name: str | None = None,
    ) -> None:
        if not callable(fn):
            raise bad_argument(
                "fn", "a function from a batch of inputs to scores", fn, where="BlackBox"
            )
        self.fn = fn
        self.channels_first = flag(channels_first, "channels_first", where="BlackBox")
        self.batch_size = optional_positive_int(batch_size, "batch_size", where="BlackBox")
        self.labels = _labels(classes)
        self.classes = len(self.labels) if self.labels is not None else _count(classes)
        self.size = _size(size)
        self.channels = positive_int(channels, "channels", where="BlackBox")
        if name is not None and not isinstance(name, str):
            raise bad_argument("name", "a str or None", name, where="BlackBox")
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def __call__(self, batch: np.ndarray) -> Any:
        """``fn(batch)``: a BlackBox is still the function it wraps."""
        return self.fn(batch)

    def __repr__(self) -> str:
        layout = "NCHW" if self.channels_first else "NHWC"
        return f"BlackBox({self.name}, {layout})"


def _labels(classes: object) -> tuple[str, ...] | None:
    if isinstance(classes, Sequence) and not isinstance(classes, str):
        names = tuple(classes)
        if names and all(isinstance(n, str) for n in names):
            return names
        raise bad_argument(
            "classes", "a number of classes or their names (str)", classes, where="BlackBox"
        )
    return None


def _count(classes: object) -> int | None:
    if isinstance(classes, str):
        raise bad_argument(
            "classes", "a number of classes or their names (str)", classes, where="BlackBox"
        )
    return optional_positive_int(classes, "classes", where="BlackBox")


def _size(size: object) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        side = positive_int(size, "size", where="BlackBox")
        return side, side
    if isinstance(size, Sequence) and len(size) == 2:
        return (
            positive_int(size[0], "size", where="BlackBox"),
            positive_int(size[1], "size", where="BlackBox"),
        )
    raise bad_argument("size", "an int or (height, width)", size, where="BlackBox")


class BlackBoxBackend(PredictOnlyBackend):
    """The backend of a :class:`BlackBox`: calls its function batch by batch."""

    framework: Framework = "blackbox"
    description = "a black-box function"
    reason = "a black-box function gives only its scores"

    def __init__(self, box: BlackBox) -> None:
        super().__init__(
            box,
            channels_first=box.channels_first,
            batch=box.batch_size or DEFAULT_BATCH,
            classes=box.classes,
            channels=box.channels,
            hints=ModelHints(
                size=box.size,
                channels=box.channels,
                labels=box.labels,
                source=f"seewhy.BlackBox({box.name})",
            ),
        )
        self.fn = box.fn

    def _model_input(self, chunk: np.ndarray) -> np.ndarray:
        if self.channels_first:
            return np.ascontiguousarray(chunk.transpose(0, 3, 1, 2))
        return chunk.copy()  # the function's own: an in-place change stays there

    def _forward(self, x: np.ndarray) -> Any:
        return self.fn(x)  # with the user's BLAS threads: see PredictOnlyBackend.predict

    def pack(self, pickle_module: Any) -> PackedModel:
        """The BlackBox pickled with ``pickle_module`` (Ray's cloudpickle takes lambdas)."""
        return PackedModel("blackbox", pickle_module.dumps(self.model))


def blackbox_backend(model: Any) -> BlackBoxBackend | None:
    """The backend of a :class:`BlackBox`, or of a plain callable wrapped with the defaults."""
    if isinstance(model, BlackBox):
        return BlackBoxBackend(model)
    if callable(model) and not isinstance(model, type):
        return BlackBoxBackend(BlackBox(model))
    return None


def unpack(packed: PackedModel) -> BlackBox:
    """The BlackBox that :meth:`BlackBoxBackend.pack` pickled (this program's own bytes)."""
    box = pickle.loads(packed.blob)
    if not isinstance(box, BlackBox):
        raise BackendError(f"model: expected a packed BlackBox, got {type(box).__name__}")
    return box
