"""The PyTorch backend: the whole :class:`~seewhy.backends.base.Backend` protocol for an nn.Module.

The passes live in :mod:`.passes`, the layer list in :mod:`.structure`, the
weights for sanity checks in :mod:`.weights`, device placement and packing in
:mod:`.device`; this class ties them to one model.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..base import Framework, LayerInfo
from ..capabilities import (
    Attention,
    Devices,
    Gradients,
    Heads,
    Hints,
    LayerReadout,
    Layers,
    Predicts,
    Relevance,
    Weights,
)
from ..common import PackedModel, WeightsThroughModule, default_layer, missing_layer, no_feature_map
from ..extra_gradients import BiasGradients, LayerCurvature
from ..hints import ModelHints
from ..model_lock import one_pass_at_a_time
from . import weights
from .attention import TorchAttention
from .device import pack
from .extra_gradients import TorchExtraGradients
from .hints import model_hints
from .layer_readout import TorchLayerReadout
from .lrp import TorchRelevance
from .passes import TorchPasses
from .structure import before_logits, cached_trace, named_layers, opaque_error
from .targets import SigmoidHead, detector_layers
from .twin import current_model, on_twin

__all__ = ["TorchBackend"]


class TorchBackend(
    WeightsThroughModule,
    SigmoidHead,
    TorchAttention,
    TorchLayerReadout,
    TorchRelevance,
    TorchExtraGradients,
    TorchPasses,
    Predicts,
    Hints,
    Layers,
    Gradients,
    Attention,
    LayerReadout,
    Relevance,
    Heads,
    Weights,
    Devices,
    BiasGradients,
    LayerCurvature,
):
    """Explains a ``torch.nn.Module`` that maps (N, C, H, W) images to class scores.

    Every method that runs or changes the model holds the model's lock, so one
    model can be explained from several threads (one pass at a time); every
    pass runs on the model's twin (:mod:`.twin`), so a thread training the
    model meanwhile keeps its training mode and sees no hook of seewhy's.
    """

    weights_module: ClassVar[Any] = weights  # the framework's list, copy and re-draw

    framework: Framework = "torch"
    channels_first = True

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.device, self.dtype = _device_and_dtype(model)

    @on_twin
    def hints(self, *, try_sizes: bool = True) -> ModelHints:
        """What the model says about its input (timm, Hugging Face, torchvision, its layers).

        ``try_sizes=False`` runs nothing: no size is found by trying (on the twin).
        """
        net = current_model(self.model)
        return model_hints(net, self.device, self.dtype, try_sizes=try_sizes)

    # -- layers ----------------------------------------------------------------

    @on_twin
    def layers(self, x: np.ndarray) -> list[LayerInfo]:
        """The layers with spatial maps; for a module hooks cannot see, why there are none."""
        error = opaque_error(self.model)
        if error is not None:
            raise error
        return TorchPasses.layers(self, x)

    def resolve_layer(self, layer: str | None, x: np.ndarray) -> str:
        # The layer list of an input shape already traced is read without a pass: a twin
        # built only to look it up cost as much as the capture's own (~1 ms, 94 modules).
        modules = named_layers(self.model)
        infos = cached_trace(self.model, tuple(x.shape[1:]), len(modules))
        if infos is None:
            infos = self.layers(x)  # one traced forward, on the twin
        if not infos:
            error = opaque_error(self.model)
            if error is not None:
                raise error
        if layer is None:
            return default_layer(detector_layers(self.model, before_logits(self.model, infos)))
        if any(info.name == layer for info in infos):
            return layer
        if layer in modules:
            if self.layout_choice is not None:
                return layer  # the user says how to read it
            raise no_feature_map(layer, infos)
        raise missing_layer(layer, list(modules), infos)

    # -- other devices and processes -------------------------------------------

    @one_pass_at_a_time
    def place(self, device: str | None) -> nn.Module:
        model = self.model if device is None else self.model.to(device)
        self.device, self.dtype = _device_and_dtype(model)  # Module.to moves it in place
        return model

    @one_pass_at_a_time
    def pack(self, pickle_module: Any) -> PackedModel:
        return pack(self.model, pickle_module)


def _device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where the model's first parameter (or buffer) lives, and its floating dtype."""
    first: torch.Tensor | None = next(iter(model.parameters()), None)
    if first is None:
        first = next(iter(model.buffers()), None)
    where = first.device if first is not None else torch.device("cpu")
    floating = first is not None and first.is_floating_point()
    return where, first.dtype if floating and first is not None else torch.float32
