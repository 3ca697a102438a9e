"""Keras 3 backend: one forward walk, three ways to differentiate it.

How a layer is reached without touching the model. A functional or
Sequential model is a graph of layer calls; :class:`_Walker` runs that graph
itself (``Functional._run_through_graph`` with our own per-operation call, or
the layer list of a Sequential) and steps *into* nested models, so a layer
deep inside a ``keras.applications`` base is as reachable as a top-level one.
Nothing is added to the model: no new nodes, no attributes, no changed
activation. Layers are named by their path, ``"efficientnetb0/top_activation"``
(Keras forbids ``/`` in layer names, so the path is unambiguous); a bare name
that is unique anywhere in the model is accepted too, and a nested model's
name stands for its last feature map. Keras 2 models from ``tf_keras`` are
walked the same way (best effort; they need Keras 3 on TensorFlow).

Subclassed models have no graph to walk. For them (best effort) the direct
children's ``call`` is shadowed by an instance attribute for the duration of
one call and removed in ``finally``; that is the only place where anything is
set on a user's object, and nothing of it outlives the call (another thread
calling the same model during that call would see it).

Scores are pre-softmax logits: when the model's output comes from a Dense
layer with a softmax activation, the walker computes ``x @ kernel + bias``
itself instead of calling that layer; a final ``Activation("softmax")`` or
``Softmax`` layer is skipped the same way.

Gradients, per Keras backend (chosen per model, by the tensors it makes):

* TensorFlow: a ``GradientTape`` that watches only the layer's output, inside
  a ``tf.function`` cached per model, layer and pass kind (retraced by
  TensorFlow only when input shapes change);
* torch: forward without autograd up to the layer, which becomes a leaf, then
  ``torch.autograd.grad`` to that leaf alone (no parameter ``.grad`` touched);
* JAX: ``jax.grad`` of the stateless call (a ``keras.StatelessScope`` maps
  every variable to a jit argument) with respect to a zero tensor added to the
  layer's output.
"""

from __future__ import annotations

import contextlib
import difflib
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import keras
import numpy as np

from ..errors import BackendError, InvalidInput, LayerNotFound, UnsupportedModel
from .base import Capture, LayerInfo, Precision, Score, check_precision, select_default_layer
from .keras_guided import guided_relu

__all__ = ["KerasBackend"]

Grad = Literal["layer", "input"] | None
Hook = Callable[[Any], Any]


# -- model structure ---------------------------------------------------------


def _functional_class() -> type | None:
    try:
        from keras.src.models.functional import Functional
    except ImportError:  # pragma: no cover - a Keras 3 without this module path
        return None
    cls: type = Functional
    return cls


def _is_sequential(op: Any) -> bool:
    return isinstance(op, keras.Sequential) and type(op).call is keras.Sequential.call


def _is_functional(op: Any) -> bool:
    functional = _functional_class()
    return (
        functional is not None
        and isinstance(op, functional)
        and not isinstance(op, keras.Sequential)
        and type(op).call is functional.call  # type: ignore[attr-defined]
        and hasattr(op, "_run_through_graph")
    )


def _is_tf_keras(op: Any) -> bool:
    """A Keras 2 object from the ``tf_keras`` package (best-effort support)."""
    return type(op).__module__.startswith("tf_keras.")


def _has_base(op: Any, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(op).__mro__)


def _is_model(op: Any) -> bool:
    return isinstance(op, keras.Model) or (_is_tf_keras(op) and _has_base(op, "Model"))


def _is_tf_keras_sequential(op: Any) -> bool:
    return _is_tf_keras(op) and _has_base(op, "Sequential") and hasattr(op, "layers")


def _is_tf_keras_functional(op: Any) -> bool:
    return (
        _is_tf_keras(op)
        and bool(getattr(op, "_is_graph_network", False))
        and hasattr(op, "_nodes_by_depth")
        and getattr(type(op), "call", None) is _functional_call(op)
    )


def _functional_call(op: Any) -> Any:
    for cls in type(op).__mro__:
        if cls.__name__ == "Functional":
            return getattr(cls, "call", None)
    return None


def _children(model: Any) -> list[Any]:
    """Direct sub-layers, in the order Keras lists them."""
    return list(model.layers) if _is_model(model) else []


def _all_layers(model: Any) -> Iterator[Any]:
    """Every layer, depth first, descending into nested models."""
    for layer in _children(model):
        yield layer
        if _is_model(layer):
            yield from _all_layers(layer)


def _is_softmax(fn: Any) -> bool:
    return callable(fn) and getattr(fn, "__name__", "") == "softmax"


def _is_dense(op: Any) -> bool:
    return isinstance(op, keras.layers.Dense) or (_is_tf_keras(op) and _has_base(op, "Dense"))


def _is_activation(op: Any) -> bool:
    return isinstance(op, keras.layers.Activation) or (
        _is_tf_keras(op) and _has_base(op, "Activation")
    )


def _pre_softmax(op: Any, args: tuple[Any, ...]) -> Any | None:
    """The logits of a softmax head, computed beside it; None for any other op."""
    ops = keras.ops
    if _is_dense(op) and _is_softmax(op.activation) and args:
        x = args[0]
        y = ops.matmul(x, ops.cast(op.kernel, x.dtype))
        if op.bias is not None:
            y = ops.add(y, ops.cast(op.bias, y.dtype))
        return y
    if _is_activation(op) and _is_softmax(op.activation) and args:
        return args[0]
    if type(op).__name__ == "Softmax" and type(op).__module__.startswith(("keras", "tf_keras")):
        return args[0] if args else None
    return None


def _first_tensor(out: Any) -> Any:
    if isinstance(out, dict) and out:
        return out["logits"] if "logits" in out else next(iter(out.values()))
    if isinstance(out, (list, tuple)) and out:
        return _first_tensor(out[0])
    return out


def _unpack_single(out: Any) -> Any:
    if isinstance(out, (list, tuple)) and len(out) == 1:
        return out[0]
    return out


def _layout(model: Any) -> str:
    """``channels_first`` or ``channels_last``: the first conv-like layer decides."""
    for layer in _all_layers(model):
        fmt = getattr(layer, "data_format", None)
        if fmt in ("channels_first", "channels_last") and not isinstance(
            layer, keras.layers.Flatten
        ):
            return str(fmt)
    return str(keras.config.image_data_format())


# -- the forward walk ----------------------------------------------------------


class _Walker:
    """One forward pass that can look at (and hand back a substitute for) any layer.

    ``target``/``call``: the layer path and which of its calls to watch;
    ``hook`` gets that output and returns the tensor the rest of the network
    should use (the same tensor, a torch leaf, or output + zero for JAX);
    ``record`` is told every layer output, for listing layers.
    """

    def __init__(
        self,
        model: Any,
        *,
        target: str | None = None,
        call: int = 0,
        record: Callable[[str, Any, Any], None] | None = None,
    ) -> None:
        self._model = weakref.ref(model)  # compiled functions must not keep the model alive
        self.target = target
        self.call = call
        self.record = record
        self.hook: Hook | None = None
        self.captured: Any = None
        self._counts: dict[str, int] = {}

    def __call__(self, x: Any) -> Any:
        model = self._model()
        if model is None:  # pragma: no cover - only if a cache outlives its model
            raise BackendError("model: the Keras model was garbage-collected")
        self._counts = {}
        self.captured = None
        out = self._container(model, "", (x,), {}, want_logits=True)
        return _first_tensor(out)

    # A model: walk its graph, or call it with its children watched.
    def _container(
        self,
        model: Any,
        prefix: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        want_logits: bool,
    ) -> Any:
        if _is_sequential(model):
            y = args[0]
            layers = model.layers
            for i, layer in enumerate(layers):
                y = self._op(layer, prefix, (y,), {}, want_logits and i == len(layers) - 1)
            return y
        if _is_functional(model):
            head = getattr(model.outputs[0], "_keras_history", None)
            head_op = head.operation if head is not None else None

            def operation_fn(op: Any) -> Callable[..., Any]:
                def run(*a: Any, **k: Any) -> Any:
                    return self._op(op, prefix, a, k, want_logits and op is head_op)

                return run

            out = model._run_through_graph(args[0], operation_fn=operation_fn)
            return _unpack_single(out)
        if _is_tf_keras_sequential(model):
            y = args[0]
            layers = model.layers
            for i, layer in enumerate(layers):
                y = self._op(layer, prefix, (y,), {}, want_logits and i == len(layers) - 1)
            return y
        if _is_tf_keras_functional(model):
            return self._tf_keras_graph(model, prefix, args[0], want_logits)
        return self._opaque(model, prefix, args, kwargs, want_logits)

    def _tf_keras_graph(self, model: Any, prefix: str, inputs: Any, want_logits: bool) -> Any:
        """A Keras 2 functional graph, node by node (as its ``_run_internal_graph``)."""
        import tensorflow as tf

        head = getattr(model.outputs[0], "_keras_history", None)
        head_layer = head.layer if head is not None else None
        usage = model._tensor_usage_count
        values: dict[str, list[Any]] = {}
        for ref, value in zip(model.inputs, tf.nest.flatten(inputs), strict=True):
            values[str(id(ref))] = [value] * usage[str(id(ref))]
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.is_input or any(i not in values for i in node.flat_input_ids):
                    continue
                args, kwargs = node.map_arguments(values)
                out = self._op(
                    node.layer,
                    prefix,
                    tuple(args),
                    dict(kwargs),
                    want_logits and node.layer is head_layer,
                )
                for out_id, value in zip(node.flat_output_ids, tf.nest.flatten(out), strict=True):
                    values[out_id] = [value] * usage[out_id]
        outs = [values[str(id(ref))].pop() for ref in model.outputs]
        return outs[0] if len(outs) == 1 else outs

    def _op(
        self, op: Any, prefix: str, args: tuple[Any, ...], kwargs: dict[str, Any], want_logits: bool
    ) -> Any:
        name = prefix + op.name
        if _is_model(op):
            return self._container(op, name + "/", args, kwargs, want_logits)
        if want_logits:
            pre = _pre_softmax(op, args)
            if pre is not None:
                return pre
        if "training" in getattr(op, "_call_context_args", ()) or (
            _is_tf_keras(op) and getattr(op, "_expects_training_arg", False)
        ):
            kwargs = {**kwargs, "training": False}
        return self._seen(name, op, op(*args, **kwargs))

    def _seen(self, name: str, op: Any, out: Any) -> Any:
        n = self._counts.get(name, 0)
        self._counts[name] = n + 1
        if self.record is not None:
            self.record(name, op, out)
        if name == self.target and n == self.call:
            if self.hook is not None:
                out = self.hook(out)
            self.captured = out
        return out

    # A subclassed model: its call() is Python we cannot see into, so its
    # children's call is shadowed for the duration (removed in finally).
    def _opaque(
        self,
        model: Any,
        prefix: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        want_logits: bool,
    ) -> Any:
        heads: dict[int, Any] = {}
        with self._shadow_children(model, prefix, heads, want_logits):
            if "training" in getattr(model, "_call_context_args", ()) or _is_tf_keras(model):
                kwargs = {**kwargs, "training": False}
            out = model(*args, **kwargs)
        first = _first_tensor(out)
        if want_logits and id(first) in heads:
            return heads[id(first)]
        return out

    @contextlib.contextmanager
    def _shadow_children(
        self, model: Any, prefix: str, heads: dict[int, Any], want_logits: bool
    ) -> Iterator[None]:
        shadowed: list[Any] = []
        try:
            for child in _children(model):
                if "call" in vars(child) or any(child is s for s in shadowed):
                    continue  # already shadowed (a shared child) or an instance-level call
                original = child.call
                object.__setattr__(
                    child, "call", self._shadow(child, original, prefix, heads, want_logits)
                )
                shadowed.append(child)
            yield
        finally:
            for child in shadowed:
                object.__delattr__(child, "call")

    def _shadow(
        self, child: Any, original: Any, prefix: str, heads: dict[int, Any], want_logits: bool
    ) -> Callable[..., Any]:
        name = prefix + child.name

        def call(*args: Any, **kwargs: Any) -> Any:
            if (
                _is_sequential(child)
                or _is_functional(child)
                or _is_tf_keras_sequential(child)
                or _is_tf_keras_functional(child)
            ):
                return self._container(child, name + "/", args, kwargs, False)
            if _is_model(child):
                return self._opaque(child, name + "/", args, kwargs, False)
            out = original(*args, **kwargs)
            if want_logits:
                pre = _pre_softmax(child, args)
                if pre is not None:
                    heads[id(out)] = pre
            return self._seen(name, child, out)

        return call


def _forward(
    walker: _Walker, x: Any, t: Any, probability: bool, channels_first: bool
) -> tuple[Any, Any, Any]:
    """Score sum, float32 logits and effective targets, written once in keras.ops."""
    ops = keras.ops
    logits = _logits(walker, x, channels_first)
    top = ops.cast(ops.argmax(logits, axis=1), "int32")
    t_eff = ops.where(t < 0, top, t)
    values = ops.softmax(logits, axis=1) if probability else logits
    score = ops.sum(values * ops.one_hot(t_eff, int(logits.shape[1]), dtype="float32"))
    return score, logits, t_eff


def _logits(walker: _Walker, x: Any, channels_first: bool) -> Any:
    """float32 (N, K) logits of NHWC input ``x``."""
    ops = keras.ops
    if channels_first:
        x = ops.transpose(x, (0, 3, 1, 2))
    logits = walker(x)
    if len(logits.shape) != 2:
        raise BackendError(
            f"model output: expected class scores of shape (N, classes), got {tuple(logits.shape)}"
        )
    return ops.cast(logits, "float32")


def _edit(scale: Any, channels_last: bool) -> Hook:
    """Hook that multiplies each channel of a layer's output by ``scale`` (B, C)."""

    def hook(a: Any) -> Any:
        ops = keras.ops
        s = ops.cast(scale, a.dtype)
        shape = (-1, 1, 1, s.shape[-1]) if channels_last else (-1, s.shape[-1], 1, 1)
        return a * ops.reshape(s, shape)  # batch 1 times batch B broadcasts to B

    return hook


EditRun = Callable[[np.ndarray, np.ndarray], np.ndarray]


# -- what one pass asks for ----------------------------------------------------


@dataclass(frozen=True)
class _Pass:
    layer: str | None
    call: int
    grad: Grad
    probability: bool
    act_shape: tuple[int, ...] = ()  # per-image output shape of the layer, native layout
    guided: bool = False  # traced and run with the guided ReLU (its own compiled pass)


@dataclass
class _Result:
    logits: np.ndarray
    targets: np.ndarray
    activations: np.ndarray | None
    gradients: np.ndarray | None


@dataclass
class _Trace:
    infos: list[LayerInfo]
    native: dict[str, tuple[tuple[int, ...], bool]]  # path -> (per-image shape, channels_last)
    names: list[str]  # every layer path, any output rank
    classes: int


@dataclass
class _ModelCache:
    traces: dict[tuple[Any, ...], _Trace] = field(default_factory=dict)
    passes: dict[tuple[Any, ...], Callable[[np.ndarray, np.ndarray], _Result]] = field(
        default_factory=dict
    )
    edits: dict[tuple[Any, ...], EditRun] = field(default_factory=dict)
    shared_prefix: dict[str, bool] = field(default_factory=dict)  # layer -> it works
    guided_relus: dict[tuple[Any, ...], int] = field(default_factory=dict)  # pass -> ReLUs seen


_CACHE: weakref.WeakKeyDictionary[Any, _ModelCache] = weakref.WeakKeyDictionary()


def _no_gradient(layer: str | None) -> LayerNotFound:
    return LayerNotFound(f"layer: the model output does not depend on {layer!r}")


def _array(t: Any) -> np.ndarray:
    """A backend tensor as numpy, without Keras' detour through a deprecated ``__array__``."""
    if hasattr(t, "detach"):  # torch
        return np.asarray(t.detach().cpu().numpy())
    if hasattr(t, "numpy"):  # tensorflow eager tensors
        return np.asarray(t.numpy())
    return np.asarray(t)  # jax arrays, numpy


def _variable(v: Any) -> Any:
    """The tensor behind a Keras 3 variable (``.value``) or a tf.Variable."""
    value = getattr(v, "value", None)
    return v if value is None or callable(value) else value


def _numpy(t: Any) -> np.ndarray:
    return _array(t).astype(np.float32, copy=False)


# -- engines: the same three methods per Keras backend --------------------------


class _TensorFlowEngine:
    """GradientTape inside a tf.function; TensorFlow retraces on new shapes only."""

    name = "tensorflow"

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf

    def eager(self, fn: Callable[[], Any]) -> Any:
        return fn()  # one eager image is cheaper than tracing a graph

    def compile(
        self, model: Any, spec: _Pass, channels_first: bool
    ) -> Callable[[np.ndarray, np.ndarray], _Result]:
        tf = self.tf
        walker = _Walker(model, target=spec.layer, call=spec.call)

        @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
        def step(x: Any, t: Any) -> dict[str, Any]:
            if spec.grad is None:
                walker.hook = None
                _, logits, t_eff = _forward(walker, x, t, spec.probability, channels_first)
                return {"logits": logits, "targets": t_eff, "act": walker.captured, "grad": None}
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                if spec.grad == "input":
                    tape.watch(x)
                    walker.hook = None
                else:

                    def watch(a: Any) -> Any:
                        tape.watch(a)
                        return a

                    walker.hook = watch
                score, logits, t_eff = _forward(walker, x, t, spec.probability, channels_first)
            wrt = x if spec.grad == "input" else walker.captured
            if wrt is None:
                raise LayerNotFound(f"layer: {spec.layer!r} did not run in the forward pass")
            grad = tape.gradient(score, wrt)
            if grad is None:
                raise _no_gradient(spec.layer)
            return {"logits": logits, "targets": t_eff, "act": walker.captured, "grad": grad}

        def run(x: np.ndarray, t: np.ndarray) -> _Result:
            with _shadow_guard(walker):
                out = step(tf.constant(x), tf.constant(t))
            return _to_result(out)

        return run

    def compile_edit(self, model: Any, spec: _Pass, channels_first: bool, last: bool) -> EditRun:
        tf = self.tf
        walker = _Walker(model, target=spec.layer, call=spec.call)

        @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
        def step(x: Any, scale: Any) -> Any:
            walker.hook = _edit(scale, last)
            return _logits(walker, x, channels_first)

        def run(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
            with _shadow_guard(walker):
                return _numpy(step(tf.constant(x), tf.constant(scale)))

        return run


class _TorchEngine:
    """Keras on torch: autograd from the layer's output (a fresh leaf) only."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def eager(self, fn: Callable[[], Any]) -> Any:
        with self.torch.no_grad():
            return fn()

    def compile(
        self, model: Any, spec: _Pass, channels_first: bool
    ) -> Callable[[np.ndarray, np.ndarray], _Result]:
        torch = self.torch
        walker = _Walker(model, target=spec.layer, call=spec.call)

        def leaf(a: Any) -> Any:
            out = a.detach().requires_grad_(True)
            torch.set_grad_enabled(True)  # a graph only from the layer on
            return out

        def run(x: np.ndarray, t: np.ndarray) -> _Result:
            grad_mode = torch.is_grad_enabled()
            try:
                torch.set_grad_enabled(False)
                xt = keras.ops.convert_to_tensor(x)
                tt = keras.ops.convert_to_tensor(t)
                walker.hook = leaf if spec.grad == "layer" else None
                if spec.grad == "input":
                    xt = xt.detach().requires_grad_(True)
                    torch.set_grad_enabled(True)
                score, logits, t_eff = _forward(walker, xt, tt, spec.probability, channels_first)
                grad = None
                if spec.grad is not None:
                    wrt = xt if spec.grad == "input" else walker.captured
                    if wrt is None:
                        raise LayerNotFound(
                            f"layer: {spec.layer!r} did not run in the forward pass"
                        )
                    if not score.requires_grad:
                        raise _no_gradient(spec.layer)
                    (grad,) = torch.autograd.grad(score, wrt, allow_unused=True)
                    if grad is None:
                        raise _no_gradient(spec.layer)
            finally:
                torch.set_grad_enabled(grad_mode)
                walker.hook = None
            return _to_result(
                {"logits": logits, "targets": t_eff, "act": walker.captured, "grad": grad}
            )

        return run

    def compile_edit(self, model: Any, spec: _Pass, channels_first: bool, last: bool) -> EditRun:
        walker = _Walker(model, target=spec.layer, call=spec.call)

        def run(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
            with self.torch.no_grad(), _shadow_guard(walker):
                walker.hook = _edit(keras.ops.convert_to_tensor(scale), last)
                return _numpy(_logits(walker, keras.ops.convert_to_tensor(x), channels_first))

        return run


class _JaxEngine:
    """jax.grad of the stateless call, jitted; variables enter as arguments."""

    name = "jax"

    def __init__(self) -> None:
        import jax

        self.jax = jax

    def eager(self, fn: Callable[[], Any]) -> Any:
        return self.jax.eval_shape(fn)  # shapes are all a trace needs; no compute

    def compile(
        self, model: Any, spec: _Pass, channels_first: bool
    ) -> Callable[[np.ndarray, np.ndarray], _Result]:
        jax = self.jax
        walker = _Walker(model, target=spec.layer, call=spec.call)
        variables = list(model.variables)

        def pure(values: list[Any], x: Any, t: Any, delta: Any) -> tuple[Any, dict[str, Any]]:
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                walker.hook = (lambda a: a + delta) if spec.grad == "layer" else None
                score, logits, t_eff = _forward(walker, x, t, spec.probability, channels_first)
                act = walker.captured
            return score, {"logits": logits, "targets": t_eff, "act": act}

        if spec.grad is None:
            fn = jax.jit(pure)
        else:
            fn = jax.jit(jax.grad(pure, argnums=1 if spec.grad == "input" else 3, has_aux=True))

        def run(x: np.ndarray, t: np.ndarray) -> _Result:
            values = [v.value for v in variables]
            delta = np.zeros((len(x), *spec.act_shape), np.float32) if spec.grad else None
            with _shadow_guard(walker):
                first, aux = fn(values, x, t, delta)
            grad = first if spec.grad is not None else None
            return _to_result({**aux, "grad": grad})

        return run

    def compile_edit(self, model: Any, spec: _Pass, channels_first: bool, last: bool) -> EditRun:
        walker = _Walker(model, target=spec.layer, call=spec.call)
        variables = list(model.variables)

        def pure(values: list[Any], x: Any, scale: Any) -> Any:
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                walker.hook = _edit(scale, last)
                return _logits(walker, x, channels_first)

        fn = self.jax.jit(pure)

        def run(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
            with _shadow_guard(walker):
                return _numpy(fn([v.value for v in variables], x, scale))

        return run


@contextlib.contextmanager
def _shadow_guard(walker: _Walker) -> Iterator[None]:
    """Leave the walker stateless after a pass (hooks refer to framework objects)."""
    try:
        yield
    finally:
        walker.hook = None


def _to_result(out: dict[str, Any]) -> _Result:
    act = out.get("act")
    grad = out.get("grad")
    return _Result(
        logits=_numpy(out["logits"]),
        targets=_array(out["targets"]).astype(np.int64),
        activations=None if act is None else _numpy(act),
        gradients=None if grad is None else _numpy(grad),
    )


_ENGINES: dict[str, type[_TensorFlowEngine] | type[_TorchEngine] | type[_JaxEngine]] = {
    "tensorflow": _TensorFlowEngine,
    "torch": _TorchEngine,
    "jax": _JaxEngine,
}


# -- the backend ---------------------------------------------------------------


class KerasBackend:
    """Explains a built Keras 3 model that maps (N, H, W, C) images to class scores.

    Channels-first models are fed (N, C, H, W); activations and gradients are
    returned NCHW either way, input gradients NHWC.
    """

    framework = "keras"

    def __init__(self, model: Any) -> None:
        if not _is_model(model):
            raise BackendError(
                f"model: expected a keras.Model, got {type(model).__module__}."
                f"{type(model).__qualname__}"
            )
        if not model.built:
            raise UnsupportedModel(
                f"model: the Keras model {model.name!r} is not built yet; call it once on an "
                "input or give it a keras.Input, so that it has weights to explain"
            )
        engine = _ENGINES.get(keras.backend.backend())
        if _is_tf_keras(model) and keras.backend.backend() != "tensorflow":
            raise BackendError(
                "model: a tf_keras (Keras 2) model needs Keras 3 on TensorFlow too "
                "(KERAS_BACKEND=tensorflow), as seewhy computes its scores with keras.ops"
            )
        if engine is None:
            raise BackendError(
                f"keras backend: expected tensorflow, torch or jax, got {keras.backend.backend()!r}"
            )
        self.model = model
        self.engine = engine()
        self.keras_backend = self.engine.name
        self.channels_first = _layout(model) == "channels_first"

    # -- helpers ---------------------------------------------------------------

    def _cache(self) -> _ModelCache:
        return _CACHE.setdefault(self.model, _ModelCache())

    def _size(self) -> int:
        return sum(1 for _ in _all_layers(self.model))

    @staticmethod
    def _check_inputs(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 4:
            raise InvalidInput(f"inputs: expected a (N, H, W, C) array, got shape {x.shape}")
        return np.ascontiguousarray(x, dtype=np.float32)

    def _targets(self, targets: np.ndarray | None, n: int, classes: int) -> np.ndarray:
        """int32 targets; -1 means "the top-1 class", decided inside the pass."""
        if targets is None:
            return np.full((n,), -1, np.int32)
        t = np.asarray(targets)
        if t.shape != (n,):
            raise InvalidInput(f"target: expected one class per image, got shape {t.shape}")
        t = t.astype(np.int64)
        bad = t[(t < 0) | (t >= classes)]
        if bad.size:
            raise InvalidInput(
                f"target: class {int(bad[0])} is outside the model's 0..{classes - 1}"
            )
        return t.astype(np.int32)

    @staticmethod
    def _score(score: Score) -> bool:
        if score not in ("logit", "probability"):
            raise InvalidInput(f"score: expected 'logit' or 'probability', got {score!r}")
        return score == "probability"

    def _pass(self, spec: _Pass, x: np.ndarray) -> Callable[[np.ndarray, np.ndarray], _Result]:
        key = (spec, self._size())
        passes = self._cache().passes
        if key not in passes:
            passes[key] = self.engine.compile(self.model, spec, self.channels_first)
        return passes[key]

    # -- layers ----------------------------------------------------------------

    def _trace(self, x: np.ndarray) -> _Trace:
        x = self._check_inputs(x)
        key = (tuple(x.shape[1:]), self._size())
        traces = self._cache().traces
        if key not in traces:
            traces[key] = self._run_trace(x[:1])
        return traces[key]

    def _run_trace(self, x: np.ndarray) -> _Trace:
        """One eager forward of one image, noting every layer output in finishing order."""
        default_last = not self.channels_first
        seen: dict[str, LayerInfo] = {}
        native: dict[str, tuple[tuple[int, ...], bool]] = {}
        order: list[str] = []
        names: list[str] = []

        def record(name: str, op: Any, out: Any) -> None:
            if name not in names:
                names.append(name)
            shape = getattr(out, "shape", None)
            if shape is None or len(shape) != 4:
                return
            fmt = getattr(op, "data_format", None)
            last = (
                fmt == "channels_last"
                if fmt in ("channels_first", "channels_last")
                else default_last
            )
            per = tuple(int(d) for d in shape[1:])
            nchw = (per[2], per[0], per[1]) if last else per
            calls = seen[name].calls + 1 if name in seen else 1
            seen[name] = LayerInfo(name, nchw, type(op).__name__, calls)
            native[name] = (per, last)
            if name in order:
                order.remove(name)
            order.append(name)

        walker = _Walker(self.model, record=record)

        def run() -> Any:
            xt = keras.ops.convert_to_tensor(x)
            if self.channels_first:
                xt = keras.ops.transpose(xt, (0, 3, 1, 2))
            return walker(xt)

        logits = self.engine.eager(run)
        if len(logits.shape) != 2:
            raise BackendError(
                "model output: expected class scores of shape (N, classes), got "
                f"{tuple(logits.shape)}"
            )
        return _Trace([seen[n] for n in order], native, names, int(logits.shape[1]))

    def layers(self, x: np.ndarray) -> list[LayerInfo]:
        return list(self._trace(x).infos)

    def resolve_layer(self, layer: str | None, x: np.ndarray) -> str:
        trace = self._trace(x)
        infos = trace.infos
        if layer is None:
            chosen = select_default_layer(infos)
            if chosen is None:
                raise LayerNotFound(
                    "layer: the model has no layer with a 4-D output (N, C, h, w) of more "
                    "than one position; a CAM needs a convolutional feature map"
                )
            return chosen.name
        if not isinstance(layer, str):
            raise InvalidInput(f"layer: expected a layer name (str), got {type(layer).__name__}")
        paths = [info.name for info in infos]
        if layer in paths:
            return layer
        by_leaf = [p for p in paths if p.rsplit("/", 1)[-1] == layer]
        if len(by_leaf) == 1:
            return by_leaf[0]
        if len(by_leaf) > 1:
            raise LayerNotFound(
                f"layer: {layer!r} names several layers; use the full path, one of: "
                f"{', '.join(by_leaf)}"
            )
        inside = select_default_layer([i for i in infos if i.name.startswith(layer + "/")])
        if inside is not None:
            return inside.name  # a nested model's name: its last feature map
        all_names = trace.names
        if layer in all_names or any(n.rsplit("/", 1)[-1] == layer for n in all_names):
            raise LayerNotFound(
                f"layer: {layer!r} exists but gives no 4-D feature map for this input "
                f"(a CAM needs (N, C, h, w)); try one of: {_suggest(layer, infos)}"
            )
        close = difflib.get_close_matches(layer, all_names, n=5, cutoff=0.4)
        if not close:
            leaves = {n.rsplit("/", 1)[-1]: n for n in all_names}
            close = [
                leaves[c] for c in difflib.get_close_matches(layer, list(leaves), n=5, cutoff=0.4)
            ]
        hint = ", ".join(close) if close else _suggest(layer, infos)
        raise LayerNotFound(f"layer: the model has no layer {layer!r}; did you mean: {hint}?")

    # -- passes ----------------------------------------------------------------

    def preferred_batch_size(self, x: np.ndarray, precision: Precision = "float32") -> int:
        """16: TensorFlow's and JAX's allocators keep freed memory, so batches need not be tiny."""
        check_precision(precision)
        return 16

    def predict(
        self, x: np.ndarray, *, batch_size: int | None = None, precision: Precision = "float32"
    ) -> np.ndarray:
        if check_precision(precision) != "float32":
            raise InvalidInput(
                f"precision: {precision} is for PyTorch models; a Keras model computes "
                "in its layers' own dtype policy"
            )
        x = self._check_inputs(x)
        if len(x) == 0:
            return np.zeros((0, 0), np.float32)
        run = self._pass(_Pass(None, 0, None, False), x)
        step = batch_size or len(x)
        out = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            out.append(run(chunk, np.full((len(chunk),), -1, np.int32)).logits)
        return np.concatenate(out)

    def capture(
        self,
        x: np.ndarray,
        *,
        layer: str,
        targets: np.ndarray | None,
        gradients: bool,
        score: Score = "logit",
    ) -> Capture:
        probability = self._score(score)
        x = self._check_inputs(x)
        trace = self._trace(x)
        path = self.resolve_layer(layer, x)
        info = next(i for i in trace.infos if i.name == path)
        per, last = trace.native[path]
        t = self._targets(targets, len(x), trace.classes)
        spec = _Pass(path, info.calls - 1, "layer" if gradients else None, probability, per)
        res = self._pass(spec, x)(x, t)
        if res.activations is None:
            raise LayerNotFound(f"layer: {path!r} did not run in the forward pass")
        acts, grads = res.activations, res.gradients
        if last:
            acts = np.ascontiguousarray(acts.transpose(0, 3, 1, 2))
            grads = None if grads is None else np.ascontiguousarray(grads.transpose(0, 3, 1, 2))
        return Capture(logits=res.logits, targets=res.targets, activations=acts, gradients=grads)

    def input_gradients(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        score: Score = "logit",
        guided: bool = False,
    ) -> Capture:
        probability = self._score(score)
        x = self._check_inputs(x)
        t = self._targets(targets, len(x), self._trace(x).classes)
        spec = _Pass(None, 0, "input", probability, guided=guided)
        run = self._pass(spec, x)
        if not guided:
            res = run(x, t)
        else:
            res = self._guided(run, (spec, self._size()), x, t)
        return Capture(logits=res.logits, targets=res.targets, gradients=res.gradients)

    def _guided(
        self,
        run: Callable[[np.ndarray, np.ndarray], _Result],
        key: tuple[Any, ...],
        x: np.ndarray,
        t: np.ndarray,
    ) -> _Result:
        """Run a guided pass with Keras' ReLU patched; warn if no ReLU was ever traced.

        Compiled passes (TensorFlow, JAX) call the ReLU only while they are
        traced, so the count is kept per pass over its lifetime.
        """
        with guided_relu() as count:
            res = run(x, t)
        seen = self._cache().guided_relus
        seen[key] = seen.get(key, 0) + count.hits
        if seen[key] == 0:
            warnings.warn(
                "guided backprop: no Keras ReLU or ReLU6 call was seen in the model (other "
                "activations, or a tf.keras 2 model); the result is the plain gradient",
                stacklevel=4,
            )
        return res

    def predict_with_layer_edit(
        self,
        x: np.ndarray,
        *,
        layer: str,
        scales: np.ndarray,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Logits (N, E, K): image ``i`` run E times, the layer's output scaled per channel.

        The network before the layer runs once per image and chunk: the image
        goes in alone and the edited copies (batch 1 becomes E at the layer)
        continue, broadcasting any skip connection that began earlier. A model
        that cannot take that is run the plain way (the image repeated E
        times) from then on.
        """
        x = self._check_inputs(x)
        trace = self._trace(x)
        path = self.resolve_layer(layer, x)
        info = next(i for i in trace.infos if i.name == path)
        per, last = trace.native[path]
        scales = np.asarray(scales, dtype=np.float32)
        if scales.ndim == 2:
            scales = np.broadcast_to(scales, (len(x), *scales.shape))
        if scales.ndim != 3 or len(scales) != len(x) or scales.shape[2] != info.shape[0]:
            raise InvalidInput(
                f"scales: expected (N, E, C) or (E, C) with N = {len(x)} and C = "
                f"{info.shape[0]} channels of {path!r}, got {scales.shape}"
            )
        edits = scales.shape[1]
        if edits == 0 or len(x) == 0:
            return np.zeros((len(x), edits, trace.classes), np.float32)
        cache = self._cache()
        key = (path, info.calls, per, self._size())
        if key not in cache.edits:
            spec = _Pass(path, info.calls - 1, None, False, per)
            cache.edits[key] = self.engine.compile_edit(self.model, spec, self.channels_first, last)
        run = cache.edits[key]
        step = max(1, batch_size or edits)
        rows = []
        for i in range(len(x)):
            chunks = []
            for start in range(0, edits, step):
                scale = np.ascontiguousarray(scales[i, start : start + step])
                chunks.append(self._edited(run, x[i : i + 1], scale, path, cache))
            rows.append(np.concatenate(chunks))
        return np.stack(rows)

    @staticmethod
    def _edited(
        run: EditRun, image: np.ndarray, scale: np.ndarray, path: str, cache: _ModelCache
    ) -> np.ndarray:
        """One chunk of edits of one image: shared prefix when the model allows it."""
        shared = cache.shared_prefix.get(path)
        if shared is not False:
            try:
                logits = run(image, scale)
            except Exception:  # the model cannot broadcast batch 1 against E
                if shared:  # it could before: this is the model's own error
                    raise
                logits = None
            if logits is not None and len(logits) == len(scale):
                if len(scale) > 1:
                    cache.shared_prefix[path] = True
                return logits
            cache.shared_prefix[path] = False
        return run(np.repeat(image, len(scale), axis=0), scale)

    def final_linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        dense = [
            layer
            for layer in _all_layers(self.model)
            if _is_dense(layer) and len(layer.kernel.shape) == 2
        ]
        if not dense:
            return None
        last = dense[-1]
        kernel = _numpy(_variable(last.kernel))
        bias = (
            _numpy(_variable(last.bias))
            if last.bias is not None
            else np.zeros(kernel.shape[1], np.float32)
        )
        return np.ascontiguousarray(kernel.T), bias


def _suggest(layer: str, infos: list[LayerInfo]) -> str:
    names = [info.name for info in infos]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.3)
    return ", ".join(close or names[-5:]) or "(none)"
