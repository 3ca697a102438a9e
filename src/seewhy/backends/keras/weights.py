"""Weights of a Keras model for the sanity checks: list them, copy the model, re-draw them.

Copies are made with ``keras.models.clone_model`` and ``set_weights``, so the
user's model is never touched. Nested models are named ``outer/inner`` as in
the Keras backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np

from ...errors import LayerNotFound, UnsupportedModel
from .structure import sublayers

__all__ = ["copy_model", "parameter_layers", "randomize_layers"]


def _walk(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Each layer by its walker path, into nested models and composite layers
    (``structure.sublayers``: keras-hub's encoder and blocks), so a cascade goes block
    by block; a composite layer is listed itself only for weights of its own."""
    for layer in getattr(model, "layers", None) or sublayers(model):
        name = prefix + layer.name
        if isinstance(layer, keras.Model):
            yield from _walk(layer, name + "/")
        elif sublayers(layer):
            if _own(layer, "weights"):
                yield name, layer
            yield from _walk(layer, name + "/")
        else:
            yield name, layer


def _own(layer: Any, kind: str) -> list[Any]:
    """The layer's ``kind`` weights ("weights", "trainable_weights") not held by a sublayer."""
    inner = {id(w) for part in sublayers(layer) for w in part.weights}
    return [w for w in getattr(layer, kind) if id(w) not in inner]


def parameter_layers(model: Any, x: np.ndarray | None = None) -> list[tuple[str, str]]:
    """(name, class name) of each layer with weights, in the model's layer order."""
    return [(name, type(layer).__name__) for name, layer in _walk(model) if _own(layer, "weights")]


def copy_model(model: Any) -> Any:
    """A clone with the same weights (and the seewhy spec, if any)."""
    try:
        clone = keras.models.clone_model(model)
    except Exception as exc:  # subclassed models cannot be cloned
        raise UnsupportedModel(
            f"model: the sanity check needs a copy of the model and Keras cannot clone "
            f"{type(model).__name__} ({type(exc).__name__}: {exc}); use a functional or "
            "Sequential model"
        ) from exc
    clone.set_weights(model.get_weights())
    spec = getattr(model, "seewhy_spec", None)
    if spec is not None:
        clone.seewhy_spec = spec
    return clone


def randomize_layers(
    model: Any,
    names: Sequence[str],
    resample: Callable[[np.ndarray], np.ndarray],
) -> None:
    """Replace the trainable weights of the named layers by ``resample(values)``.

    Call only on a copy. Non-trainable weights (batch-norm statistics) are kept.
    """
    layers = dict(_walk(model))
    for name in names:
        layer = layers.get(name)
        if layer is None:
            raise LayerNotFound(f"layers: the model has no layer {name!r}")
        for weight in _own(layer, "trainable_weights"):
            values = np.array(weight.numpy(), dtype=np.float32)
            weight.assign(np.asarray(resample(values), dtype=values.dtype))
