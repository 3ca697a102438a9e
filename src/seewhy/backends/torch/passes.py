"""The torch backend's passes: predict, capture at a layer, input gradients, layer edits.

Rules they keep (see DESIGN.md): each pass holds the model's lock
(:mod:`..model_lock`) and runs on the model's private twin (:mod:`.twin`:
eval mode and hooks live there, never on the user's modules, so a thread
training the model meanwhile sees it as it left it); its hooks act only on
forwards of its own thread; hooks live only inside try/finally; the gradient is
taken with ``torch.autograd.grad`` to the layer alone, so no parameter's
``.grad`` is touched.

Speed and memory: the forward pass runs without autograd up to the target
layer. The layer's forward hook swaps its output for a detached leaf and turns
autograd on, so only the part of the network after the layer keeps a graph.
Several fused layers (``layer=[...]``) are captured in that one forward and one
backward (:mod:`..layer_sharing`); k rows of one picture of a model declaring
``seewhy_rows_by_backward`` (YOLO's detections) are one forward and k backwards.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

import numpy as np
import torch
from torch import nn

from ..._kit.scores import check_score, check_targets
from ...errors import BackendError, InvalidInput, LayerNotFound, UnsupportedModel
from ..base import Capture, LayerInfo, Precision, Score, check_precision
from ..common import Views, edit_each_image, edit_scales, shared_prefix_logits
from ..heads import DEFAULT_HEAD, scoring_rows
from ..layer_sharing import serve
from ..layouts import LayoutChoice, edit_factors, to_maps
from ..model_lock import one_pass_at_a_time
from .guided import guided_relu
from .structure import (
    call_model,
    call_of,
    layer_layout,
    layer_trace,
    named_layers,
    scored_call,
    this_thread_only,
)
from .targets import detections_as_numpy, head_scores, is_detector
from .twin import current_model, on_twin

__all__ = ["TorchPasses", "as_logits"]

# glibc's ceiling for its dynamic mmap threshold on 64-bit systems: freed blocks up
# to this size are reused from the heap, larger ones come back as fresh pages.
_MMAP_THRESHOLD_MAX = 32 * 2**20
# Elements of the largest activation per input element, when the model cannot be traced.
_ACTIVATION_GROWTH = 8
# Models that raised on a channels-last input (a ``view`` across channels) and so
# get the usual contiguous layout in ``predict``.
_NEEDS_CONTIGUOUS: weakref.WeakSet[nn.Module] = weakref.WeakSet()
# What a model raises when it cannot take batch 1 turning into E at the edited layer.
_PREFIX_REFUSALS = (RuntimeError, ValueError, IndexError)


def as_logits(output: Any) -> torch.Tensor:
    """The class scores inside whatever the model returns (see :mod:`.targets`)."""
    return head_scores(DEFAULT_HEAD, output)


def _select(
    logits: torch.Tensor, targets: torch.Tensor, score: Score, sigmoid: bool = False
) -> torch.Tensor:
    """Per-image score of its target class (a sigmoid head's probability is its own)."""
    values = logits
    if check_score(score) == "probability":
        one = sigmoid or logits.shape[1] == 1
        values = torch.sigmoid(logits) if one else torch.softmax(logits, dim=1)
    return values.gather(1, targets[:, None])[:, 0]


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


class TorchPasses(Views):
    """The passes of :class:`~seewhy.backends.torch.TorchBackend` (a mixin: see there)."""

    model: nn.Module
    device: torch.device
    dtype: torch.dtype

    def _scores(self, output: Any) -> torch.Tensor:
        return head_scores(self._head, output)

    def _target_scores(self, logits: torch.Tensor, t: torch.Tensor, score: Score) -> torch.Tensor:
        """Per-image score of its target, as capture() takes it (the attention passes use it)."""
        return _select(logits, t, score, self._head.sigmoid)

    @property
    def _net(self) -> nn.Module:
        """What the running pass feeds: the model's twin (see :mod:`.twin`)."""
        return current_model(self.model)

    @on_twin
    def layers(self, x: np.ndarray) -> list[LayerInfo]:
        return self._layers(x, named_layers(self._net))

    def _layers(self, x: np.ndarray, modules: dict[str, nn.Module]) -> list[LayerInfo]:
        shape = tuple(x.shape[1:])
        net, inputs = self._net, lambda: self._to_tensor(x[:1])
        return layer_trace(net, shape, inputs, modules, cache_key=self.model)

    # -- tensors ---------------------------------------------------------------

    def _nchw_view(self, x: np.ndarray) -> torch.Tensor:
        """The (N, H, W, C) array as (N, C, H, W) on the CPU, channels-last in memory (no copy)."""
        if x.ndim != 4:
            raise InvalidInput(f"inputs: expected a (N, H, W, C) array, got shape {x.shape}")
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(0, 3, 1, 2)

    def _to_tensor(self, x: np.ndarray) -> torch.Tensor:
        return self._nchw_view(x).to(
            device=self.device, dtype=self.dtype, memory_format=torch.contiguous_format
        )

    def _targets(self, targets: np.ndarray | None, logits: torch.Tensor) -> torch.Tensor:
        if targets is None:
            return logits.detach().argmax(dim=1)
        t = check_targets(targets, logits.shape[0], logits.shape[1])
        return torch.as_tensor(t, device=logits.device)

    def _layer_and_call(self, layer: str, x: np.ndarray) -> tuple[nn.Module, int, LayoutChoice]:
        """The layer's module, which of its calls in a forward is the one to use, its layout.

        One walk of the model's modules serves all (a large model has thousands).
        """
        modules = named_layers(self._net)
        module = modules.get(layer)
        if module is None:
            raise LayerNotFound(f"layer: the model has no layer {layer!r}")
        infos = self._layers(x, modules)
        return module, call_of(layer, infos), layer_layout(layer, infos, self.layout_choice)

    # -- forward only ----------------------------------------------------------

    @on_twin
    def predict(
        self, x: np.ndarray, *, batch_size: int | None = None, precision: Precision = "float32"
    ) -> np.ndarray:
        step = batch_size or len(x) or 1
        out = []
        with torch.no_grad(), self._autocast(precision):
            for start in range(0, len(x), step):
                logits = self._predict_logits(x[start : start + step])
                out.append(logits.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    @on_twin
    def preferred_batch_size(self, x: np.ndarray, precision: Precision = "float32") -> int:
        """Images per forward-only pass: on the CPU, the most that keep activations small.

        PyTorch's CPU allocator hands every tensor back to malloc, and glibc
        serves blocks above its mmap threshold (at most 32 MiB) with fresh
        pages that fault on first touch. For EfficientNet-Lite0 at 224 px,
        batch 16 spends more on those faults than on arithmetic: deletion ran
        1.6x slower per image than at batch 4. So the batch is the largest
        whose biggest activation stays under 32 MiB (Lite0: 6 in float32, 13
        in bfloat16). GPUs keep freed memory in a cache and take 64.
        """
        check_precision(precision)
        if self.device.type != "cpu":
            return 64
        itemsize = self.dtype.itemsize if precision == "float32" else 2
        try:
            sizes = [int(np.prod(info.shape)) for info in self.layers(x[:1])]
        except (RuntimeError, BackendError, UnsupportedModel):
            sizes = []
        largest = max(sizes, default=_ACTIVATION_GROWTH * int(np.prod(x.shape[1:])))
        return int(np.clip(_MMAP_THRESHOLD_MAX // max(1, largest * itemsize), 1, 256))

    def _autocast(self, precision: Precision) -> contextlib.AbstractContextManager[Any]:
        """Opt-in reduced precision: convolutions and matmuls in bfloat16 or float16.

        A Lite0 forward pass alone runs up to 4x faster in bfloat16 on a CPU
        with AMX (batch 16; 1.5-2x at the batches ``preferred_batch_size``
        picks), and it is the usual choice on recent GPUs; the probabilities
        move by about 0.5%.
        """
        if check_precision(precision) == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, precision))

    def _predict_logits(self, x: np.ndarray) -> torch.Tensor:
        """Logits of a forward-only pass, on the CPU in the channels-last layout.

        The (N, H, W, C) array seen as (N, C, H, W) already is channels-last in
        memory: oneDNN's CPU convolutions run it 1.2-1.5x faster than the
        usual layout (EfficientNet-Lite0) and the transposing copy is saved;
        the logits agree to float rounding. A model that cannot take the
        layout (a ``view`` across channels raises) gets the usual one from
        then on. GPUs keep the usual layout, whose fp32 kernels suit them.
        """
        net = self._net
        if self.device.type == "cpu" and self.model not in _NEEDS_CONTIGUOUS:
            inputs = self._nchw_view(x).to(dtype=self.dtype)
            try:
                return self._scores(scored_call(net, inputs))
            except Exception:  # any refusal of the layout; a real error recurs just below
                logits = self._scores(scored_call(net, self._to_tensor(x)))
                _NEEDS_CONTIGUOUS.add(self.model)  # only once the usual layout worked
                return logits
        return self._scores(scored_call(net, self._to_tensor(x)))

    def detections(self, x: np.ndarray) -> list[dict[str, np.ndarray]] | None:
        """A detector's boxes, labels and scores per image; None (no pass, no twin) for
        other models: every explanation asks, and a twin costs ~1 ms on a VLM."""
        return self._detections(x) if is_detector(self.model) else None

    @on_twin
    def _detections(self, x: np.ndarray) -> list[dict[str, np.ndarray]]:
        with torch.no_grad():
            return detections_as_numpy(call_model(self._net, self._to_tensor(x)))

    @one_pass_at_a_time
    def final_linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        linears = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            return None
        last = linears[-1]
        weight = _numpy(last.weight)
        bias = _numpy(last.bias) if last.bias is not None else np.zeros(len(weight), np.float32)
        return weight, bias

    # -- with gradients --------------------------------------------------------

    @one_pass_at_a_time  # the lock only: a capture kept from a fused layer's pass needs no twin
    def capture(
        self,
        x: np.ndarray,
        *,
        layer: str,
        targets: np.ndarray | None,
        gradients: bool,
        score: Score = "logit",
    ) -> Capture:
        head, layout = self._head, self.layout_choice
        ask = (x, targets, head.output, head.sigmoid, head.probability, head.columns, layout)
        return serve(
            self.model,
            layer,
            (*ask, gradients, score),
            lambda names: self._capture(x, names, targets, gradients, score),
        )

    @on_twin
    def _capture(
        self,
        x: np.ndarray,
        layers: tuple[str, ...],
        targets: np.ndarray | None,
        gradients: bool,
        score: Score,
    ) -> list[Capture]:
        """Every layer of ``layers`` captured in one forward and (``gradients``) one backward.

        The first captured layer to run becomes a detached leaf, so no graph is kept
        before it; a later one already in that graph stays in it (its gradient is taken
        to its own output), so the earlier layers' gradients still flow through it.
        """
        where = {name: self._layer_and_call(name, x) for name in layers}
        seen: dict[str, torch.Tensor] = {}  # each layer's activation (a leaf or in the graph)
        kept, repeats, at_layer = _repeated_rows(self.model, x)

        def hook_for(layer: str, wanted: int) -> Any:
            calls = [0]

            def hook(mod: nn.Module, args: Any, output: Any) -> Any:
                calls[0] += 1
                if calls[0] - 1 != wanted:
                    return None
                if not isinstance(output, torch.Tensor):
                    raise LayerNotFound(
                        f"layer: {layer!r} returns {type(output).__name__}, not a tensor"
                    )
                expand = at_layer and output.shape[0] != len(repeats)
                if expand:  # each row its own copy of its picture's output
                    output = output.index_select(0, torch.as_tensor(repeats, device=output.device))
                if gradients and output.requires_grad:  # after an earlier captured layer
                    seen[layer] = output
                    return output.clone()  # later in-place ops must not touch it
                leaf = output.detach()
                if not gradients:  # a copy: a later in-place op (ReLU(inplace=True)) changes it
                    seen[layer] = leaf.clone()
                    return output if expand else None
                seen[layer] = leaf.requires_grad_(True)
                torch.set_grad_enabled(True)  # graph only from here to the output
                return leaf.clone()  # later in-place ops (ReLU(inplace=True)) must not touch it

            return this_thread_only(hook)

        inputs = self._to_tensor(x if kept is None else x[kept])
        grad_mode = torch.is_grad_enabled()
        # first among the layer's hooks, so the ones after it (the user's, transformers' own
        # capture of hidden states, which a VLM's features are read from) see the leaf
        handles = [
            module.register_forward_hook(hook_for(name, wanted), prepend=True)
            for name, (module, wanted, _) in where.items()
        ]
        try:
            torch.set_grad_enabled(False)
            rows = None if at_layer or repeats is None else torch.as_tensor(repeats)
            with scoring_rows(self._head.columns, targets if rows is None else None):
                logits = self._scores(scored_call(self._net, inputs))
            if rows is not None:  # each picture's scores (and activations) for each of its rows
                logits = logits.index_select(0, rows.to(logits.device))
            for name in layers:
                if name not in seen:
                    raise LayerNotFound(f"layer: {name!r} did not run in the forward pass")
            t = self._targets(targets, logits)
            grads: list[Any] = [None] * len(layers)
            if gradients:
                chosen = _select(logits, t, score, self._head.sigmoid)
                grads = _grads_to(chosen, [seen[name] for name in layers], layers, rows)
        finally:
            for handle in handles:
                handle.remove()
            torch.set_grad_enabled(grad_mode)
        size = (x.shape[1], x.shape[2])
        return [
            Capture(
                logits=_numpy(logits),
                targets=t.cpu().numpy(),
                activations=to_maps(_rows(seen[name], rows), where[name][2], name, size),
                gradients=None if g is None else to_maps(_numpy(g), where[name][2], name, size),
            )
            for name, g in zip(layers, grads, strict=True)
        ]

    @on_twin
    def input_gradients(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        score: Score = "logit",
        guided: bool = False,
    ) -> Capture:
        inputs = self._to_tensor(x).requires_grad_(True)
        context = guided_relu() if guided else contextlib.nullcontext()
        with torch.enable_grad(), context:
            logits = self._scores(scored_call(self._net, inputs))
            t = self._targets(targets, logits)
            chosen = _select(logits, t, score, self._head.sigmoid)
            (grad,) = torch.autograd.grad(chosen.sum(), inputs)
        return Capture(
            logits=_numpy(logits),
            targets=t.cpu().numpy(),
            gradients=_numpy(grad.permute(0, 2, 3, 1)),
        )

    # -- layer edits (Ablation-CAM) --------------------------------------------

    @on_twin
    def predict_with_layer_edit(
        self,
        x: np.ndarray,
        *,
        layer: str,
        scales: np.ndarray,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Logits (N, E, K): image ``i`` run E times, the layer's output scaled per channel.

        Run ``e`` of image ``i`` multiplies channel ``c`` of the layer's output by
        ``scales[i, e, c]`` (``scales`` may also be (E, C), the same for every image);
        a zero ablates the channel (Ablation-CAM).

        Cost: the naive way repeats the image E times, so the network before the
        layer runs E times for nothing. Here it runs once per image and batch: the
        image goes in alone and the layer's forward hook hands the rest of the
        network the whole batch of edited copies (batch 1 becomes B mid-forward;
        broadcasting carries the skip connections that started before the layer).
        A model that cannot take that (it raises, or returns the wrong number of
        rows) is run the naive way from then on, which is always correct
        (:func:`~seewhy.backends.common.shared_prefix_logits`).
        """
        module, wanted, layout = self._layer_and_call(layer, x)
        size = (x.shape[1], x.shape[2])
        scales = edit_scales(scales, len(x))
        state: dict[str, Any] = {"calls": 0, "scale": None, "seen": False}

        def hook(mod: nn.Module, args: Any, output: Any) -> Any:
            call = state["calls"]
            state["calls"] = call + 1
            if call != wanted:
                return None
            if not isinstance(output, torch.Tensor) or output.ndim < 2:
                raise LayerNotFound(f"layer: {layer!r} does not return an (N, C, ...) tensor")
            state["seen"] = True
            factors = edit_factors(layout, state["scale"], tuple(output.shape), size)
            scale = torch.from_numpy(factors).to(device=output.device, dtype=output.dtype)
            return output * scale  # a new tensor; the model's own stays as is

        known: dict[str, bool] = self.__dict__.setdefault("_layer_edit_shared_prefix", {})
        net = self._net

        def forward(inputs: torch.Tensor) -> np.ndarray:
            state["calls"], state["seen"] = 0, False
            logits = self._scores(scored_call(net, inputs))
            if not state["seen"]:
                raise LayerNotFound(f"layer: {layer!r} did not run in the forward pass")
            return logits.float().cpu().numpy()

        def run(image: torch.Tensor, chunk: np.ndarray) -> np.ndarray:
            state["scale"] = np.asarray(chunk, np.float32)
            count = len(chunk)
            return shared_prefix_logits(
                known,
                layer,
                count,
                shared=lambda: forward(image),
                repeated=lambda: forward(image.expand(count, *image.shape[1:]).contiguous()),
                refusals=_PREFIX_REFUSALS,
            )

        images = (self._to_tensor(x[i : i + 1]) for i in range(len(x)))
        handle = module.register_forward_hook(this_thread_only(hook), prepend=True)  # as above
        try:
            with torch.no_grad():
                out = edit_each_image(images, scales, batch_size, run)
        finally:
            handle.remove()
        return np.zeros((len(x), scales.shape[1], 0), np.float32) if out is None else out


def _repeated_rows(model: nn.Module, x: np.ndarray) -> tuple[Any, Any, bool]:
    """(the distinct rows, which of them each row is, whether rows split at the layer) when
    ``model`` gets the same picture in consecutive rows and declares either
    ``seewhy_shared_rows`` (its layers before any explained one treat rows alone: SAM's image
    side; the rows run up to the layer once, then each its own copy) or
    ``seewhy_rows_by_backward`` (each picture runs once, each row is its own backward from its
    own score: a YOLO neck mixes the layer's output with earlier ones, so rows cannot split
    there; only for rows of one picture, as each backward runs over every picture of the
    pass); else (None, None, False). k prompts or detections on one picture: one forward.
    """
    at_layer = bool(getattr(model, "seewhy_shared_rows", False))
    if not (at_layer or getattr(model, "seewhy_rows_by_backward", False)) or len(x) < 2:
        return None, None, False
    kept, repeats = [0], np.zeros(len(x), np.int64)
    for i in range(1, len(x)):
        if not np.array_equal(x[i], x[kept[-1]]):
            kept.append(i)
        repeats[i] = len(kept) - 1
    if len(kept) == len(x) or (not at_layer and len(kept) > 1):
        return None, None, False
    return np.asarray(kept), repeats, at_layer


def _rows(t: torch.Tensor, rows: torch.Tensor | None) -> np.ndarray:
    return _numpy(t if rows is None else t.index_select(0, rows.to(t.device)))


def _grads_to(
    score: torch.Tensor,
    outputs: list[torch.Tensor],
    layers: tuple[str, ...],
    rows: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """d(score)/d(each output), in one backward (``rows``: the picture of each score, whose
    outputs hold each picture once: one backward per score, each row its picture's), or the
    error that says why a layer is not on the score's path."""
    if not score.requires_grad:
        named = " or ".join(repr(name) for name in layers)
        raise BackendError(
            f"layer: the output does not depend on {named} through autograd "
            "(is the rest of the forward pass run under torch.no_grad?)"
        )
    if rows is None:
        return _backward(score.sum(), outputs, layers, keep=False)
    last, picked = len(rows) - 1, rows.tolist()
    each = [_backward(score[i], outputs, layers, keep=i < last) for i in range(len(rows))]
    return [
        torch.stack([g[j][r] for g, r in zip(each, picked, strict=True)])
        for j in range(len(layers))
    ]


def _backward(
    score: torch.Tensor, outputs: list[torch.Tensor], layers: tuple[str, ...], *, keep: bool
) -> list[torch.Tensor]:
    grads = torch.autograd.grad(score, outputs, allow_unused=True, retain_graph=keep)
    for name, grad in zip(layers, grads, strict=True):
        if grad is None:
            raise LayerNotFound(f"layer: the model output does not depend on {name!r}")
    return list(grads)
