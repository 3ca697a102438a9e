"""Tensors of any Keras backend (TensorFlow, torch, JAX) as numpy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_array", "as_float32", "variable_value"]


def as_array(t: Any) -> np.ndarray:
    """A backend tensor as numpy, without Keras' detour through a deprecated ``__array__``."""
    if hasattr(t, "detach"):  # torch
        return np.asarray(t.detach().cpu().numpy())
    if hasattr(t, "numpy"):  # tensorflow eager tensors
        return np.asarray(t.numpy())
    return np.asarray(t)  # jax arrays, numpy


def as_float32(t: Any) -> np.ndarray:
    """A backend tensor as a float32 numpy array (no copy when it already is one)."""
    return as_array(t).astype(np.float32, copy=False)


def variable_value(v: Any) -> Any:
    """The tensor behind a Keras 3 variable (``.value``) or a tf.Variable."""
    value = getattr(v, "value", None)
    return v if value is None or callable(value) else value
