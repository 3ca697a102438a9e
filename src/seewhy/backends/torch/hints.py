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
from typing import Any

import torch
from torch import nn

from ...preprocess import IMAGENET
from ...spec import ModelHints, input_rejected
from .hints_hf import hugging_face_hints
from .hints_timm import timm_hints
from .hints_torchvision import torchvision_hints

__all__ = [
    "input_mismatch",
    "model_hints",
    "not_a_picture_model",
]

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
    from .structure import call_model, eval_mode, is_scripted  # structure calls input_mismatch

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


# -- the model's own complaint about its input ---------------------------------------

_SIZE_WORDS = (
    "mat1 and mat2 shapes cannot be multiplied",
    "doesn't match model",
    "channels, but got",  # "expected input[1, 3, 28, 28] to have 1 channels, but got 3"
    "size mismatch",
    "shape '[",  # view/reshape to a fixed shape
    "is invalid for input of size",
    "must match the size of tensor",
)


def input_mismatch(exc: BaseException, shape: tuple[int, ...]) -> Exception | None:
    """The model's own complaint about the input's size or channels as one line with the fix.

    None when ``exc`` is not such a complaint (it is then the model's own error).
    """
    from ...errors import BackendError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if not any(word in text for word in _SIZE_WORDS):
        return None
    _, channels, height, width = (*shape, 0, 0, 0, 0)[:4]
    return BackendError(input_rejected(text, height, width, channels))


def not_a_picture_model(model: nn.Module, inputs: Any, exc: BaseException) -> Exception | None:
    """One line for a model that cannot take one picture batch at all, with the way out:
    a ``forward`` that needs more arguments, or a volume model (Conv3d) or a signal one
    (Conv1d). None when ``exc`` is something else. seewhy does not yet explain several
    inputs or volumes, so the line says how to get by without them."""
    from ...errors import BackendError

    missing = _missing_arguments(model, inputs) if isinstance(exc, TypeError) else None
    if missing:
        names = ", ".join(repr(n) for n in missing)
        return BackendError(
            f"model: its forward needs more than the picture ({names} without a default); "
            "seewhy passes one image batch: wrap it in a module whose forward(x) supplies "
            f"{names} (seewhy does not take several inputs yet)"
        )
    first = next((m for m in model.modules() if isinstance(m, _CONVS)), None)
    if isinstance(first, (nn.Conv3d, nn.Conv1d)) and not isinstance(exc, TypeError):
        kind, shape = (
            ("volumes", "(N, C, D, H, W)")
            if isinstance(first, nn.Conv3d)
            else ("signals", "(N, C, L)")
        )
        return BackendError(
            f"model: it takes {kind} {shape} (its first layer is a {type(first).__name__}), "
            f"and seewhy explains 2-D pictures (N, C, H, W); seewhy does not explain {kind} yet: "
            "explain a 2-D model, or wrap this one so its forward takes a picture batch"
        )
    return None


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _missing_arguments(model: nn.Module, inputs: Any) -> list[str]:
    """The parameters of ``model.forward`` that one positional input leaves without a value."""
    import inspect

    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return []
    try:
        signature.bind(inputs)
    except TypeError:
        return [
            p.name
            for p in list(signature.parameters.values())[1:]
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
    return []
