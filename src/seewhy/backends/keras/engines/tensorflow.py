"""Keras on TensorFlow: a GradientTape inside a ``tf.function`` per pass.

The tape watches only the layer's output (or the input), so no variable is
recorded; TensorFlow retraces a pass only when the input shapes change.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from ..walker import Walker
from .base import Pass, Step, WalkEngine, forward, no_gradient, not_run

__all__ = ["TensorFlowEngine"]


class TensorFlowEngine(WalkEngine):
    """GradientTape inside a tf.function; one eager image is cheaper than tracing a graph."""

    name = "tensorflow"

    def function(self, model: Any, fn: Step) -> Step:
        compiled = tf.function(fn, reduce_retracing=True)
        return lambda *arrays: compiled(*(tf.constant(a) for a in arrays))

    def gradient_step(self, model: Any, walker: Walker, spec: Pass, channels_first: bool) -> Step:
        def watched(x: Any, t: Any, *data: Any) -> dict[str, Any]:
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                if spec.grad == "input":
                    tape.watch(x)
                    walker.hook = None
                else:

                    def watch(a: Any) -> Any:
                        tape.watch(a)
                        return a

                    walker.hook = watch
                score, logits, t_eff = forward(walker, x, t, spec, channels_first, data)
            wrt = x if spec.grad == "input" else walker.captured
            if wrt is None:
                raise not_run(spec.layer)
            grad = tape.gradient(score, wrt)
            if grad is None:
                raise no_gradient(spec.layer)
            return {"logits": logits, "targets": t_eff, "act": walker.captured, "grad": grad}

        return self.function(model, watched)
