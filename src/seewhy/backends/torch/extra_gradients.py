"""The torch passes of FullGrad and ShapleyCAM (:mod:`..extra_gradients`).

Both keep the rules of :mod:`.passes`: the model's lock, its twin, hooks
only inside try/finally and only for this thread, gradients by
``torch.autograd.grad`` (no parameter's ``.grad`` is touched).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ...errors import BackendError, LayerNotFound
from ..base import Capture, Score
from ..extra_gradients import BiasCapture
from ..layouts import to_maps
from .passes import TorchPasses, _select
from .structure import scored_call, this_thread_only
from .twin import on_twin

__all__ = ["TorchExtraGradients", "bias_of"]

# FullGrad's layers, as its authors' code and pytorch-grad-cam pick them: exactly these
# types (a subclass such as timm's BatchNormAct2d also applies its activation)
_BIASED = (nn.Conv2d, nn.BatchNorm2d)


def bias_of(module: nn.Module) -> torch.Tensor | None:
    """The bias a layer adds to its output: a BatchNorm's as folded with its statistics."""
    if type(module) not in _BIASED or getattr(module, "bias", None) is None:
        return None
    if isinstance(module, nn.BatchNorm2d):
        if module.running_mean is None or module.running_var is None:
            return None  # batch statistics only: no fixed bias
        scale = module.weight / torch.sqrt(module.running_var + module.eps)
        return module.bias - module.running_mean * scale
    return module.bias if isinstance(module.bias, torch.Tensor) else None


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


class TorchExtraGradients(TorchPasses):
    """``bias_gradients`` and ``capture_curvature`` for the torch backend (a mixin)."""

    @on_twin
    def bias_gradients(
        self, x: np.ndarray, *, targets: np.ndarray | None, score: Score = "logit"
    ) -> BiasCapture:
        found: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # name, bias, output
        handles = []

        def hook_for(name: str, bias: torch.Tensor) -> Any:
            def hook(module: nn.Module, args: Any, output: Any) -> Any:
                if not isinstance(output, torch.Tensor) or not output.requires_grad:
                    return None
                found.append((name, bias, output))
                return output.clone()  # a later in-place op (ReLU(inplace)) must not touch it

            return this_thread_only(hook)

        inputs = self._to_tensor(x).requires_grad_(True)
        try:
            for name, module in self._net.named_modules():
                bias = bias_of(module)
                if bias is not None:
                    handles.append(module.register_forward_hook(hook_for(name, bias)))
            with torch.enable_grad():
                logits = self._scores(scored_call(self._net, inputs))
                t = self._targets(targets, logits)
                chosen = _select(logits, t, score, self._head.sigmoid)
                outputs = [output for _, _, output in found]
                grads = torch.autograd.grad(chosen.sum(), [inputs, *outputs], allow_unused=True)
        finally:
            for handle in handles:
                handle.remove()
        layer_grads = tuple(
            _numpy(torch.zeros_like(out) if g is None else g)
            for g, (_, _, out) in zip(grads[1:], found, strict=True)
        )
        input_grad = torch.zeros_like(inputs) if grads[0] is None else grads[0]
        return BiasCapture(
            logits=_numpy(logits),
            targets=t.cpu().numpy(),
            input_gradients=_numpy(input_grad.permute(0, 2, 3, 1)),
            layers=tuple(name for name, _, _ in found),
            biases=tuple(_numpy(bias) for _, bias, _ in found),
            gradients=layer_grads,
        )

    @on_twin
    def capture_curvature(
        self, x: np.ndarray, *, layer: str, targets: np.ndarray | None, score: Score = "logit"
    ) -> tuple[Capture, np.ndarray]:
        module, wanted, layout = self._layer_and_call(layer, x)
        state: dict[str, Any] = {"calls": 0, "leaf": None}

        def hook(mod: nn.Module, args: Any, output: Any) -> Any:
            call = state["calls"]
            state["calls"] = call + 1
            if call != wanted:
                return None
            if not isinstance(output, torch.Tensor):
                raise LayerNotFound(f"layer: {layer!r} returns {type(output).__name__}")
            leaf = output.detach().requires_grad_(True)
            state["leaf"] = leaf
            torch.set_grad_enabled(True)  # the graph only from here to the output
            return leaf.clone()

        grad_mode = torch.is_grad_enabled()
        handle = module.register_forward_hook(this_thread_only(hook), prepend=True)
        try:
            torch.set_grad_enabled(False)
            with sdpa_kernel(SDPBackend.MATH):  # fused attention kernels have no 2nd derivative
                logits = self._scores(scored_call(self._net, self._to_tensor(x)))
            leaf = state["leaf"]
            if leaf is None:
                raise LayerNotFound(f"layer: {layer!r} did not run in the forward pass")
            t = self._targets(targets, logits)
            chosen = _select(logits, t, score, self._head.sigmoid)
            if not chosen.requires_grad:
                raise BackendError(f"layer: the output does not depend on {layer!r}")
            with sdpa_kernel(SDPBackend.MATH):
                (grad,) = torch.autograd.grad(chosen.sum(), leaf, create_graph=True)
                hvp = torch.zeros_like(leaf)
                if grad.requires_grad:  # else the score is piecewise linear here: H = 0
                    (found,) = torch.autograd.grad(grad, leaf, leaf.detach(), allow_unused=True)
                    hvp = hvp if found is None else found
        finally:
            handle.remove()
            torch.set_grad_enabled(grad_mode)
        size = (x.shape[1], x.shape[2])
        cap = Capture(
            logits=_numpy(logits),
            targets=t.cpu().numpy(),
            activations=to_maps(_numpy(leaf), layout, layer, size),
            gradients=to_maps(_numpy(grad), layout, layer, size),
        )
        return cap, to_maps(_numpy(hvp), layout, layer, size)
