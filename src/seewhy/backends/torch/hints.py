"""What a PyTorch model says about its own input, read without changing it.

In order: timm's data config (``hints_timm``), a Hugging Face config with its
image processor (``hints_hf``), a torchvision model object's family
(``hints_torchvision``: its DEFAULT weights' recipe, said to be assumed);
then the first convolution's input channels; and for a model whose size is
fixed (a Flatten head) and otherwise unknown, the size found by trying a few
common ones. The model's own complaint about its input becomes one line here.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ...preprocess import IMAGENET
from ..hints import ModelHints
from .hints_hf import hugging_face_hints
from .hints_timm import timm_hints
from .hints_torchvision import torchvision_hints
from .structure import call_model, eval_mode, is_scripted

__all__ = ["model_hints"]

#: Sizes tried, after the default, on a model that says nothing and rejects 224 px.
TRIED_SIZES = (32, 28, 64, 96, 128, 256, 299, 384, 512, 16, 48)


def model_hints(
    model: nn.Module, device: torch.device, dtype: torch.dtype, *, try_sizes: bool = True
) -> ModelHints:
    """Everything ``model`` declares about its input (see the module docstring).

    ``try_sizes=False`` reads only: the model is not run to find its size.
    """
    hints = timm_hints(model) or hugging_face_hints(model) or torchvision_hints(model)
    channels = hints.channels if hints else None
    channels = channels or _first_conv_channels(model)
    if hints is not None and (hints.size is not None or hints.preprocess is not None):
        return replace(hints, channels=channels)
    labels = hints.labels if hints else None
    source = [hints.source] if hints and hints.source else []
    if channels is not None:
        source.append("first convolution")
    size = _size_by_trying(model, channels or 3, device, dtype) if try_sizes else None
    if size is not None:
        source.append("sizes tried")
    value_range = hints.value_range if hints else None
    return ModelHints(size, channels, None, labels, ", ".join(source), value_range)


def _first_conv_channels(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


def _size_by_trying(
    model: nn.Module, channels: int, device: torch.device, dtype: torch.dtype
) -> tuple[int, int] | None:
    """The first size the model takes; None when that is the default 224 px, or none works."""
    if is_scripted(model):
        return None  # its code may do anything; its errors are its own
    for side in (IMAGENET.size[0], *TRIED_SIZES):
        probe = torch.zeros((1, channels, side, side), device=device, dtype=dtype)
        try:
            with eval_mode(model), torch.no_grad():
                call_model(model, probe)
        except Exception:  # any refusal of this size: try the next
            continue
        return None if side == IMAGENET.size[0] else (side, side)
    return None
