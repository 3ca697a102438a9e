"""Keras 3 backend: one forward walk, three ways to differentiate it.

A functional or Sequential model's graph is run by :mod:`.walker` itself, so
any layer, also inside nested models, is reachable without touching the
model; layers are named by their path (``"efficientnetb0/top_activation"``).
Gradients come from the engine of the running Keras backend
(:mod:`.engines`): a ``GradientTape`` in a ``tf.function`` on TensorFlow,
autograd from a fresh leaf on torch, ``jax.grad`` of the stateless call on
JAX. Scores are pre-softmax logits (a softmax head is computed beside).

Modules: ``structure`` (what a model is made of, layer paths), ``walker``,
``passes`` (the backend's passes and their caches), ``engines/``, ``guided``
(Guided Backprop's ReLU), ``weights`` (copies and randomisation for sanity
checks), ``loading`` (files and ``keras:NAME``), ``backend``
(:class:`KerasBackend`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import KerasBackend

__all__ = ["KerasBackend"]


def __getattr__(name: str) -> Any:
    """``KerasBackend`` on first use: ``.loading`` must import without Keras installed."""
    if name == "KerasBackend":
        from .backend import KerasBackend

        return KerasBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
