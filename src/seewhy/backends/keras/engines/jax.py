"""Keras on JAX: ``jax.grad`` of the stateless call, jitted.

A ``keras.StatelessScope`` maps every variable to a jit argument, so a
compiled pass sees the weights the model has when it is run. Layer gradients
are taken with respect to a zero tensor added to the layer's output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import keras
import numpy as np

from ..walker import Walker
from .base import Pass, Step, WalkEngine, forward

__all__ = ["JaxEngine"]


def _stateless(model: Any, fn: Step) -> tuple[Callable[..., Any], Callable[[], list[Any]]]:
    """``fn`` as a pure function of (variable values, *args), and the values to pass."""
    variables = list(model.variables)

    def pure(values: list[Any], *args: Any) -> Any:
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return fn(*args)

    return pure, lambda: [v.value for v in variables]


class JaxEngine(WalkEngine):
    """Traced passes; the tracing pass needs only shapes, so it computes nothing."""

    name = "jax"

    def eager(self, fn: Any) -> Any:
        return jax.eval_shape(fn)

    def function(self, model: Any, fn: Step) -> Step:
        pure, values = _stateless(model, fn)
        compiled = jax.jit(pure)
        return lambda *arrays: compiled(values(), *arrays)

    def gradient_step(self, model: Any, walker: Walker, spec: Pass, channels_first: bool) -> Step:
        def scored(x: Any, t: Any, delta: Any, *data: Any) -> tuple[Any, dict[str, Any]]:
            walker.hook = (lambda a: a + delta) if spec.grad == "layer" else None
            score, logits, t_eff = forward(walker, x, t, spec, channels_first, data)
            return score, {"logits": logits, "targets": t_eff, "act": walker.captured}

        pure, values = _stateless(model, scored)
        wrt = 1 if spec.grad == "input" else 3  # x or delta, after the variable values
        compiled = jax.jit(jax.grad(pure, argnums=wrt, has_aux=True))

        def run(x: Any, t: Any, *data: Any) -> dict[str, Any]:
            delta = np.zeros((len(x), *spec.act_shape), np.float32)
            grad, aux = compiled(values(), x, t, delta, *data)
            return {**aux, "grad": grad}

        return run
