"""PyTorch backend.

Rules it keeps (see DESIGN.md): hooks live only inside try/finally; the
gradient is taken with ``torch.autograd.grad`` to the layer alone, so no
parameter's ``.grad`` is touched; the training flag of every module is put
back exactly as it was, also when the model raises.

Speed and memory: the forward pass runs without autograd up to the target
layer. The layer's forward hook swaps its output for a detached leaf and turns
autograd on, so only the part of the network after the layer keeps a graph.
"""

from __future__ import annotations

import contextlib
import difflib
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import BackendError, InvalidInput, LayerNotFound, UnsupportedModel
from .base import Capture, LayerInfo, Precision, Score, check_precision, select_default_layer

__all__ = ["TorchBackend"]

# model -> {(input shape, module count): layer trace}; one traced forward per model and shape.
_TRACE_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], list[LayerInfo]]] = (
    weakref.WeakKeyDictionary()
)
# glibc's ceiling for its dynamic mmap threshold on 64-bit systems: freed blocks up
# to this size are reused from the heap, larger ones come back as fresh pages.
_MMAP_THRESHOLD_MAX = 32 * 2**20
# Elements of the largest activation per input element, when the model cannot be traced.
_ACTIVATION_GROWTH = 8
# Models that raised on a channels-last input (a ``view`` across channels) and so
# get the usual contiguous layout in ``predict``.
_NEEDS_CONTIGUOUS: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _as_logits(output: Any) -> torch.Tensor:
    """The class scores inside whatever the model returns."""
    if isinstance(output, torch.Tensor):
        out = output
    elif hasattr(output, "logits") and isinstance(output.logits, torch.Tensor):
        out = output.logits
    elif isinstance(output, dict) and output:
        key = "logits" if "logits" in output else next(iter(output))
        out = output[key]
    elif isinstance(output, (tuple, list)) and output:
        out = _as_logits(output[0])
    else:
        raise BackendError(f"model output: expected a tensor of class scores, got {type(output)}")
    if out.ndim != 2:
        raise BackendError(
            f"model output: expected class scores of shape (N, classes), got {tuple(out.shape)}"
        )
    return out


def _select(logits: torch.Tensor, targets: torch.Tensor, score: Score) -> torch.Tensor:
    """Per-image score of its target class."""
    if score == "probability":
        values = torch.softmax(logits, dim=1)
    elif score == "logit":
        values = logits
    else:
        raise InvalidInput(f"score: expected 'logit' or 'probability', got {score!r}")
    return values.gather(1, targets[:, None])[:, 0]


class TorchBackend:
    """Explains a ``torch.nn.Module`` that maps (N, C, H, W) images to class scores."""

    framework = "torch"
    channels_first = True

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        first: torch.Tensor | None = next(iter(model.parameters()), None)
        if first is None:
            first = next(iter(model.buffers()), None)
        self.device = first.device if first is not None else torch.device("cpu")
        floating = first is not None and first.is_floating_point()
        self.dtype = first.dtype if floating and first is not None else torch.float32

    # -- state -----------------------------------------------------------------

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Eval mode for the duration, then every module's own flag back."""
        flags = [(m, m.training) for m in self.model.modules()]
        try:
            for module, _ in flags:
                module.training = False
            yield
        finally:
            for module, flag in flags:
                module.training = flag

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
        t = torch.as_tensor(np.asarray(targets, dtype=np.int64), device=logits.device)
        classes = logits.shape[1]
        if t.shape != (logits.shape[0],):
            raise InvalidInput(f"target: expected one class per image, got shape {tuple(t.shape)}")
        if bool(((t < 0) | (t >= classes)).any()):
            bad = int(t[(t < 0) | (t >= classes)][0])
            raise InvalidInput(f"target: class {bad} is outside the model's 0..{classes - 1}")
        return t

    def _forward(self, inputs: torch.Tensor) -> Any:
        try:
            return self.model(inputs)
        except AssertionError as exc:  # torch.export guards on input shapes
            if "Guard failed" not in str(exc):
                raise
            raise BackendError(
                f"model: the exported model rejects inputs of shape {tuple(inputs.shape)} "
                f"({exc}); export it with a dynamic batch dimension (torch.export.Dim)"
            ) from None

    # -- layers ----------------------------------------------------------------

    def _modules(self) -> dict[str, nn.Module]:
        return {name: m for name, m in self.model.named_modules() if name}

    def layers(self, x: np.ndarray) -> list[LayerInfo]:
        modules = self._modules()
        key = (tuple(x.shape[1:]), len(modules))
        cache = _TRACE_CACHE.setdefault(self.model, {})
        if key not in cache:
            cache[key] = self._trace(x[:1], modules)
        return cache[key]

    def _trace(self, x: np.ndarray, modules: dict[str, nn.Module]) -> list[LayerInfo]:
        """One forward of one image, noting each 4-D output in the order it finishes."""
        seen: dict[str, LayerInfo] = {}
        order: list[str] = []

        def make_hook(name: str) -> Any:
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                if isinstance(output, torch.Tensor) and output.ndim == 4:
                    calls = seen[name].calls + 1 if name in seen else 1
                    seen[name] = LayerInfo(
                        name, tuple(output.shape[1:]), type(module).__name__, calls
                    )
                    if name in order:
                        order.remove(name)
                    order.append(name)

            return hook

        handles = []
        try:
            for name, module in modules.items():
                handles.append(module.register_forward_hook(make_hook(name)))
            with self._eval_mode(), torch.no_grad():
                self._forward(self._to_tensor(x))
        except RuntimeError as exc:
            if "not supported on ScriptModules" not in str(exc):
                raise
            return []
        finally:
            for h in handles:
                h.remove()
        return [seen[name] for name in order]

    def resolve_layer(self, layer: str | None, x: np.ndarray) -> str:
        infos = self.layers(x)
        if not infos and _opaque(self.model):
            raise UnsupportedModel(
                f"layer: {type(self.model).__name__} (TorchScript / torch.export) cannot be "
                "hooked, so layer methods need the eager model; pixel and perturbation methods "
                "(saliency, occlusion, ...) work on it"
            )
        if layer is None:
            chosen = select_default_layer(infos)
            if chosen is None:
                raise LayerNotFound(
                    "layer: the model has no layer with a 4-D output (N, C, h, w) of more "
                    "than one position; a CAM needs a convolutional feature map"
                )
            return chosen.name
        if any(info.name == layer for info in infos):
            return layer
        modules = self._modules()
        if layer in modules:
            raise LayerNotFound(
                f"layer: {layer!r} exists but gives no 4-D feature map for this input "
                f"(a CAM needs (N, C, h, w)); try one of: {_suggest(layer, infos)}"
            )
        close = difflib.get_close_matches(layer, list(modules), n=5, cutoff=0.4)
        hint = ", ".join(close) if close else _suggest(layer, infos)
        raise LayerNotFound(f"layer: the model has no layer {layer!r}; did you mean: {hint}?")

    def _call_count(self, layer: str, x: np.ndarray) -> int:
        for info in self.layers(x):
            if info.name == layer:
                return info.calls
        return 1

    # -- passes ----------------------------------------------------------------

    def predict(
        self, x: np.ndarray, *, batch_size: int | None = None, precision: Precision = "float32"
    ) -> np.ndarray:
        step = batch_size or len(x) or 1
        out = []
        with self._eval_mode(), torch.no_grad(), self._autocast(precision):
            for start in range(0, len(x), step):
                logits = self._predict_logits(x[start : start + step])
                out.append(logits.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

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
        if self.device.type == "cpu" and self.model not in _NEEDS_CONTIGUOUS:
            inputs = self._nchw_view(x).to(dtype=self.dtype)
            try:
                return _as_logits(self._forward(inputs))
            except Exception:  # any refusal of the layout; a real error recurs just below
                logits = _as_logits(self._forward(self._to_tensor(x)))
                _NEEDS_CONTIGUOUS.add(self.model)  # only once the usual layout worked
                return logits
        return _as_logits(self._forward(self._to_tensor(x)))

    def capture(
        self,
        x: np.ndarray,
        *,
        layer: str,
        targets: np.ndarray | None,
        gradients: bool,
        score: Score = "logit",
    ) -> Capture:
        module = self._modules().get(layer)
        if module is None:
            raise LayerNotFound(f"layer: the model has no layer {layer!r}")
        wanted = self._call_count(layer, x) - 1
        state: dict[str, Any] = {"calls": 0, "leaf": None}

        def hook(mod: nn.Module, args: Any, output: Any) -> Any:
            call = state["calls"]
            state["calls"] = call + 1
            if call != wanted:
                return None
            if not isinstance(output, torch.Tensor):
                raise LayerNotFound(
                    f"layer: {layer!r} returns {type(output).__name__}, not a tensor"
                )
            leaf = output.detach()
            state["leaf"] = leaf
            if not gradients:
                return None
            leaf.requires_grad_(True)
            torch.set_grad_enabled(True)  # graph only from here to the output
            return leaf.clone()  # later in-place ops (ReLU(inplace=True)) must not touch the leaf

        inputs = self._to_tensor(x)
        grad_mode = torch.is_grad_enabled()
        handle = module.register_forward_hook(hook)
        try:
            with self._eval_mode():
                torch.set_grad_enabled(False)
                logits = _as_logits(self._forward(inputs))
                leaf = state["leaf"]
                if leaf is None:
                    raise LayerNotFound(f"layer: {layer!r} did not run in the forward pass")
                t = self._targets(targets, logits)
                grads = None
                if gradients:
                    grads = self._grad_to(_select(logits, t, score), leaf, layer)
        finally:
            handle.remove()
            torch.set_grad_enabled(grad_mode)
        return Capture(
            logits=logits.detach().float().cpu().numpy(),
            targets=t.cpu().numpy(),
            activations=leaf.detach().float().cpu().numpy(),
            gradients=None if grads is None else grads.float().cpu().numpy(),
        )

    @staticmethod
    def _grad_to(score: torch.Tensor, leaf: torch.Tensor, layer: str) -> torch.Tensor:
        if not score.requires_grad:
            raise BackendError(
                f"layer: the output does not depend on {layer!r} through autograd "
                "(is the rest of the forward pass run under torch.no_grad?)"
            )
        (grad,) = torch.autograd.grad(score.sum(), leaf, allow_unused=True)
        if grad is None:
            raise LayerNotFound(f"layer: the model output does not depend on {layer!r}")
        return grad

    def input_gradients(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        score: Score = "logit",
        guided: bool = False,
    ) -> Capture:
        inputs = self._to_tensor(x).requires_grad_(True)
        context = _guided_relu() if guided else contextlib.nullcontext()
        with self._eval_mode(), torch.enable_grad(), context:
            logits = _as_logits(self._forward(inputs))
            t = self._targets(targets, logits)
            (grad,) = torch.autograd.grad(_select(logits, t, score).sum(), inputs)
        return Capture(
            logits=logits.detach().float().cpu().numpy(),
            targets=t.cpu().numpy(),
            gradients=grad.permute(0, 2, 3, 1).float().cpu().numpy(),
        )

    def final_linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        linears = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            return None
        last = linears[-1]
        weight = last.weight.detach().float().cpu().numpy()
        bias = (
            last.bias.detach().float().cpu().numpy()
            if last.bias is not None
            else np.zeros(weight.shape[0], np.float32)
        )
        return weight, bias

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
        rows) is run the naive way from then on, which is always correct.
        """
        module = self._modules().get(layer)
        if module is None:
            raise LayerNotFound(f"layer: the model has no layer {layer!r}")
        scales = np.asarray(scales, dtype=np.float32)
        if scales.ndim == 2:
            scales = np.broadcast_to(scales, (len(x), *scales.shape))
        if scales.ndim != 3 or len(scales) != len(x):
            raise InvalidInput(
                f"scales: expected (N, E, C) or (E, C) with N = {len(x)}, got {scales.shape}"
            )
        edits = scales.shape[1]
        step = max(1, batch_size or edits or 1)
        wanted = self._call_count(layer, x) - 1
        state: dict[str, Any] = {"calls": 0, "scale": None, "seen": False}

        def hook(mod: nn.Module, args: Any, output: Any) -> Any:
            call = state["calls"]
            state["calls"] = call + 1
            if call != wanted:
                return None
            if not isinstance(output, torch.Tensor) or output.ndim < 2:
                raise LayerNotFound(f"layer: {layer!r} does not return an (N, C, ...) tensor")
            state["seen"] = True
            scale = state["scale"]
            shape = (scale.shape[0], scale.shape[1]) + (1,) * (output.ndim - 2)
            return output * scale.reshape(shape)  # a new tensor; the model's own stays as is

        cache: dict[str, bool] = self.__dict__.setdefault("_layer_edit_shared_prefix", {})
        out = np.zeros((len(x), edits, 0), np.float32)
        handle = module.register_forward_hook(hook)
        try:
            with self._eval_mode(), torch.no_grad():
                rows: list[np.ndarray] = []
                for i in range(len(x)):
                    image = self._to_tensor(x[i : i + 1])
                    per_image = []
                    for start in range(0, edits, step):
                        chunk = torch.from_numpy(np.array(scales[i, start : start + step]))
                        state["scale"] = chunk.to(device=self.device, dtype=self.dtype)
                        per_image.append(
                            self._edited_forward(image, len(chunk), layer, state, cache)
                        )
                    rows.append(np.concatenate(per_image))
                if rows and edits:
                    out = np.stack(rows)
        finally:
            handle.remove()
        return out

    def _edited_forward(
        self,
        image: torch.Tensor,
        count: int,
        layer: str,
        state: dict[str, Any],
        cache: dict[str, bool],
    ) -> np.ndarray:
        """One batch of edits of one image: shared prefix when the model allows it."""
        shared = cache.get(layer)
        if shared is not False:
            state["calls"], state["seen"] = 0, False
            try:
                logits: torch.Tensor | None = _as_logits(self._forward(image))
            except (RuntimeError, ValueError, IndexError):
                if shared:  # the shared prefix worked before: this is the model's own error
                    raise
                logits = None
            if logits is not None:
                if not state["seen"]:
                    raise LayerNotFound(f"layer: {layer!r} did not run in the forward pass")
                if logits.shape[0] == count:
                    if count > 1:
                        cache[layer] = True
                    return logits.float().cpu().numpy()
            cache[layer] = False
        state["calls"], state["seen"] = 0, False
        logits = _as_logits(self._forward(image.expand(count, *image.shape[1:]).contiguous()))
        if not state["seen"]:
            raise LayerNotFound(f"layer: {layer!r} did not run in the forward pass")
        return logits.float().cpu().numpy()


def _opaque(model: nn.Module) -> bool:
    """TorchScript and torch.export modules run layers that forward hooks never see."""
    return isinstance(model, (torch.jit.ScriptModule, torch.fx.GraphModule))


def _suggest(layer: str, infos: list[LayerInfo]) -> str:
    names = [info.name for info in infos]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.3)
    return ", ".join(close or names[-5:]) or "(none)"


class _GuidedClamp(torch.autograd.Function):
    """ReLU / ReLU6 forward; Guided Backprop backward (Springenberg et al., 2015).

    The gradient passes only where the unit was active (0 < x < upper) and the
    gradient coming back is positive. The mask is computed from the output, so
    the in-place form (``ReLU(inplace=True)``) needs no copy of the input.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, upper: float | None, inplace: bool) -> torch.Tensor:
        if inplace:
            out = x.clamp_(min=0.0, max=upper)
            ctx.mark_dirty(x)
        else:
            out = x.clamp(min=0.0, max=upper)
        active = out > 0 if upper is None else (out > 0) & (out < upper)
        ctx.save_for_backward(active)
        return out

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (active,) = ctx.saved_tensors
        return grads[0].clamp(min=0.0) * active, None, None


def _guided_call(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, float | None, bool] | None:
    """(input, upper bound, in-place) when ``func`` is a ReLU-like call, else None."""
    if func in _RELU or func in _RELU6:
        flag = bool(args[1] if len(args) > 1 else kwargs.get("inplace", False))
        if func in _RELU:
            return args[0], None, func in _RELU_INPLACE or flag
        return args[0], 6.0, func in _RELU6_INPLACE or flag
    if func in _HARDTANH:
        names = ("min_val", "max_val", "inplace")
        values = {"min_val": -1.0, "max_val": 1.0, "inplace": func is _HARDTANH_INPLACE}
        values.update(zip(names, args[1:], strict=False))
        values.update({k: v for k, v in kwargs.items() if k in names})
        if float(values["min_val"]) != 0.0:  # a clamp that is not a ReLU: leave it alone
            return None
        return args[0], float(values["max_val"]), bool(values["inplace"])
    return None


_RELU = {F.relu, torch.relu, torch.Tensor.relu, torch.relu_, torch.Tensor.relu_}
_RELU_INPLACE = {torch.relu_, torch.Tensor.relu_}
_RELU6 = {F.relu6, torch._C._nn.relu6, torch._C._nn.relu6_}
_RELU6_INPLACE = {torch._C._nn.relu6_}
_HARDTANH_INPLACE = torch._C._nn.hardtanh_
_HARDTANH = {F.hardtanh, torch._C._nn.hardtanh, _HARDTANH_INPLACE}


class _GuidedMode(TorchFunctionMode):
    """Routes every ReLU / ReLU6 call made while active through :class:`_GuidedClamp`.

    A torch-function mode sees module and functional forms alike (``nn.ReLU``,
    ``F.relu``, ``torch.relu``, ``x.relu_()``, ``nn.ReLU6`` via ``F.hardtanh``),
    so no module is swapped and no activation is edited. TorchScript modules
    bypass Python dispatch and keep their plain gradient.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        call = _guided_call(func, args, kwargs)
        if call is None or not isinstance(call[0], torch.Tensor):
            return func(*args, **kwargs)
        self.hits += 1
        return _GuidedClamp.apply(*call)


@contextlib.contextmanager
def _guided_relu() -> Iterator[None]:
    """Guided Backprop at every ReLU, without touching the model's modules.

    The mode lives only inside this block (left by ``with`` also on error).
    A model in which no ReLU was seen gets a warning: its result is a plain
    gradient.
    """
    mode = _GuidedMode()
    with mode:
        yield
    if mode.hits == 0:
        warnings.warn(
            "guided backprop: no ReLU or ReLU6 call was seen in the model (TorchScript, or "
            "other activations); the result is the plain gradient",
            stacklevel=3,
        )
