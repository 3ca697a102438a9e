"""What every predict-only backend shares: batched predictions and output checks.

A black-box function and an ONNX Runtime session can only be asked for
scores: no layers, no gradients, no copies of weights. One base class holds
what follows from that, written once for both: the batching (a static graph
batch, the model's preferred batch or the caller's), the move to the model's
layout and the check of what came back. It declares only the capabilities it
has (:class:`Predicts`, :class:`Hints`, :class:`Devices`), so
:func:`~seewhy.backends.capabilities.require` refuses every other method in
one line, with ``reason`` saying why. Subclasses supply ``_forward`` (one
batch in the model's layout to raw scores), ``pack`` and a description of
themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._kit.blas import users_blas_threads
from ..errors import BackendError, InvalidInput
from .base import Framework, Precision, check_precision
from .capabilities import Devices, Hints, Predicts
from .hints import ModelHints
from .model_lock import model_lock

__all__ = ["PredictOnlyBackend"]


class PredictOnlyBackend(Predicts, Hints, Devices):
    """The capabilities of a model that only predicts: predictions, hints, devices.

    ``static_batch`` is the one batch size the model takes (None: any);
    ``batch`` the images per call it prefers; ``classes`` the number of
    scores it must return, where known; ``channels`` its input channels.
    """

    framework: Framework
    description: str  # "a black-box function", for messages
    reason: str  # why it only predicts: the refusals of other methods say it

    def __init__(
        self,
        model: Any,
        *,
        channels_first: bool,
        batch: int,
        static_batch: int | None = None,
        classes: int | None = None,
        channels: int | None = None,
        hints: ModelHints | None = None,
    ) -> None:
        self.model = model
        self.channels_first = channels_first
        self.batch = batch
        self.static_batch = static_batch
        self.classes = classes
        self.channels = channels
        self._hints = hints or ModelHints()

    # -- what such a model does: predict -----------------------------------------

    def _forward(self, x: np.ndarray) -> Any:
        """Raw scores for one batch ``x`` in the model's own layout (NCHW or NHWC)."""
        raise NotImplementedError

    def _model_input(self, chunk: np.ndarray) -> np.ndarray:
        """``chunk`` (NHWC) in the model's layout, as a contiguous array of its own."""
        return np.ascontiguousarray(chunk.transpose(0, 3, 1, 2) if self.channels_first else chunk)

    def predict(
        self, x: np.ndarray, *, batch_size: int | None = None, precision: Precision = "float32"
    ) -> np.ndarray:
        if check_precision(precision) != "float32":
            raise InvalidInput(
                f"precision: {self.description} runs at the precision it was built with; "
                f"use float32, got {precision!r}"
            )
        x = np.asarray(x, dtype=np.float32)
        self._check_input(x)
        step = self.static_batch or batch_size or self.batch
        rows = []
        with model_lock(self.model), users_blas_threads():  # the model's or the user's code
            for start in range(0, len(x), step):
                chunk = x[start : start + step]
                rows.append(self._scores(chunk))
        if not rows:
            return np.zeros((0, self.classes or 0), dtype=np.float32)
        return rows[0] if len(rows) == 1 else np.concatenate(rows)

    def _scores(self, chunk: np.ndarray) -> np.ndarray:
        """Checked (n, K) float32 scores of ``chunk``; padded to a static batch and cut back."""
        count = len(chunk)
        if self.static_batch is not None and count < self.static_batch:
            padding = np.zeros((self.static_batch - count, *chunk.shape[1:]), np.float32)
            chunk = np.concatenate([chunk, padding])
        scores = self._check_scores(self._forward(self._model_input(chunk)), len(chunk))
        return scores[:count]

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim != 4:
            raise InvalidInput(f"inputs: expected a batch (N, H, W, C), got shape {x.shape}")
        if self.channels is not None and x.shape[-1] != self.channels:
            raise InvalidInput(
                f"inputs: {self.description} takes {self.channels} channel(s), got images with "
                f"{x.shape[-1]}; pass a seewhy.Preprocess for its input or matching arrays"
            )
        size = self._hints.size
        if size is not None and tuple(x.shape[1:3]) != size:
            raise InvalidInput(
                f"inputs: {self.description} takes {size[0]}x{size[1]} images, got "
                f"{x.shape[1]}x{x.shape[2]}; pass preprocess=seewhy.Preprocess(size={size})"
            )

    def _check_scores(self, out: Any, count: int) -> np.ndarray:
        """``out`` as (count, K) float32, or a one-line error naming what came back."""
        wanted = f"(N, K) = ({count}, {self.classes or 'K'})"
        try:
            scores = np.asarray(out)
        except Exception as exc:
            raise BackendError(
                f"model output: expected scores {wanted} as a numpy array, got "
                f"{type(out).__name__} ({exc})"
            ) from exc
        if scores.dtype.kind not in "fiu":
            raise BackendError(
                f"model output: expected real numbers, got {type(out).__name__} of dtype "
                f"{scores.dtype}"
            )
        known = self.classes
        if scores.ndim != 2 or len(scores) != count or (known and scores.shape[1] != known):
            if scores.shape == (count,):
                hint = "; return scores.reshape(-1, 1) for one score per input"
            elif scores.ndim == 2 and len(scores) != count:
                hint = "; return one row per input"
            else:
                hint = f"; K = {known} is the model's class count" if known else ""
            raise BackendError(
                f"model output: expected scores of shape {wanted}, got {scores.shape}{hint}"
            )
        if self.classes is None:
            self.classes = int(scores.shape[1])  # every later batch must give as many
        return scores.astype(np.float32, copy=False)

    def preferred_batch_size(self, x: np.ndarray, precision: Precision = "float32") -> int:
        check_precision(precision)
        return self.static_batch or self.batch

    def hints(self, *, try_sizes: bool = True) -> ModelHints:
        """What the model says about its input: size and channels, and labels if it has them.

        Read when the backend was made; nothing is tried (``try_sizes`` changes nothing).
        """
        return self._hints

    # -- other devices and processes -----------------------------------------------

    def place(self, device: str | None) -> Any:
        """The model as it is: a function or a session runs where it was set up to run."""
        return self.model

    def pack(self, pickle_module: Any) -> Any:
        raise NotImplementedError
