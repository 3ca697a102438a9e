"""What a Keras engine is: one way per Keras backend to run and differentiate the walk.

The backend asks an engine for three things: an eager call (for the one
tracing pass that lists layers), a compiled pass (logits, a layer's
activations and, if asked, gradients) and a compiled layer-edit pass
(Ablation-CAM). The forward pass, its score, the edit hook and the way a pass
without gradients is compiled are the same for every backend and are written
once here, in ``keras.ops``; an engine adds only its framework's function
wrapper (``tf.function``, ``no_grad``, ``jax.jit`` of the stateless call) and
its gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import keras
import numpy as np

from ....errors import LayerNotFound
from ...heads import DEFAULT_HEAD, Head
from ..targets import check_choice, head_scores
from ..tensors import as_array, as_float32
from ..walker import Hook, Walker, shadow_guard

__all__ = [
    "Data",
    "EditRun",
    "Engine",
    "Grad",
    "Pass",
    "PassRun",
    "Result",
    "Step",
    "WalkEngine",
    "forward",
    "logits_of",
    "no_gradient",
    "not_run",
    "to_result",
]

Grad = Literal["layer", "input"] | None


@dataclass(frozen=True)
class Pass:
    """What one compiled pass computes; its value is the cache key of the pass."""

    layer: str | None
    call: int
    grad: Grad
    probability: bool
    act_shape: tuple[int, ...] = ()  # per-image output shape of the layer, native layout
    guided: bool = False  # traced and run with the guided ReLU (its own compiled pass)
    head: Head = DEFAULT_HEAD  # which output is scored, and any target columns


@dataclass
class Result:
    """One pass's outputs as numpy: float32 logits, int64 targets, native-layout maps."""

    logits: np.ndarray
    targets: np.ndarray
    activations: np.ndarray | None
    gradients: np.ndarray | None


#: The head's target data (:meth:`Head.arrays`: masks, vectors): inputs of every compiled pass,
#: so one pass serves every target of the same kind and shape.
Data = tuple[np.ndarray, ...]


class PassRun(Protocol):
    """A compiled pass: NHWC inputs, int32 targets and the head's target data."""

    def __call__(self, x: np.ndarray, t: np.ndarray, data: Data = ()) -> Result: ...


class EditRun(Protocol):
    """A compiled layer-edit pass: NHWC inputs, (B, C) scales and the head's target data."""

    def __call__(self, x: np.ndarray, scale: np.ndarray, data: Data = ()) -> np.ndarray: ...


class Engine(Protocol):
    """One Keras backend's way to run the walk: what :class:`KerasBackend` calls."""

    name: str

    def eager(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run once, without gradients (or only its shapes, where that is enough)."""
        ...

    def compile(self, model: Any, spec: Pass, channels_first: bool) -> PassRun:
        """The pass ``spec`` over ``model``, compiled where the framework compiles."""
        ...

    def compile_edit(self, model: Any, spec: Pass, channels_first: bool, last: bool) -> EditRun:
        """Logits with ``spec.layer``'s output multiplied by per-channel scales."""
        ...


def logits_of(walker: Walker, x: Any, channels_first: bool, head: Head = DEFAULT_HEAD) -> Any:
    """float32 (N, K) logits of NHWC input ``x`` (a head's target columns first, if any)."""
    ops = keras.ops
    if channels_first:
        x = ops.transpose(x, (0, 3, 1, 2))
    return head_scores(head, walker(x), sigmoid_head(walker, head), not channels_first)


def sigmoid_head(walker: Walker, head: Head) -> bool:
    """Independent labels: declared (``head="sigmoid"``) or a sigmoid the walk skipped."""
    return head.sigmoid or walker.stripped == "sigmoid"


def forward(
    walker: Walker, x: Any, t: Any, spec: Pass, channels_first: bool, data: Any = ()
) -> tuple[Any, Any, Any]:
    """Score sum, float32 logits and effective targets (-1 becomes the top-1 class).

    ``data``: the head's target data as the pass's input tensors.
    """
    ops = keras.ops
    logits = logits_of(walker, x, channels_first, spec.head.bound(data))
    top = ops.cast(ops.argmax(logits, axis=1), "int32")
    t_eff = ops.where(t < 0, top, t)
    values = logits
    if spec.probability:
        one = sigmoid_head(walker, spec.head) or int(logits.shape[1]) == 1
        values = ops.sigmoid(logits) if one else ops.softmax(logits, axis=1)
    score = ops.sum(values * ops.one_hot(t_eff, int(logits.shape[1]), dtype="float32"))
    return score, logits, t_eff


def _edit(scale: Any, channels_last: bool) -> Hook:
    """Hook that multiplies each channel of a layer's output by ``scale`` (B, C)."""

    def hook(a: Any) -> Any:
        ops = keras.ops
        s = ops.cast(scale, a.dtype)
        if len(s.shape) > 2:  # factors shaped like the output already (a token layer)
            return a * s
        shape = (-1, 1, 1, s.shape[-1]) if channels_last else (-1, s.shape[-1], 1, 1)
        return a * ops.reshape(s, shape)  # batch 1 times batch B broadcasts to B

    return hook


def no_gradient(layer: str | None) -> LayerNotFound:
    return LayerNotFound(f"layer: the model output does not depend on {layer!r}")


def not_run(layer: str | None) -> LayerNotFound:
    return LayerNotFound(f"layer: {layer!r} did not run in the forward pass")


def to_result(out: dict[str, Any]) -> Result:
    """A pass's framework outputs (``logits``, ``targets``, ``act``, ``grad``) as numpy."""
    act = out.get("act")
    grad = out.get("grad")
    return Result(
        logits=as_float32(out["logits"]),
        targets=as_array(out["targets"]).astype(np.int64),
        activations=None if act is None else as_float32(act),
        gradients=None if grad is None else as_float32(grad),
    )


Step = Callable[..., Any]  # numpy arrays in, framework outputs out


class WalkEngine:
    """The engine parts every Keras backend shares; subclasses add ``function`` and gradients."""

    name = ""

    def eager(self, fn: Callable[[], Any]) -> Any:
        return fn()

    def function(self, model: Any, fn: Step) -> Step:
        """``fn`` (keras.ops on tensors, no gradients) as a callable on numpy arrays."""
        raise NotImplementedError

    def gradient_step(self, model: Any, walker: Walker, spec: Pass, channels_first: bool) -> Step:
        """``(x, t, *data) -> {"logits", "targets", "act", "grad"}``, the gradient ``spec`` asks.

        ``data``: the head's target data (:data:`Data`), inputs like ``x``.
        """
        raise NotImplementedError

    def compile(self, model: Any, spec: Pass, channels_first: bool) -> PassRun:
        check_choice(model, spec.head.output)
        walker = Walker(model, target=spec.layer, call=spec.call, output=spec.head.output)
        if spec.grad is None:

            def plain(x: Any, t: Any, *data: Any) -> dict[str, Any]:
                walker.hook = None
                _, logits, t_eff = forward(walker, x, t, spec, channels_first, data)
                return {"logits": logits, "targets": t_eff, "act": walker.captured}

            step = self.function(model, plain)
        else:
            step = self.gradient_step(model, walker, spec, channels_first)

        def run(x: np.ndarray, t: np.ndarray, data: Data = ()) -> Result:
            with shadow_guard(walker):
                return to_result(step(x, t, *data))

        return run

    def compile_edit(self, model: Any, spec: Pass, channels_first: bool, last: bool) -> EditRun:
        check_choice(model, spec.head.output)
        walker = Walker(model, target=spec.layer, call=spec.call, output=spec.head.output)

        def edited(x: Any, scale: Any, *data: Any) -> Any:
            walker.hook = _edit(scale, last)
            return logits_of(walker, x, channels_first, spec.head.bound(data))

        step = self.function(model, edited)

        def run(x: np.ndarray, scale: np.ndarray, data: Data = ()) -> np.ndarray:
            with shadow_guard(walker):
                return as_float32(step(x, scale, *data))

        return run
