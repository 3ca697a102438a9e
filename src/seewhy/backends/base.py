"""The data a backend hands back, in the shapes every backend shares.

What a backend can do is in :mod:`.capabilities` (small protocols, one per
capability). Backends are the only modules that import a deep-learning
framework. They speak numpy at the boundary:

* model inputs are float32 arrays in NHWC layout (the backend moves them to
  its own layout and device);
* layer activations and their gradients come back as float32 NCHW arrays, so
  the method math is written once;
* gradients with respect to the input come back in NHWC, like the input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from .._kit.scores import Score
from ..errors import InvalidInput
from .layouts import Layout, transformer_default

__all__ = [
    "FRAMEWORKS",
    "NATIVE_FRAMEWORKS",
    "PRECISIONS",
    "AttentionCapture",
    "BlockFusion",
    "Capture",
    "Framework",
    "LayerInfo",
    "NativeFramework",
    "Precision",
    "Score",
    "check_native_framework",
    "check_precision",
    "select_default_layer",
]

Precision = Literal["float32", "bfloat16", "float16"]
PRECISIONS: tuple[Precision, ...] = ("float32", "bfloat16", "float16")


def check_precision(value: Any) -> Precision:
    """The precision name, or a one-line error naming the choices."""
    for name in PRECISIONS:
        if value == name:
            return name
    raise InvalidInput(f"precision: expected one of {', '.join(PRECISIONS)}, got {value!r}")


#: What runs a model: each backend's ``framework``, recorded in ``Explanation.framework``.
Framework = Literal["torch", "keras", "onnx", "blackbox"]
FRAMEWORKS: tuple[Framework, ...] = get_args(Framework)
#: The frameworks whose own model objects seewhy loads by name, trains and opens in full.
NativeFramework = Literal["torch", "keras"]
NATIVE_FRAMEWORKS: tuple[NativeFramework, ...] = get_args(NativeFramework)


def check_native_framework(value: Any) -> NativeFramework:
    """``value`` as a :data:`NativeFramework`, or a one-line error naming the choices.

    Parameters
    ----------
    value : object
        What the user gave (``framework=``, ``--framework``).

    Returns
    -------
    NativeFramework
        ``"torch"`` or ``"keras"``.

    Raises
    ------
    InvalidInput
        Any other value.
    """
    for name in NATIVE_FRAMEWORKS:
        if value == name:
            return name
    choices = " or ".join(repr(name) for name in NATIVE_FRAMEWORKS)
    raise InvalidInput(f"framework: expected {choices}, got {value!r}")


@dataclass(frozen=True)
class LayerInfo:
    """A layer whose output is a spatial feature map (usable by a CAM)."""

    name: str
    shape: tuple[int, ...]  # output shape without the batch axis, channels first (C, h, w)
    kind: str  # the layer's class name
    calls: int = 1  # how often the layer runs in one forward pass (the last call is used)
    layout: Layout | None = None  # how the raw output is laid out (None: NCHW); see layouts.py
    feeds_attention: bool = False  # its output is the input of an attention layer


@dataclass(frozen=True)
class Capture:
    """What one forward (and optional backward) pass returns.

    ``gradients`` are d(score of the target class)/d(activations), summed over
    nothing: image ``i``'s gradient depends only on image ``i``'s score.

    On a view from ``with_head(head)`` (the ``Heads`` capability: targets
    other than classes, ``output=``, ``head=``; see :mod:`seewhy._target_plan`)
    ``logits`` are the head's target columns followed by the class logits,
    and ``targets`` index those columns.
    """

    logits: np.ndarray  # (N, K) float32, pre-softmax unless the model has none
    targets: np.ndarray  # (N,) int64, the classes the scores were taken for
    activations: np.ndarray | None = None  # (N, C, h, w) float32
    gradients: np.ndarray | None = None  # same shape as activations, or (N, H, W, C) for input


@dataclass(frozen=True)
class AttentionCapture:
    """A transformer's attention from one pass, each block's heads already fused.

    ``fused[l]`` is the method's :data:`BlockFusion` of block ``l``'s softmax
    attention (and its gradient), (N, T, T) float32 in forward order;
    ``layout`` says which tokens are the class token and the patch grid;
    ``readout`` which tokens the head reads, with their weights: ``((0, 1.0),)``
    the class token (the default), ``((0, 0.5), (1, 0.5))`` the class and
    distillation tokens averaged (DeiT), and ``patches`` the weight of the mean
    over the patch tokens (a head that averages them).
    """

    logits: np.ndarray  # (N, K) float32
    targets: np.ndarray  # (N,) int64
    layers: tuple[str, ...]  # the attention layers, in forward order
    fused: tuple[np.ndarray, ...]
    layout: Layout  # tokens: prefix (class token first) and (h, w) grid
    readout: tuple[tuple[int, float], ...] = ((0, 1.0),)
    patches: float = 0.0


BlockFusion = Callable[[Any, Any], Any]
"""A method's reduction of one block: ``fuse(A, dA)`` with A the softmax attention
(N, heads, T, T) and dA = d(score)/dA (None without gradients) -> (N, T, T). Written
with the operators numpy and torch share (``*``, ``.mean(1)``, ``.clip(min=0)``), so
each backend runs it in its own framework and on the model's device and hands back
only the (N, T, T) result, never the per-head matrices."""


def select_default_layer(layers: list[LayerInfo]) -> LayerInfo | None:
    """The last layer to finish whose output is a map with more than one position.

    A 1x1 output (a pooled vector kept 4-D) cannot localise anything, so it is
    skipped, as non-4-D outputs are. A
    vision transformer gets the input of its last attention (see
    :func:`~seewhy.backends.layouts.transformer_default`).
    """
    transformer = transformer_default(layers)
    if transformer is not None:
        return transformer
    for info in reversed(layers):
        if len(info.shape) == 3 and info.shape[1] * info.shape[2] > 1:
            return info
    return None
