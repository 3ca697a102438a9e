"""A torch model as bytes for another process (the audit's Ray actors), and back."""

from __future__ import annotations

import io
from typing import Any

import torch
from torch import nn

from ..common import PackedModel

__all__ = ["pack", "unpack"]


def pack(model: nn.Module, pickle_module: Any) -> PackedModel:
    """``model`` as ``torch.save`` bytes, which :func:`unpack` rebuilds on the CPU.

    Pickled as is, a module that sits on the driver's ``cuda:1`` would be
    rebuilt on ``cuda:1`` in the actor, which fails on an actor with one GPU
    or none. ``pickle_module`` should be Ray's cloudpickle, so classes defined
    in the caller's script travel by value as they do through Ray itself.
    """
    buffer = io.BytesIO()
    torch.save(model, buffer, pickle_module=pickle_module)
    return PackedModel("torch", buffer.getvalue())


def unpack(packed: PackedModel) -> Any:
    """The model :func:`pack` packed, on the CPU.

    Only for bytes this program's own :func:`pack` wrote (the audit's driver,
    a moment before): they are a full pickle, never a file from elsewhere.
    """
    return torch.load(io.BytesIO(packed.blob), map_location="cpu", weights_only=False)
