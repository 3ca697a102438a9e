"""Listing, copying and re-drawing a torch model's weights (what sanity checks ask).

Only copies are ever changed (``copy.deepcopy``); the user's model, its
training flags and its ``.grad`` stay exactly as they were. The random values
come from the caller (numpy), so every framework draws the same numbers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ...errors import LayerNotFound
from .structure import is_scripted, this_thread_only
from .twin import run_on_twin

__all__ = ["copy_model", "parameter_layers", "randomize_layers"]


def parameter_layers(model: nn.Module, x: np.ndarray | None = None) -> list[tuple[str, str]]:
    """(name, class name) of each module that holds parameters itself, in forward order.

    With an input ``x`` (NHWC, one image is enough) the order is the order the
    modules run in; modules that do not run, or without ``x``, keep the order
    they were registered in. TorchScript modules take no hooks: theirs keep
    the registered order.
    """
    owners = [
        (name, m)
        for name, m in model.named_modules()
        if name and any(True for _ in m.parameters(recurse=False))
    ]
    order: dict[str, int] = {}
    if x is not None and owners and not is_scripted(model):
        first = next(iter(model.parameters()))
        inputs = torch.from_numpy(np.ascontiguousarray(x[:1], dtype=np.float32))
        inputs = inputs.permute(0, 3, 1, 2).to(device=first.device, dtype=first.dtype)
        names = {name for name, _ in owners}
        run_on_twin(model, lambda net: _record_order(net, names, inputs, order))
    position = {name: i for i, (name, _) in enumerate(owners)}
    ranked = sorted(owners, key=lambda item: order.get(item[0], len(order) + position[item[0]]))
    return [(name, type(m).__name__) for name, m in ranked]


def _record_order(
    net: nn.Module, names: set[str], inputs: torch.Tensor, order: dict[str, int]
) -> None:
    """One forward of ``net`` (the model's twin), noting when each of ``names`` runs."""
    handles = []
    order.clear()  # a pass tried again starts afresh

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            order.setdefault(name, len(order))

        return hook

    try:
        for name, module in net.named_modules():
            if name in names:
                handles.append(module.register_forward_hook(this_thread_only(make_hook(name))))
        with torch.no_grad():
            net(inputs)
    finally:
        for h in handles:
            h.remove()


def copy_model(model: nn.Module) -> nn.Module:
    """An independent deep copy (weights, buffers, flags and attributes such as the spec)."""
    return copy.deepcopy(model)


def randomize_layers(
    model: nn.Module,
    names: Sequence[str],
    resample: Callable[[np.ndarray], np.ndarray],
) -> None:
    """Replace every parameter of the named modules by ``resample(values)``, in place.

    Call only on a copy. Buffers (batch-norm running statistics) are kept.
    """
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in names:
            module = modules.get(name)
            if module is None:
                raise LayerNotFound(f"layers: the model has no module {name!r}")
            for param in module.parameters():
                values = param.detach().float().cpu().numpy()
                new = torch.from_numpy(np.asarray(resample(values), dtype=np.float32))
                param.copy_(new.to(device=param.device, dtype=param.dtype))
