"""Pick the backend for a model object (per model, not per process)."""

from __future__ import annotations

import sys
from typing import Any

from ..errors import BackendError
from .base import Backend, Capture, LayerInfo, select_default_layer

__all__ = ["Backend", "Capture", "LayerInfo", "backend_for", "select_default_layer"]


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
    raise BackendError(
        f"model: expected a torch.nn.Module or a keras.Model, got {type(model).__module__}."
        f"{type(model).__qualname__}"
    )
