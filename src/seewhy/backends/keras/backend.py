"""The Keras backend: a built Keras 3 (or best-effort ``tf_keras``) model behind the protocol.

The passes are in :mod:`.passes`, the walk in :mod:`.walker`, the per-backend
differentiation in :mod:`.engines`; this class picks the engine, answers the
structural questions (layers, the dense head) and hands weight work to
:mod:`.weights`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import keras
import numpy as np

from ...errors import BackendError, UnsupportedModel
from ..base import Framework, LayerInfo
from ..capabilities import Attention, Devices, Gradients, Heads, Hints, Layers, Predicts, Weights
from ..common import WeightsThroughModule
from ..hints import ModelHints
from ..model_lock import one_pass_at_a_time
from . import weights
from .attention import KerasAttention
from .engines import engine_for
from .hints import input_mismatch, model_hints
from .passes import KerasPasses
from .structure import all_layers, is_dense, is_model, is_tf_keras, layout, resolve_path
from .tensors import as_float32, variable_value

__all__ = ["KerasBackend"]


class KerasBackend(
    WeightsThroughModule,
    KerasAttention,
    KerasPasses,
    Predicts,
    Hints,
    Layers,
    Gradients,
    Attention,
    Heads,
    Weights,
    Devices,
):
    """Explains a built Keras 3 model that maps (N, H, W, C) images to class scores.

    Channels-first models are fed (N, C, H, W); activations and gradients are
    returned NCHW either way, input gradients NHWC.
    """

    weights_module: ClassVar[Any] = weights  # the framework's list, copy and re-draw

    framework: Framework = "keras"

    def __init__(self, model: Any) -> None:
        if not is_model(model):
            raise BackendError(
                f"model: expected a keras.Model, got {type(model).__module__}."
                f"{type(model).__qualname__}"
            )
        if not model.built:
            raise UnsupportedModel(
                f"model: the Keras model {model.name!r} is not built yet; call it once on an "
                "input or give it a keras.Input, so that it has weights to explain"
            )
        name = keras.backend.backend()
        if is_tf_keras(model) and name != "tensorflow":
            raise BackendError(
                "model: a tf_keras (Keras 2) model needs Keras 3 on TensorFlow too "
                "(KERAS_BACKEND=tensorflow), as seewhy computes its scores with keras.ops"
            )
        engine = engine_for(name)
        if engine is None:
            raise BackendError(f"keras backend: expected tensorflow, torch or jax, got {name!r}")
        self.model = model
        self.engine = engine
        self.keras_backend = engine.name
        self.channels_first = layout(model) == "channels_first"

    def hints(self, *, try_sizes: bool = True) -> ModelHints:
        """What the model declares: ``model.inputs``, its leading preprocessing layers.

        Nothing is tried (``try_sizes`` changes nothing): Keras models say their input.
        """
        return model_hints(self.model)

    # -- layers ----------------------------------------------------------------

    @one_pass_at_a_time
    def layers(self, x: np.ndarray) -> list[LayerInfo]:
        return list(self._trace(x).infos)

    @one_pass_at_a_time
    def resolve_layer(self, layer: str | None, x: np.ndarray) -> str:
        trace = self._trace(x)
        return resolve_path(layer, trace.infos, trace.names)

    @one_pass_at_a_time
    def final_linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        dense = [
            layer
            for layer in all_layers(self.model)
            if is_dense(layer) and len(layer.kernel.shape) == 2
        ]
        if not dense:
            return None
        last = dense[-1]
        kernel = as_float32(variable_value(last.kernel))
        bias = (
            as_float32(variable_value(last.bias))
            if last.bias is not None
            else np.zeros(kernel.shape[1], np.float32)
        )
        return np.ascontiguousarray(kernel.T), bias

    def place(self, device: str | None) -> Any:
        """The model as it is: Keras places its tensors on a visible device by itself."""
        return self.model

    def pack(self, pickle_module: Any) -> Any:
        """The model itself: Ray's cloudpickle carries a Keras model as it is.

        ``seewhy.backends.unpack_model`` hands back anything that is not a
        ``PackedModel`` unchanged.
        """
        return self.model


def _input_said_in_one_line(run: Callable[..., Any]) -> Callable[..., Any]:
    """``run`` (a pass taking the NHWC inputs first) with Keras's shape refusal in one line."""

    @functools.wraps(run)
    def said(self: KerasBackend, x: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        try:
            return run(self, x, *args, **kwargs)
        except ValueError as exc:
            raise input_mismatch(exc, tuple(np.shape(x))) or exc from None

    return said


for _pass in ("predict", "capture", "input_gradients", "_trace"):
    setattr(KerasBackend, _pass, _input_said_in_one_line(getattr(KerasPasses, _pass)))
