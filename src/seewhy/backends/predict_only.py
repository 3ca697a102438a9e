"""What every predict-only backend shares: batched predictions, output checks, refusals.

A black-box function and an ONNX Runtime session can only be asked for
scores: no layers, no gradients, no copies of weights. One base class holds
what follows from that, written once for both: the batching (a static graph
batch, the model's preferred batch or the caller's), the move to the model's
layout, the check of what came back, and a one-line refusal for every member
of the protocol that needs more than predictions, naming what does work.
Subclasses supply ``_forward`` (one batch in the model's layout to raw
scores), ``pack`` and a description of themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from .._kit.blas import users_blas_threads
from ..errors import BackendError, InvalidInput, UnsupportedModel
from ..spec import ModelHints
from .base import Capture, LayerInfo, Precision, Score, check_precision
from .model_lock import model_lock

__all__ = ["METRICS_THAT_PREDICT", "PredictOnlyBackend", "methods_that_predict", "refuse_method"]

#: The faithfulness metrics that only ask a model for predictions.
METRICS_THAT_PREDICT = "deletion, insertion, average drop, ROAD"


def methods_that_predict() -> list[str]:
    """The registered methods that only run forward passes and read no layer."""
    from .. import registry

    return [
        name
        for name in registry.names()
        if registry.get(name).forward_only and not registry.get(name).uses_layer
    ]


def _what_works() -> str:
    return (
        f"use a method that only predicts ({', '.join(methods_that_predict())}; "
        f"metrics: {METRICS_THAT_PREDICT})"
    )


def refuse_method(backend: Any, method: Any) -> None:
    """Refuse, before any image is read, a method a predict-only ``backend`` cannot serve.

    ``method`` is a :class:`~seewhy.methods.base.Method`; other backends pass.
    """
    if not getattr(backend, "predicts_only", False):
        return
    needs = "the model's layers" if method.uses_layer else "gradients or the model's insides"
    if method.uses_layer or not method.forward_only:
        raise UnsupportedModel(
            f"method: {method.name} needs {needs}; {backend.reason}; {_what_works()}"
        )


class PredictOnlyBackend:
    """The :class:`~seewhy.backends.base.Backend` protocol for a model that only predicts.

    ``static_batch`` is the one batch size the model takes (None: any);
    ``batch`` the images per call it prefers; ``classes`` the number of
    scores it must return, where known; ``channels`` its input channels.
    """

    predicts_only: ClassVar[bool] = True  # read by refuse_method (Explainer)
    framework: str
    description: str  # "a black-box function", for messages
    reason: str  # why it only predicts, for the refusals

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

    def hints(self) -> ModelHints:
        """What the model says about its input: size and channels, and labels if it has them."""
        return self._hints

    # -- other devices and processes -----------------------------------------------

    def place(self, device: str | None) -> Any:
        """The model as it is: a function or a session runs where it was set up to run."""
        return self.model

    def pack(self, pickle_module: Any) -> Any:
        raise NotImplementedError

    # -- everything that needs more than predictions: refused in one line ----------

    def _refuse(self, member: str) -> UnsupportedModel:
        return UnsupportedModel(f"{member}: {self.reason}; {_what_works()}")

    def layers(self, x: np.ndarray) -> list[LayerInfo]:
        raise self._refuse("layers")

    def resolve_layer(self, layer: str | None, x: np.ndarray) -> str:
        raise self._refuse("layer")

    def capture(
        self,
        x: np.ndarray,
        *,
        layer: str,
        targets: np.ndarray | None,
        gradients: bool,
        score: Score = "logit",
    ) -> Capture:
        raise self._refuse("layer activations")

    def input_gradients(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        score: Score = "logit",
        guided: bool = False,
    ) -> Capture:
        raise self._refuse("input gradients")

    def final_linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        raise self._refuse("final linear layer")

    def predict_with_layer_edit(
        self,
        x: np.ndarray,
        *,
        layer: str,
        scales: np.ndarray,
        batch_size: int | None = None,
    ) -> np.ndarray:
        raise self._refuse("layer edit")

    def parameter_layers(self, x: np.ndarray | None = None) -> list[tuple[str, str]]:
        raise self._refuse("weights (sanity checks)")

    def copy_model(self) -> Any:
        raise self._refuse("weights (sanity checks)")

    def randomize_layers(
        self, names: Sequence[str], resample: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        raise self._refuse("weights (sanity checks)")
