"""Keras on torch: autograd from the layer's output, made a fresh leaf, only.

The network runs without autograd up to the layer; from there a graph is
recorded and ``torch.autograd.grad`` asks for the leaf's gradient alone, so
no parameter's ``.grad`` is touched.
"""

from __future__ import annotations

from typing import Any

import keras
import torch

from ..walker import Walker
from .base import Pass, Step, WalkEngine, forward, no_gradient, not_run

__all__ = ["TorchEngine"]


def _leaf(a: Any) -> Any:
    out = a.detach().requires_grad_(True)
    torch.set_grad_enabled(True)  # a graph only from the layer on
    return out


class TorchEngine(WalkEngine):
    """Eager torch: every pass runs as it is called, under ``no_grad`` unless it needs one."""

    name = "torch"

    def eager(self, fn: Any) -> Any:
        with torch.no_grad():
            return fn()

    def function(self, model: Any, fn: Step) -> Step:
        def run(*arrays: Any) -> Any:
            with torch.no_grad():
                return fn(*(keras.ops.convert_to_tensor(a) for a in arrays))

        return run

    def gradient_step(self, model: Any, walker: Walker, spec: Pass, channels_first: bool) -> Step:
        def run(x: Any, t: Any, *data: Any) -> dict[str, Any]:
            grad_mode = torch.is_grad_enabled()
            try:
                torch.set_grad_enabled(False)
                xt = keras.ops.convert_to_tensor(x)
                tt = keras.ops.convert_to_tensor(t)
                walker.hook = _leaf if spec.grad == "layer" else None
                if spec.grad == "input":
                    xt = xt.detach().requires_grad_(True)
                    torch.set_grad_enabled(True)
                tensors = tuple(keras.ops.convert_to_tensor(d) for d in data)
                score, logits, t_eff = forward(walker, xt, tt, spec, channels_first, tensors)
                wrt = xt if spec.grad == "input" else walker.captured
                if wrt is None:
                    raise not_run(spec.layer)
                if not score.requires_grad:
                    raise no_gradient(spec.layer)
                (grad,) = torch.autograd.grad(score, wrt, allow_unused=True)
                if grad is None:
                    raise no_gradient(spec.layer)
            finally:
                torch.set_grad_enabled(grad_mode)
                walker.hook = None
            return {"logits": logits, "targets": t_eff, "act": walker.captured, "grad": grad}

        return run
