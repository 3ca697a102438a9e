"""Guided Backprop for Keras 3 models on any Keras backend, without touching the model.

Keras 3 reaches ReLU and ReLU6 through two module functions,
``keras.src.backend.nn.relu`` and ``relu6``: ``activation="relu"``,
``keras.activations.relu`` (also with ``max_value=6``), ``keras.ops.relu`` and
the ``ReLU`` layer all call them. For the duration of :func:`guided_relu`
those two module attributes are replaced by versions whose gradient follows
the guided rule (the gradient passes where the unit is active, 0 < x <
upper, and is itself positive), written with the framework's own custom
gradient: ``tf.custom_gradient``, ``jax.custom_vjp`` or a
``torch.autograd.Function``. They are put back in ``finally``. No layer,
activation or weight of the model is edited.

Two things the caller (the Keras backend) must do:

* compiled passes (``tf.function``, ``jax.jit``) capture these functions when
  they are traced, so a guided pass must be traced *inside* this context and
  cached under its own key (include ``guided`` in the cache key);
* ``guided_relu()`` yields a :class:`GuidedCount`; if ``count.hits`` is 0
  after the (traced) forward pass no ReLU was seen (e.g. a tf.keras 2 model
  or GELU activations) and the result is a plain gradient: warn.

The module attributes are process-wide, so one guided pass holds the patch
at a time (a process-wide lock), and the patched functions act as guided
only in the thread that installed them: another thread's pass over another
model, or a function it traces meanwhile, gets the plain ReLU.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ...errors import BackendError

__all__ = ["GuidedCount", "guided_functions", "guided_relu"]

Fn = Callable[[Any], Any]
_PATCH = threading.RLock()  # one thread at a time holds keras' relu / relu6 patched


@dataclass
class GuidedCount:
    """How many ReLU / ReLU6 calls went through the guided functions."""

    hits: int = 0


def _tensorflow(count: GuidedCount) -> tuple[Fn, Fn]:
    import tensorflow as tf

    def make(upper: float | None) -> Fn:
        @tf.custom_gradient  # type: ignore[untyped-decorator]
        def guided(x: Any) -> Any:
            y = tf.nn.relu(x) if upper is None else tf.nn.relu6(x)

            def grad(dy: Any) -> Any:
                active = x > 0 if upper is None else tf.logical_and(x > 0, x < upper)
                keep = tf.logical_and(active, dy > 0)
                return dy * tf.cast(keep, dy.dtype)

            return y, grad

        def call(x: Any) -> Any:
            count.hits += 1
            return guided(tf.convert_to_tensor(x))

        return call

    return make(None), make(6.0)


def _jax(count: GuidedCount) -> tuple[Fn, Fn]:
    import jax
    import jax.numpy as jnp

    def make(upper: float | None) -> Fn:
        @jax.custom_vjp
        def guided(x: Any) -> Any:
            return jnp.maximum(x, 0) if upper is None else jnp.clip(x, 0, upper)

        def forward(x: Any) -> tuple[Any, Any]:
            return guided(x), x

        def backward(x: Any, dy: Any) -> tuple[Any]:
            active = x > 0 if upper is None else (x > 0) & (x < upper)
            return (jnp.where(active & (dy > 0), dy, jnp.zeros_like(dy)),)

        guided.defvjp(forward, backward)

        def call(x: Any) -> Any:
            count.hits += 1
            return guided(jnp.asarray(x))

        return call

    return make(None), make(6.0)


def _torch(count: GuidedCount) -> tuple[Fn, Fn]:
    import torch

    from ..torch.guided import GuidedClamp

    def make(upper: float | None) -> Fn:
        def call(x: Any) -> Any:
            count.hits += 1
            return GuidedClamp.apply(torch.as_tensor(x), upper, False)

        return call

    return make(None), make(6.0)


def guided_functions(backend: str, count: GuidedCount | None = None) -> tuple[Fn, Fn]:
    """Guided (relu, relu6) for a Keras backend name."""
    count = count if count is not None else GuidedCount()
    makers = {"tensorflow": _tensorflow, "jax": _jax, "torch": _torch}
    if backend not in makers:
        raise BackendError(
            f"guided: Guided Backprop supports the tensorflow, jax and torch Keras backends, "
            f"not {backend!r}"
        )
    return makers[backend](count)


@contextlib.contextmanager
def guided_relu() -> Iterator[GuidedCount]:
    """Route Keras 3's ReLU / ReLU6 through the guided rule for the duration."""
    import keras
    from keras.src import backend as keras_backend

    count = GuidedCount()
    relu, relu6 = guided_functions(keras.backend.backend(), count)
    module = keras_backend.nn
    with _PATCH:
        saved = (module.relu, module.relu6)
        try:
            module.relu = _in_this_thread(relu, saved[0])
            module.relu6 = _in_this_thread(relu6, saved[1])
            yield count
        finally:
            module.relu, module.relu6 = saved


def _in_this_thread(guided: Fn, plain: Callable[..., Any]) -> Callable[..., Any]:
    """``guided`` when called from the thread that made it, ``plain`` from any other."""
    owner = threading.get_ident()

    def call(x: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != owner:
            return plain(x, *args, **kwargs)
        return guided(x)

    return call
