"""The forward walk: runs a Keras model's graph itself, to look at any layer.

A functional or Sequential model is a graph of layer calls; :class:`Walker`
runs that graph (``Functional._run_through_graph`` with our own per-operation
call, or the layer list of a Sequential) and steps *into* nested models, so a
layer deep inside a ``keras.applications`` base is as reachable as a
top-level one. Nothing is added to the model: no new nodes, no attributes, no
changed activation. Layers are named by their path,
``"efficientnetb0/top_activation"`` (Keras forbids ``/`` in layer names, so
the path is unambiguous). Keras 2 models from ``tf_keras`` are walked the same
way (best effort; they need Keras 3 on TensorFlow).

Subclassed models, and composite layers whose ``call`` is not Keras's own
(keras-hub's encoder blocks, see ``structure.sublayers``), have no graph to
walk. For them (best effort) the direct children's ``call`` is shadowed by an
instance attribute for the duration of one call and removed in ``finally``;
that is the only place where anything is set on a user's object, and nothing
of it outlives the call (another thread calling the same model during that
call would see it).

Scores are pre-softmax logits: when the model's output comes from a Dense
layer with a softmax activation, the walker computes ``x @ kernel + bias``
itself instead of calling that layer; a final ``Activation("softmax")`` or
``Softmax`` layer is skipped the same way.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from ...errors import BackendError
from .structure import (
    children,
    first_tensor,
    head_activation,
    is_functional,
    is_graph,
    is_model,
    is_sequential,
    is_tf_keras,
    is_tf_keras_functional,
    is_tf_keras_sequential,
    pre_softmax,
    sublayers,
    unpack_single,
)
from .targets import head_output, output_names, select_output

__all__ = ["Hook", "Walker", "shadow_guard"]

Hook = Callable[[Any], Any]
_Args = tuple[Any, ...]
_Kwargs = dict[str, Any]


class Walker:
    """One forward pass that can look at (and hand back a substitute for) any layer.

    ``target``/``call``: the layer path and which of its calls to watch;
    ``hook`` gets that output and returns the tensor the rest of the network
    should use (the same tensor, a torch leaf, or output + zero for JAX);
    ``record`` is told every layer output, for listing layers; ``record_call``
    every layer call's inputs before it runs (which layer feeds an attention).
    """

    def __init__(
        self,
        model: Any,
        *,
        target: str | None = None,
        call: int = 0,
        record: Callable[[str, Any, Any], None] | None = None,
        output: int | str | None = None,
    ) -> None:
        self._model = weakref.ref(model)  # compiled functions must not keep the model alive
        self.output = output  # which output is scored (its softmax or sigmoid is skipped)
        self.stripped: str | None = None  # the head activation skipped: "softmax", "sigmoid"
        self.target = target
        self.call = call
        self.record = record
        self.record_call: Callable[[str, Any, tuple[Any, ...]], None] | None = None
        self.hook: Hook | None = None
        self.captured: Any = None
        self._counts: dict[str, int] = {}

    def __call__(self, x: Any) -> Any:
        model = self._model()
        if model is None:  # pragma: no cover - only if a cache outlives its model
            raise BackendError("model: the Keras model was garbage-collected")
        self._counts = {}
        self.captured = None
        self.stripped = None
        out = self._container(model, "", (x,), {}, want_logits=True)
        return select_output(out, self.output, output_names(model))

    # A model: walk its graph, or call it with its children watched.
    def _container(
        self, model: Any, prefix: str, args: _Args, kwargs: _Kwargs, want_logits: bool
    ) -> Any:
        if is_sequential(model) or is_tf_keras_sequential(model):
            y = args[0]
            layers = model.layers
            for i, layer in enumerate(layers):
                y = self._op(layer, prefix, (y,), {}, want_logits and i == len(layers) - 1)
            return y
        if is_functional(model):
            scored = model.outputs[head_output(model, self.output) if not prefix else 0]
            head = getattr(scored, "_keras_history", None)
            head_op = head.operation if head is not None else None

            def operation_fn(op: Any) -> Callable[..., Any]:
                def run(*a: Any, **k: Any) -> Any:
                    return self._op(op, prefix, a, k, want_logits and op is head_op)

                return run

            out = model._run_through_graph(args[0], operation_fn=operation_fn)
            return unpack_single(out)
        if is_tf_keras_functional(model):
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

    def _op(self, op: Any, prefix: str, args: _Args, kwargs: _Kwargs, want_logits: bool) -> Any:
        name = prefix + op.name
        if is_model(op):
            return self._container(op, name + "/", args, kwargs, want_logits)
        if want_logits:
            pre = pre_softmax(op, args)
            if pre is not None:
                self.stripped = head_activation(op)
                return pre
        if "training" in getattr(op, "_call_context_args", ()) or (
            is_tf_keras(op) and getattr(op, "_expects_training_arg", False)
        ):
            kwargs = {**kwargs, "training": False}
        if self.record_call is not None:
            self.record_call(name, op, args)
        with self._shadowchildren(op, name + "/", {}, False):  # a composite layer's parts
            out = op(*args, **kwargs)
        return self._seen(name, op, out)

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
        self, model: Any, prefix: str, args: _Args, kwargs: _Kwargs, want_logits: bool
    ) -> Any:
        heads: dict[int, Any] = {}
        with self._shadowchildren(model, prefix, heads, want_logits):
            if "training" in getattr(model, "_call_context_args", ()) or is_tf_keras(model):
                kwargs = {**kwargs, "training": False}
            out = model(*args, **kwargs)
        first = first_tensor(out)
        if want_logits and id(first) in heads:
            return heads[id(first)]
        return out

    @contextlib.contextmanager
    def _shadowchildren(
        self, model: Any, prefix: str, heads: dict[int, Any], want_logits: bool
    ) -> Iterator[None]:
        shadowed: list[Any] = []
        try:
            for child in children(model) or sublayers(model):
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
            if is_graph(child):
                return self._container(child, name + "/", args, kwargs, False)
            if is_model(child):
                return self._opaque(child, name + "/", args, kwargs, False)
            if self.record_call is not None:
                self.record_call(name, child, args)
            with self._shadowchildren(child, name + "/", {}, False):
                out = original(*args, **kwargs)
            if want_logits:
                pre = pre_softmax(child, args)
                if pre is not None:
                    self.stripped = head_activation(child)
                    heads[id(out)] = pre
            return self._seen(name, child, out)

        return call


@contextlib.contextmanager
def shadow_guard(walker: Walker) -> Iterator[None]:
    """Leave the walker stateless after a pass (hooks refer to framework objects)."""
    try:
        yield
    finally:
        walker.hook = None
