"""The small protocol every framework backend implements.

Backends are the only modules that import a deep-learning framework. They
speak numpy at the boundary:

* model inputs are float32 arrays in NHWC layout (the backend moves them to
  its own layout and device);
* layer activations and their gradients come back as float32 NCHW arrays, so
  the method math is written once;
* gradients with respect to the input come back in NHWC, like the input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from .._kit.scores import Score
from ..errors import InvalidInput
from .layouts import Layout, transformer_default

__all__ = [
    "PRECISIONS",
    "AttentionBackend",
    "AttentionCapture",
    "Backend",
    "BlockFusion",
    "Capture",
    "LayerInfo",
    "Precision",
    "Score",
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

    On a view from a backend's optional ``with_head(head)`` (torch, Keras:
    targets other than classes, ``output=``, ``head=``; see
    :mod:`seewhy._target_plan`) ``logits`` are the head's target columns
    followed by the class logits, and ``targets`` index those columns. The
    same backends may offer ``sigmoid_output(x)`` (the model ends in a
    sigmoid) and ``detections(x)`` (a detector's boxes; None for others).
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


@runtime_checkable
class AttentionBackend(Protocol):
    """What the attention methods (rollout, generic attention) ask of a transformer's backend."""

    def attention(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        gradients: bool,
        fuse: BlockFusion,
        score: Score = "logit",
    ) -> AttentionCapture:
        """One pass: every block's attention (and d(score)/d(attention) when
        ``gradients``) reduced by ``fuse``.

        Works whatever kernel the model computes attention with (fused or not);
        the model is never changed.
        """
        ...


@runtime_checkable
class Backend(Protocol):
    """What the methods may ask of a model, whatever its framework."""

    framework: str
    channels_first: bool  # layout the model itself expects (for reading user tensors)
    model: Any  # the model this backend runs; never changed by it

    def layers(self, x: np.ndarray) -> list[LayerInfo]:
        """Layers with 4-D outputs in the order they finish, for input like ``x``."""
        ...

    def resolve_layer(self, layer: str | None, x: np.ndarray) -> str:
        """Check a layer name (or pick the default when None); raise LayerNotFound."""
        ...

    def predict(
        self, x: np.ndarray, *, batch_size: int | None = None, precision: Precision = "float32"
    ) -> np.ndarray:
        """Logits (N, K) float32 for inputs ``x``, without gradients.

        ``precision`` other than float32 runs the forward passes in reduced
        precision where the backend can (PyTorch autocast) and raises
        :class:`InvalidInput` where it cannot.
        """
        ...

    def preferred_batch_size(self, x: np.ndarray, precision: Precision = "float32") -> int:
        """Images per forward-only pass that this backend runs fastest, for inputs like ``x``."""
        ...

    def capture(
        self,
        x: np.ndarray,
        *,
        layer: str,
        targets: np.ndarray | None,
        gradients: bool,
        score: Score = "logit",
    ) -> Capture:
        """One pass: logits, the layer's activations and, if asked, their gradients.

        ``targets=None`` means each image's top-1 class.
        """
        ...

    def input_gradients(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        score: Score = "logit",
        guided: bool = False,
    ) -> Capture:
        """Gradients of the target score with respect to the input (NHWC).

        ``guided=True`` applies the Guided Backprop rule at every ReLU.
        """
        ...

    def final_linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Weights (K, C) and bias (K,) of the model's last dense layer, if it has one."""
        ...

    def predict_with_layer_edit(
        self,
        x: np.ndarray,
        *,
        layer: str,
        scales: np.ndarray,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Logits (N, E, K): each image run E times with the layer's output edited.

        Run ``e`` of image ``i`` multiplies channel ``c`` of ``layer``'s output by
        ``scales[i, e, c]`` (``scales`` may be (E, C) for all images); channels are
        those of ``capture()``'s activations. No gradients; the model is unchanged.
        Used by Ablation-CAM (a zero ablates a channel).
        """
        ...

    # -- what sanity checks and the audit ask of a model ------------------------

    def parameter_layers(self, x: np.ndarray | None = None) -> list[tuple[str, str]]:
        """(name, class name) of each layer holding weights itself, in forward order.

        With model inputs ``x`` (NHWC; one image is enough) the order is the
        order the layers run in, where the framework can tell.
        """
        ...

    def copy_model(self) -> Any:
        """An independent deep copy of the model (weights, flags, attributes such as the spec)."""
        ...

    def randomize_layers(
        self, names: Sequence[str], resample: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        """Replace every weight of the named layers by ``resample(values)``, in place.

        Only ever called on a backend over a :meth:`copy_model` copy.
        """
        ...

    def place(self, device: str | None) -> Any:
        """The model on ``device`` (``"cpu"``, ``"cuda:1"``); None or a framework that
        places itself (Keras) returns the model as it is."""
        ...

    def pack(self, pickle_module: Any) -> Any:
        """A picklable form of the model for another process (see ``backends.unpack_model``)."""
        ...


def select_default_layer(layers: list[LayerInfo]) -> LayerInfo | None:
    """The last layer to finish whose output is a map with more than one position.

    A 1x1 output (a pooled vector kept 4-D) cannot localise anything, so it is
    skipped, as the seeds' ``find_target_layer`` skips non-4-D outputs. A
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
