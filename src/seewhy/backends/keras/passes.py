"""The Keras backend's passes: predict, capture, input gradients and layer edits.

Every pass is compiled once per model, pass kind and model size by the
engine of the running Keras backend and kept in a per-model cache (a weak
dictionary, so a cache never keeps its model alive). One eager forward of one
image (the *trace*) lists every layer output once per input shape; layer
names are resolved against it.

A compiled pass keeps its walker (and the walker its hook) between calls, so
every pass holds the model's lock (:mod:`..model_lock`): two threads over one
model run one pass at a time.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field, replace
from typing import Any

import keras
import numpy as np

from ..._kit.lru import LRU
from ..._kit.scores import Score, check_score, check_targets
from ..._kit.warn import warn_user
from ...errors import InvalidInput
from ..base import Capture, LayerInfo, Precision, check_precision
from ..common import Views, edit_each_image, edit_scales, shared_prefix_logits
from ..layouts import Layout, edit_factors, to_maps
from ..model_lock import one_pass_at_a_time
from .engines import Engine
from .engines.base import EditRun, Pass, PassRun, Result, logits_of, not_run
from .guided import guided_relu
from .structure import LayerNotes, all_layers, resolve_path
from .targets import check_region_classes, traced_classes
from .walker import Walker

__all__ = ["KerasPasses", "ModelCache", "Trace"]


@dataclass
class Trace:
    """What the tracing pass saw for one input shape."""

    infos: list[LayerInfo]
    native: dict[str, tuple[tuple[int, ...], bool]]  # path -> (per-image shape, channels_last)
    names: list[str]  # every layer path, any output rank
    classes: int  # width of the scores (a head's target columns, then the classes)
    sigmoid: bool = False  # the scored output ends in a sigmoid (skipped) or is one logit
    attention: dict[str, str] = field(default_factory=dict)  # attention path -> its input's


@dataclass
class ModelCache:
    """Everything compiled or learnt about one model, kept as long as the model lives."""

    # bounded: a new Region mask shape or input size compiles a pass of its own
    traces: LRU[tuple[Any, ...], Trace] = field(default_factory=LRU)
    passes: LRU[tuple[Any, ...], PassRun] = field(default_factory=LRU)
    edits: LRU[tuple[Any, ...], EditRun] = field(default_factory=LRU)
    shared_prefix: dict[str, bool] = field(default_factory=dict)  # layer -> it works
    guided_relus: dict[tuple[Any, ...], int] = field(default_factory=dict)  # pass -> ReLUs seen


_CACHE: weakref.WeakKeyDictionary[Any, ModelCache] = weakref.WeakKeyDictionary()


def _check_inputs(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise InvalidInput(f"inputs: expected a (N, H, W, C) array, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _targets(targets: np.ndarray | None, n: int, classes: int) -> np.ndarray:
    """int32 targets; -1 means "the top-1 class", decided inside the pass."""
    if targets is None:
        return np.full((n,), -1, np.int32)
    return check_targets(targets, n, classes).astype(np.int32)


def _with_data(run: PassRun, own: tuple[np.ndarray, ...]) -> PassRun:
    """``run`` given this head's target data (the compiled pass is shared by every such head)."""
    if not own:
        return run

    def bound(x: np.ndarray, t: np.ndarray, data: tuple[np.ndarray, ...] = ()) -> Result:
        return run(x, t, own + data)

    return bound


def _probability(score: Score) -> bool:
    return check_score(score) == "probability"


class KerasPasses(Views):
    """The pass methods of :class:`~seewhy.backends.keras.KerasBackend`."""

    model: Any
    engine: Engine
    channels_first: bool

    def sigmoid_output(self, x: np.ndarray) -> bool:
        """Whether the scored output ends in a sigmoid (its logits are explained) or one logit."""
        return self._trace(x).sigmoid

    def detections(self, x: np.ndarray) -> list[dict[str, np.ndarray]] | None:
        """None: a Keras model's output is read as scores, never as a detector's boxes."""
        return None

    # -- caches ----------------------------------------------------------------

    def _cache(self) -> ModelCache:
        return _CACHE.setdefault(self.model, ModelCache())

    def _size(self) -> int:
        return sum(1 for _ in all_layers(self.model))

    def _pass(self, spec: Pass) -> PassRun:
        spec = replace(spec, head=self._head)
        key = (spec, self._size())
        passes = self._cache().passes
        check_region_classes(self.model, self._head, self.channels_first)
        if key not in passes:
            passes[key] = self.engine.compile(self.model, spec, self.channels_first)
        return _with_data(passes[key], self._head.arrays())  # one pass for every such head

    def _trace(self, x: np.ndarray) -> Trace:
        x = _check_inputs(x)
        key = (tuple(x.shape[1:]), self._size(), self._head)
        traces = self._cache().traces
        if key not in traces:
            traces[key] = self._run_trace(x[:1])
        return traces[key]

    def _run_trace(self, x: np.ndarray) -> Trace:
        """One eager forward of one image, noting every layer output in finishing order."""
        default_last = not self.channels_first
        seen: dict[str, LayerInfo] = {}
        native: dict[str, tuple[tuple[int, ...], bool]] = {}
        order: list[str] = []
        names: list[str] = []

        notes = LayerNotes((int(x.shape[1]), int(x.shape[2])), default_last)

        def record(name: str, op: Any, out: Any) -> None:
            if name not in names:
                names.append(name)
            calls = seen[name].calls + 1 if name in seen else 1
            found = notes.entry(name, op, out, calls)
            if found is None:
                return
            seen[name], native[name] = found[0], found[1:]
            if name in order:
                order.remove(name)
            order.append(name)

        walker = Walker(self.model, record=record, output=self._head.output)
        walker.record_call = notes.call

        def run() -> Any:
            x_in = keras.ops.convert_to_tensor(x)
            return logits_of(walker, x_in, self.channels_first, self._head)

        classes, one_logit = traced_classes(self.engine.eager, run, self._head)  # 0: choose first
        sigmoid = walker.stripped == "sigmoid" or one_logit
        infos = [notes.marked(seen[n]) for n in order]
        return Trace(infos, native, names, classes, sigmoid, notes.attention)

    def _layer(self, layer: str | None, x: np.ndarray) -> tuple[Trace, LayerInfo]:
        """The trace for ``x`` and the resolved layer's entry in it."""
        trace = self._trace(x)
        path = resolve_path(layer, trace.infos, trace.names)
        return trace, next(i for i in trace.infos if i.name == path)

    # -- passes ----------------------------------------------------------------

    def preferred_batch_size(self, x: np.ndarray, precision: Precision = "float32") -> int:
        """16: TensorFlow's and JAX's allocators keep freed memory, so batches need not be tiny."""
        check_precision(precision)
        return 16

    @one_pass_at_a_time
    def predict(
        self, x: np.ndarray, *, batch_size: int | None = None, precision: Precision = "float32"
    ) -> np.ndarray:
        if check_precision(precision) != "float32":
            raise InvalidInput(
                f"precision: {precision} is for PyTorch models; a Keras model computes "
                "in its layers' own dtype policy"
            )
        x = _check_inputs(x)
        if len(x) == 0:
            return np.zeros((0, 0), np.float32)
        run = self._pass(Pass(None, 0, None, False))
        step = batch_size or len(x)
        out = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            out.append(run(chunk, np.full((len(chunk),), -1, np.int32)).logits)
        return np.concatenate(out)

    @one_pass_at_a_time
    def capture(
        self,
        x: np.ndarray,
        *,
        layer: str,
        targets: np.ndarray | None,
        gradients: bool,
        score: Score = "logit",
    ) -> Capture:
        probability = _probability(score)
        x = _check_inputs(x)
        trace, info = self._layer(layer, x)
        per, _ = trace.native[info.name]
        t = _targets(targets, len(x), trace.classes)
        spec = Pass(info.name, info.calls - 1, "layer" if gradients else None, probability, per)
        res = self._pass(spec)(x, t)
        if res.activations is None:
            raise not_run(info.name)
        layout, size = self.layout_choice or info.layout, (x.shape[1], x.shape[2])
        acts = to_maps(res.activations, layout, info.name, size)
        grads = None if res.gradients is None else to_maps(res.gradients, layout, info.name, size)
        return Capture(logits=res.logits, targets=res.targets, activations=acts, gradients=grads)

    @one_pass_at_a_time
    def input_gradients(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        score: Score = "logit",
        guided: bool = False,
    ) -> Capture:
        probability = _probability(score)
        x = _check_inputs(x)
        t = _targets(targets, len(x), self._trace(x).classes)
        spec = Pass(None, 0, "input", probability, guided=guided)
        run = self._pass(spec)
        res = run(x, t) if not guided else self._guided(run, (spec, self._size()), x, t)
        return Capture(logits=res.logits, targets=res.targets, gradients=res.gradients)

    def _guided(self, run: PassRun, key: tuple[Any, ...], x: np.ndarray, t: np.ndarray) -> Result:
        """Run a guided pass with Keras' ReLU patched; warn if no ReLU was ever traced.

        Compiled passes (TensorFlow, JAX) call the ReLU only while they are
        traced, so the count is kept per pass over its lifetime.
        """
        with guided_relu() as count:
            res = run(x, t)
        seen = self._cache().guided_relus
        seen[key] = seen.get(key, 0) + count.hits
        if seen[key] == 0:
            warn_user(
                "guided backprop: no Keras ReLU or ReLU6 call was seen in the model (other "
                "activations, or a tf.keras 2 model); the result is the plain gradient"
            )
        return res

    @one_pass_at_a_time
    def predict_with_layer_edit(
        self,
        x: np.ndarray,
        *,
        layer: str,
        scales: np.ndarray,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Logits (N, E, K): image ``i`` run E times, the layer's output scaled per channel.

        The network before the layer runs once per image and chunk (the
        shared-prefix policy of :func:`~seewhy.backends.common.shared_prefix_logits`):
        the image goes in alone and the edited copies (batch 1 becomes E at the
        layer) continue. A model that cannot take that is run the plain way
        (the image repeated E times) from then on.
        """
        x = _check_inputs(x)
        trace, info = self._layer(layer, x)
        path = info.name
        per, last = trace.native[path]
        scales = edit_scales(scales, len(x), info.shape[0], layer=path)
        cache = self._cache()
        key = (path, info.calls, per, self._size(), self._head)
        if key not in cache.edits:
            spec = Pass(path, info.calls - 1, None, False, per, head=self._head)
            cache.edits[key] = self.engine.compile_edit(self.model, spec, self.channels_first, last)
        edit, data = cache.edits[key], self._head.arrays()

        layout = self.layout_choice or info.layout

        def run(image: np.ndarray, chunk: np.ndarray) -> np.ndarray:
            scale = np.ascontiguousarray(chunk)
            if isinstance(layout, Layout) and layout.kind == "tokens":  # class tokens kept
                scale = edit_factors(layout, scale, (1, *per), (x.shape[1], x.shape[2]))
            return shared_prefix_logits(
                cache.shared_prefix,
                path,
                len(scale),
                lambda: edit(image, scale, data),
                lambda: edit(np.repeat(image, len(scale), axis=0), scale, data),
            )

        out = edit_each_image((x[i : i + 1] for i in range(len(x))), scales, batch_size, run)
        if out is None:  # no image or no edit
            return np.zeros((len(x), scales.shape[1], trace.classes), np.float32)
        return out
