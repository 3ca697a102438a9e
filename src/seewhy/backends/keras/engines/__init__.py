"""One engine per Keras backend; only the running backend's framework is imported."""

from __future__ import annotations

from .base import Engine

__all__ = ["Engine", "engine_for"]


def engine_for(name: str) -> Engine | None:
    """The engine for Keras backend ``name``, or None for a backend seewhy cannot drive."""
    if name == "tensorflow":
        from .tensorflow import TensorFlowEngine

        return TensorFlowEngine()
    if name == "torch":
        from .torch import TorchEngine

        return TorchEngine()
    if name == "jax":
        from .jax import JaxEngine

        return JaxEngine()
    return None
