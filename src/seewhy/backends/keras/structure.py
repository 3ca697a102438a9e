"""What a Keras model is made of: which containers can be walked, where its softmax is.

Predicates only, no passes: the walker uses them to decide how to step into
a model, the backend to find its layout, dense head and layer paths. Keras 2
objects (``tf_keras``) are recognised by their class names, so ``tf_keras``
is never imported here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import keras

from ...errors import InvalidInput, LayerNotFound
from ..base import LayerInfo, select_default_layer
from ..common import default_layer, missing_layer, no_feature_map
from ..layouts import Layout, guess_layout, map_shape

__all__ = [
    "LayerNotes",
    "all_layers",
    "children",
    "first_tensor",
    "head_activation",
    "is_attention",
    "is_dense",
    "is_functional",
    "is_graph",
    "is_model",
    "is_sequential",
    "is_tf_keras",
    "is_tf_keras_functional",
    "is_tf_keras_sequential",
    "layout",
    "pre_softmax",
    "resolve_path",
    "sublayers",
    "unpack_single",
]


def _functional_class() -> type | None:
    try:
        from keras.src.models.functional import Functional
    except ImportError:  # pragma: no cover - a Keras 3 without this module path
        return None
    cls: type = Functional
    return cls


def is_sequential(op: Any) -> bool:
    """A Keras 3 Sequential whose ``call`` is Keras' own (its layer list is the graph)."""
    return isinstance(op, keras.Sequential) and type(op).call is keras.Sequential.call


def is_functional(op: Any) -> bool:
    """A Keras 3 functional model whose graph Keras itself would run."""
    functional = _functional_class()
    return (
        functional is not None
        and isinstance(op, functional)
        and not isinstance(op, keras.Sequential)
        and type(op).call is functional.call  # type: ignore[attr-defined]
        and hasattr(op, "_run_through_graph")
    )


def is_tf_keras(op: Any) -> bool:
    """A Keras 2 object from the ``tf_keras`` package (best-effort support)."""
    return type(op).__module__.startswith("tf_keras.")


def _has_base(op: Any, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(op).__mro__)


def is_model(op: Any) -> bool:
    """A Keras 3 or Keras 2 model (a container of layers)."""
    return isinstance(op, keras.Model) or (is_tf_keras(op) and _has_base(op, "Model"))


def is_tf_keras_sequential(op: Any) -> bool:
    return is_tf_keras(op) and _has_base(op, "Sequential") and hasattr(op, "layers")


def is_tf_keras_functional(op: Any) -> bool:
    return (
        is_tf_keras(op)
        and bool(getattr(op, "_is_graph_network", False))
        and hasattr(op, "_nodes_by_depth")
        and getattr(type(op), "call", None) is _functional_call(op)
    )


def is_graph(op: Any) -> bool:
    """A model whose layer graph the walker can run itself (not a subclassed ``call``)."""
    return (
        is_sequential(op)
        or is_functional(op)
        or is_tf_keras_sequential(op)
        or is_tf_keras_functional(op)
    )


def _functional_call(op: Any) -> Any:
    for cls in type(op).__mro__:
        if cls.__name__ == "Functional":
            return getattr(cls, "call", None)
    return None


def children(model: Any) -> list[Any]:
    """Direct sub-layers, in the order Keras lists them."""
    return list(model.layers) if is_model(model) else []


def sublayers(op: Any) -> list[Any]:
    """The parts of a composite layer whose ``call`` is not Keras's own (keras-hub blocks).

    A keras-hub ``ViTEncoder`` is a plain ``Layer`` holding its blocks, each
    holding its norms and attention; the walker steps into such layers as into
    a subclassed model. Keras's own layers (``MultiHeadAttention`` and its
    projections, ``Bidirectional``, ...) stay whole, also when a user's subclass
    keeps their ``call``.
    """
    if is_model(op) or is_tf_keras(op):
        return []
    owner = next((cls for cls in type(op).__mro__ if "call" in vars(cls)), None)
    if owner is None or owner.__module__.startswith("keras."):
        return []
    return [layer for layer in getattr(op, "_layers", ()) if isinstance(layer, keras.Layer)]


def all_layers(model: Any) -> Iterator[Any]:
    """Every layer, depth first, descending into nested models."""
    for layer in children(model):
        yield layer
        if is_model(layer):
            yield from all_layers(layer)


def _is_softmax(fn: Any) -> bool:
    """A softmax or a sigmoid: a head whose logits are what gets explained."""
    return callable(fn) and getattr(fn, "__name__", "") in ("softmax", "sigmoid")


def head_activation(op: Any) -> str:
    """ "sigmoid" for a sigmoid head (Dense or Activation), else "softmax"."""
    fn = getattr(op, "activation", None)
    return "sigmoid" if callable(fn) and getattr(fn, "__name__", "") == "sigmoid" else "softmax"


def is_dense(op: Any) -> bool:
    return isinstance(op, keras.layers.Dense) or (is_tf_keras(op) and _has_base(op, "Dense"))


def _is_activation(op: Any) -> bool:
    return isinstance(op, keras.layers.Activation) or (
        is_tf_keras(op) and _has_base(op, "Activation")
    )


def pre_softmax(op: Any, args: tuple[Any, ...]) -> Any | None:
    """The logits of a softmax or sigmoid head, computed beside it; None for any other op."""
    ops = keras.ops
    if is_dense(op) and _is_softmax(op.activation) and args:
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


def first_tensor(out: Any) -> Any:
    """The class scores among a model's outputs: ``"logits"`` of a dict, else the first."""
    if isinstance(out, dict) and out:
        return out["logits"] if "logits" in out else next(iter(out.values()))
    if isinstance(out, (list, tuple)) and out:
        return first_tensor(out[0])
    return out


def unpack_single(out: Any) -> Any:
    if isinstance(out, (list, tuple)) and len(out) == 1:
        return out[0]
    return out


def layout(model: Any) -> str:
    """``channels_first`` or ``channels_last``: the first conv-like layer decides."""
    for layer in all_layers(model):
        fmt = getattr(layer, "data_format", None)
        if fmt in ("channels_first", "channels_last") and not isinstance(
            layer, keras.layers.Flatten
        ):
            return str(fmt)
    return str(keras.config.image_data_format())


def _leaf(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def resolve_path(layer: str | None, infos: Sequence[LayerInfo], names: Sequence[str]) -> str:
    """The path of ``layer`` among the traced feature maps ``infos``, or why there is none.

    A full path, a bare name that is unique anywhere in the model, or a
    nested model's name (its last feature map) is accepted; ``names`` are
    all traced layer paths, of any output rank, for the error messages.
    """
    if layer is None:
        return default_layer(infos)
    if not isinstance(layer, str):
        raise InvalidInput(f"layer: expected a layer name (str), got {type(layer).__name__}")
    paths = [info.name for info in infos]
    if layer in paths:
        return layer
    by_leaf = [p for p in paths if _leaf(p) == layer]
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
    if layer in names or any(_leaf(n) == layer for n in names):
        raise no_feature_map(layer, infos)
    close = difflib.get_close_matches(layer, list(names), n=5, cutoff=0.4)
    if not close:  # a misspelt bare name: match it against the leaves
        leaves = {_leaf(n): n for n in names}
        close = [leaves[c] for c in difflib.get_close_matches(layer, list(leaves), n=5, cutoff=0.4)]
    raise missing_layer(layer, names, infos, close=close)


# --------------------------------------------------------------------------- layouts


def is_attention(op: Any) -> bool:
    """A Keras ``MultiHeadAttention`` layer (or a subclass)."""
    return isinstance(op, keras.layers.MultiHeadAttention)


class LayerNotes:
    """What the tracing walk learns of each layer output: its layout and who feeds attention.

    Outputs are noted as they finish: a patch embedding (a convolution whose
    stride equals its kernel) gives the patch grid that later token outputs
    (N, T, C) are read against; an attention layer's query input names the
    layer before it (the transformer default, see ``layouts.transformer_default``).
    """

    def __init__(self, size: tuple[int, int], default_last: bool) -> None:
        self.size = size
        self.default_last = default_last
        self.grids: list[tuple[int, int]] = []
        self.produced: dict[int, tuple[str, Any]] = {}  # id(output) -> (path, output kept alive)
        self.attention: dict[str, str] = {}  # attention path -> the path of its query input

    def entry(
        self, name: str, op: Any, out: Any, calls: int
    ) -> tuple[LayerInfo, tuple[int, ...], bool] | None:
        """(LayerInfo, per-image native shape, channels last) for a map or token output."""
        shape = getattr(out, "shape", None)
        if shape is None or len(shape) not in (3, 4) or any(d is None for d in shape[1:]):
            return None
        if isinstance(op, keras.layers.Embedding):
            return None  # fixed ids (keras-hub's position embedding): no image in it
        self.produced[id(out)] = (name, out)
        per = tuple(int(d) for d in shape[1:])
        kind = type(op).__name__
        if len(per) == 2:
            layout = guess_layout(per, self.size, self.grids)
            if layout is None:
                return None
            return LayerInfo(name, map_shape(per, layout), kind, calls, layout), per, False
        fmt = getattr(op, "data_format", None)
        last = (
            fmt == "channels_last"
            if fmt in ("channels_first", "channels_last")
            else (self.default_last)
        )
        self._patch_grid(op, per, last)
        nchw = (per[2], per[0], per[1]) if last else per
        return LayerInfo(name, nchw, kind, calls, Layout("nhwc") if last else None), per, last

    def _patch_grid(self, op: Any, per: tuple[int, ...], last: bool) -> None:
        strides, kernel = getattr(op, "strides", None), getattr(op, "kernel_size", None)
        if isinstance(op, keras.layers.Conv2D) and strides == kernel and max(strides or (1,)) > 1:
            grid = (per[0], per[1]) if last else (per[1], per[2])
            if grid not in self.grids:
                self.grids.append(grid)

    def call(self, name: str, op: Any, args: tuple[Any, ...]) -> None:
        """Before ``op`` runs: for an attention layer, note which layer made its query."""
        if not is_attention(op) or not args:
            return
        found = self.produced.get(id(args[0]))
        if found is not None and found[1] is args[0]:
            self.attention[name] = found[0]

    def marked(self, info: LayerInfo) -> LayerInfo:
        """``info`` with ``feeds_attention`` set when an attention layer reads its output."""
        if info.name in self.attention.values():
            return replace(info, feeds_attention=True)
        return info
