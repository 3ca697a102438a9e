"""What every backend does the same way: layer choice and its error messages.

Backends find their layers in their own framework; turning the found layers
and a requested name into a choice, or into a helpful one-line error, is
written once here.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from ..errors import LayerNotFound
from .base import LayerInfo, select_default_layer

__all__ = ["default_layer", "missing_layer", "no_feature_map", "suggest_layers"]


def suggest_layers(layer: str, infos: Sequence[LayerInfo]) -> str:
    """Up to five usable layers to suggest for a wrong ``layer``: near matches, else the last."""
    names = [info.name for info in infos]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.3)
    return ", ".join(close or names[-5:]) or "(none)"


def default_layer(infos: Sequence[LayerInfo]) -> str:
    """The default layer's name, or the error that says why there is none."""
    chosen = select_default_layer(list(infos))
    if chosen is None:
        raise LayerNotFound(
            "layer: the model has no layer with a 4-D output (N, C, h, w) of more "
            "than one position; a CAM needs a convolutional feature map"
        )
    return chosen.name


def no_feature_map(layer: str, infos: Sequence[LayerInfo]) -> LayerNotFound:
    """The error for a layer that exists but gives no usable feature map."""
    return LayerNotFound(
        f"layer: {layer!r} exists but gives no 4-D feature map for this input "
        f"(a CAM needs (N, C, h, w)); try one of: {suggest_layers(layer, infos)}"
    )


def missing_layer(
    layer: str, all_names: Sequence[str], infos: Sequence[LayerInfo], close: Sequence[str] = ()
) -> LayerNotFound:
    """The error for a name the model does not have, with the nearest names it does have."""
    near = list(close) or difflib.get_close_matches(layer, list(all_names), n=5, cutoff=0.4)
    hint = ", ".join(near) if near else suggest_layers(layer, infos)
    return LayerNotFound(f"layer: the model has no layer {layer!r}; did you mean: {hint}?")
