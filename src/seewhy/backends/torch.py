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
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import BackendError, InvalidInput, LayerNotFound, UnsupportedModel
from .base import Capture, LayerInfo, Score, select_default_layer

__all__ = ["TorchBackend"]

# model -> {(input shape, module count): layer trace}; one traced forward per model and shape.
_TRACE_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], list[LayerInfo]]] = (
    weakref.WeakKeyDictionary()
)


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
        first = next(iter(model.parameters()), None)
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

    def _to_tensor(self, x: np.ndarray) -> torch.Tensor:
        if x.ndim != 4:
            raise InvalidInput(f"inputs: expected a (N, H, W, C) array, got shape {x.shape}")
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(0, 3, 1, 2)
        return t.to(device=self.device, dtype=self.dtype, memory_format=torch.contiguous_format)

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

    def predict(self, x: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        step = batch_size or len(x) or 1
        out = []
        with self._eval_mode(), torch.no_grad():
            for start in range(0, len(x), step):
                logits = _as_logits(self._forward(self._to_tensor(x[start : start + step])))
                out.append(logits.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

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
                raise LayerNotFound(f"layer: {layer!r} returns {type(output).__name__}, not a tensor")
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


def _opaque(model: nn.Module) -> bool:
    """TorchScript and torch.export modules run layers that forward hooks never see."""
    return isinstance(model, (torch.jit.ScriptModule, torch.fx.GraphModule))


def _suggest(layer: str, infos: list[LayerInfo]) -> str:
    names = [info.name for info in infos]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.3)
    return ", ".join(close or names[-5:]) or "(none)"


@contextlib.contextmanager
def _guided_relu() -> Iterator[None]:
    """Guided Backprop at every ReLU, without touching the model's modules.

    Filled in by the pixel-attribution methods; plain gradients until then.
    """
    yield
