"""What a torch model is made of, and running it without changing it.

Layer lookup, the traced list of layers with 4-D outputs, detection of
modules that hooks cannot see (TorchScript, torch.export), and the two rules
every pass keeps: the training flag of every module is put back exactly as it
was, and torch.export's shape guards become a one-line error.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ...errors import BackendError, UnsupportedModel
from ..base import LayerInfo

__all__ = [
    "call_model",
    "call_of",
    "eval_mode",
    "layer_trace",
    "named_layers",
    "opaque_error",
    "this_thread_only",
]

# model -> {(input shape, module count): layer trace}; one traced forward per model and shape.
_TRACE_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], list[LayerInfo]]] = (
    weakref.WeakKeyDictionary()
)


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every submodule by its dotted name (the model itself, named "", left out)."""
    return {name: m for name, m in model.named_modules() if name}


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then every module's own flag back."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        for module, _ in flags:
            module.training = False
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def this_thread_only(hook: Callable[..., Any]) -> Callable[..., Any]:
    """``hook`` acting only on forwards run by the thread that made it.

    The model's lock keeps seewhy's own passes apart; this keeps a pass's hook
    out of a forward that the user's code runs on the same model in another
    thread meanwhile.
    """
    owner = threading.get_ident()

    def guarded(module: nn.Module, args: Any, output: Any) -> Any:
        if threading.get_ident() != owner:
            return None
        return hook(module, args, output)

    return guarded


def call_model(model: nn.Module, inputs: torch.Tensor) -> Any:
    """``model(inputs)``, with torch.export's shape guard said in one line."""
    try:
        return model(inputs)
    except AssertionError as exc:  # torch.export guards on input shapes
        if "Guard failed" not in str(exc):
            raise
        raise BackendError(
            f"model: the exported model rejects inputs of shape {tuple(inputs.shape)} "
            f"({exc}); export it with a dynamic batch dimension (torch.export.Dim)"
        ) from None


def layer_trace(
    model: nn.Module,
    shape: tuple[int, ...],
    inputs: Callable[[], torch.Tensor],
    modules: dict[str, nn.Module] | None = None,
) -> list[LayerInfo]:
    """The layers with 4-D outputs for inputs of ``shape``, traced once per model and shape.

    ``inputs`` makes the one image the trace runs (only when it is not cached);
    ``modules`` is the model's ``named_layers`` when the caller has it already.
    """
    modules = named_layers(model) if modules is None else modules
    key = (shape, len(modules))
    cache = _TRACE_CACHE.setdefault(model, {})
    if key not in cache:
        cache[key] = _trace(model, inputs(), modules)
    return cache[key]


def _trace(
    model: nn.Module, inputs: torch.Tensor, modules: dict[str, nn.Module]
) -> list[LayerInfo]:
    """One forward of one image, noting each 4-D output in the order it finishes."""
    seen: dict[str, LayerInfo] = {}
    order: list[str] = []

    def make_hook(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                calls = seen[name].calls + 1 if name in seen else 1
                seen[name] = LayerInfo(name, tuple(output.shape[1:]), type(module).__name__, calls)
                if name in order:
                    order.remove(name)
                order.append(name)

        return hook

    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(this_thread_only(make_hook(name))))
        with eval_mode(model), torch.no_grad():
            call_model(model, inputs)
    except RuntimeError as exc:
        if "not supported on ScriptModules" not in str(exc):
            raise
        return []
    finally:
        for h in handles:
            h.remove()
    return [seen[name] for name in order]


def call_of(layer: str, infos: list[LayerInfo]) -> int:
    """Which call of ``layer`` (0-based) a pass reads: the last one in a forward."""
    for info in infos:
        if info.name == layer:
            return info.calls - 1
    return 0


def opaque_error(model: nn.Module) -> UnsupportedModel | None:
    """Why layer methods cannot run on ``model``, when hooks never see its layers.

    TorchScript and torch.export modules run their layers outside Python.
    """
    if not isinstance(model, (torch.jit.ScriptModule, torch.fx.GraphModule)):
        return None
    return UnsupportedModel(
        f"layer: {type(model).__name__} (TorchScript / torch.export) cannot be "
        "hooked, so layer methods need the eager model; pixel and perturbation methods "
        "(saliency, occlusion, ...) work on it"
    )
