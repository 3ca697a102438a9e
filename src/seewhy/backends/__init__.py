"""Pick the backend for a model object (per model, not per process)."""

from __future__ import annotations

import sys
from typing import Any

from ..errors import BackendError
from .base import Capture, LayerInfo, select_default_layer
from .capabilities import Backend
from .common import PackedModel

__all__ = [
    "Backend",
    "Capture",
    "LayerInfo",
    "PackedModel",
    "backend_for",
    "select_default_layer",
    "unpack_model",
]


def _is_keras_model(model: Any) -> bool:
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.Model):
        return True
    tf_keras = sys.modules.get("tf_keras")
    return tf_keras is not None and isinstance(model, tf_keras.Model)


def backend_for(model: Any) -> Backend:
    """The backend that can run ``model``; never imports a framework the model doesn't use."""
    if isinstance(model, Backend):
        return model
    if _is_keras_model(model):  # a Keras model on the torch backend is also an nn.Module
        from .keras import KerasBackend

        return KerasBackend(model)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        from .torch import TorchBackend

        return TorchBackend(model)
    from .blackbox import blackbox_backend  # seewhy.BlackBox, plain functions
    from .onnx import onnx_backend  # imports onnxruntime only for a session or a .onnx path

    predict_only = onnx_backend(model) or blackbox_backend(model)
    if predict_only is not None:
        return predict_only
    raise BackendError(
        "model: expected a torch.nn.Module, a keras.Model, an onnxruntime.InferenceSession, "
        f"a .onnx path or a function, got {type(model).__module__}.{type(model).__qualname__}"
    )


def unpack_model(packed: Any) -> Any:
    """The model that ``Backend.pack`` packed, rebuilt on the CPU; anything else as it came.

    Only the framework that packed the model is imported, and only for bytes
    this program's own ``pack`` wrote (they may hold a full pickle).
    """
    if not isinstance(packed, PackedModel):
        return packed
    if packed.framework == "torch":
        from .torch.device import unpack

        return unpack(packed)
    if packed.framework in ("onnx", "blackbox"):
        from . import blackbox, onnx

        return (onnx if packed.framework == "onnx" else blackbox).unpack(packed)
    raise BackendError(f"model: cannot unpack a model packed by {packed.framework!r}")
