"""What a torch model is made of, and running it without changing it.

Layer lookup, the traced list of layers with 4-D outputs, detection of
modules that hooks cannot see (TorchScript, torch.export), eval mode for a
model explained in place (:mod:`.twin`) with every module's own flag put back,
and torch.export's shape guards as a one-line error.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ...errors import BackendError, UnsupportedModel
from ..base import LayerInfo
from ..layouts import LayoutChoice, LayoutKind, guess_layout, map_shape
from .complaints import input_mismatch, not_a_picture_model
from .targets import sigmoid_calls

__all__ = [
    "ATTENTION_PROJECTIONS",
    "before_logits",
    "cached_trace",
    "call_model",
    "call_of",
    "eval_mode",
    "is_attention",
    "layer_layout",
    "layer_trace",
    "named_layers",
    "opaque_error",
    "scored_call",
    "this_thread_only",
    "this_thread_only_any",
]

# model -> {(input shape, module count): layer trace}; one traced forward per model and shape.
_TRACE_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], list[LayerInfo]]] = (
    weakref.WeakKeyDictionary()
)


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every submodule by its dotted name (the model itself, named "", left out)."""
    return {name: m for name, m in model.named_modules() if name}


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then every module's own flag back."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        for module, _ in flags:
            module.training = False
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def this_thread_only(hook: Callable[..., Any]) -> Callable[..., Any]:
    """``hook`` acting only on forwards run by the thread that made it.

    A pass's hooks sit on the model's twin, which no one else calls; a model
    explained in place (:mod:`.twin`) has them on its own modules, and this keeps
    them out of a forward that the user's code runs in another thread meanwhile
    (DataParallel's replicas share them too).
    """
    owner = threading.get_ident()

    def guarded(module: nn.Module, args: Any, output: Any) -> Any:
        if threading.get_ident() != owner:
            return None
        return hook(module, args, output)

    return guarded


def this_thread_only_any(hook: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`this_thread_only` for a hook of any arguments (pre-hooks, hooks with kwargs)."""
    owner = threading.get_ident()

    def guarded(*args: Any) -> Any:
        return hook(*args) if threading.get_ident() == owner else None

    return guarded


def call_model(model: nn.Module, inputs: torch.Tensor) -> Any:
    """``model(inputs)``, with torch.export's shape guard said in one line."""
    try:
        return model(inputs)
    except AssertionError as exc:  # torch.export guards on input shapes; timm's size check
        if "Guard failed" not in str(exc):
            raise input_mismatch(exc, tuple(inputs.shape)) or exc from None
        raise BackendError(
            f"model: the exported model rejects inputs of shape {tuple(inputs.shape)} "
            f"({exc}); export it with a dynamic batch dimension (torch.export.Dim)"
        ) from None
    except (RuntimeError, ValueError, TypeError) as exc:  # its own complaint, in one line
        said = not_a_picture_model(model, inputs, exc)
        raise said or input_mismatch(exc, tuple(inputs.shape)) or exc from None


#: A module class's flag: its output is features for a target to score, never a sigmoid's
#: (a vision-language model's image tower or vision path), so the watch is skipped.
FEATURES_ONLY = "seewhy_features_only"


def scored_call(model: nn.Module, inputs: torch.Tensor) -> Any:
    """:func:`call_model` for a forward whose output is scored: run under
    :func:`.targets.sigmoid_calls`, so that a final sigmoid's logits can be scored. Only
    these forwards pay for watching every torch call (the trace, sizes tried and
    detections do not), and not those of a module whose class says :data:`FEATURES_ONLY`
    (0.6 ms a call on a small vision-language model's 146 torch calls)."""
    if getattr(type(model), FEATURES_ONLY, False):
        return call_model(model, inputs)
    with sigmoid_calls():
        return call_model(model, inputs)


def layer_trace(
    model: nn.Module,
    shape: tuple[int, ...],
    inputs: Callable[[], torch.Tensor],
    modules: dict[str, nn.Module] | None = None,
    cache_key: nn.Module | None = None,
) -> list[LayerInfo]:
    """The layers with 4-D outputs for inputs of ``shape``, traced once per model and shape.

    ``model`` runs the trace (in eval mode already: a pass's twin); ``cache_key`` is
    the user's model when ``model`` is its twin, made anew for every pass.
    ``inputs`` makes the one image the trace runs (only when it is not cached);
    ``modules`` is the model's ``named_layers`` when the caller has it already.
    """
    modules = named_layers(model) if modules is None else modules
    key = (shape, len(modules))
    owner = model if cache_key is None else cache_key
    cache = _TRACE_CACHE.setdefault(owner, {})
    if key not in cache:
        cache[key], logits = _trace(model, inputs(), modules)
        _LOGIT_LAYERS[owner] = _LOGIT_LAYERS.get(owner, frozenset()) | logits
    return cache[key]


def cached_trace(model: nn.Module, shape: tuple[int, ...], count: int) -> list[LayerInfo] | None:
    """The trace :func:`layer_trace` keeps for ``model``, inputs of ``shape`` and ``count``
    modules; None when there is none yet. Runs nothing, so it needs no twin."""
    return _TRACE_CACHE.get(model, {}).get((shape, count))


# model -> the layers whose output is the model's own per-pixel logits (a segmenter's head).
_LOGIT_LAYERS: weakref.WeakKeyDictionary[nn.Module, frozenset[str]] = weakref.WeakKeyDictionary()


def before_logits(model: nn.Module, infos: list[LayerInfo]) -> list[LayerInfo]:
    """The default layer's candidates: without the layers whose output *is* the model's
    per-pixel logits (Hugging Face SegFormer's ``decode_head`` and its classifier), whose
    map would only be the class-logit map; the last feature map before them is chosen,
    as for the other segmenters."""
    logits = _LOGIT_LAYERS.get(model, frozenset())
    kept = [info for info in infos if info.name not in logits]
    return kept or infos


def _scored_maps(output: Any) -> list[torch.Tensor]:
    """The per-pixel logits a model returns: a 4-D tensor, a 4-D ``logits``, or every 4-D
    value of a dict (torchvision's segmenters return ``out`` and ``aux``)."""
    for value in (output, getattr(output, "logits", None)):
        if isinstance(value, torch.Tensor):
            return [value] if value.ndim == 4 else []
    if isinstance(output, dict):
        return [v for v in output.values() if isinstance(v, torch.Tensor) and v.ndim == 4]
    return []


#: The projections an attention layer computes its queries from (timm, torchvision MaxViT, HF).
ATTENTION_PROJECTIONS = ("qkv", "to_qkv", "q_proj", "query")


def is_attention(module: nn.Module) -> bool:
    """A self-attention layer (timm, torchvision, Hugging Face, ``nn.MultiheadAttention``):
    by its class name, or by heads and a query projection (timm's ``AttentionCl``)."""
    if isinstance(module, nn.MultiheadAttention) or type(module).__name__.endswith("Attention"):
        return True
    return hasattr(module, "num_heads") and any(
        isinstance(getattr(module, name, None), nn.Module) for name in ATTENTION_PROJECTIONS
    )


def _is_windowed(module: nn.Module) -> bool:
    """A layer that cuts its map into attention windows and stitches it back (torchvision
    MaxViT's window and grid attention, with ``...Partition`` children; timm MaxViT's
    ``PartitionAttention...``): inside it, outputs are (N * windows, window tokens, C) or
    (N, windows, window tokens, C), which no layout reads as one image's map; its own
    output is the map again."""
    return "Partition" in type(module).__name__ or any(
        type(child).__name__.endswith("Partition") for child in module.children()
    )


def _inside(modules: dict[str, nn.Module], kind: Callable[[nn.Module], bool]) -> set[str]:
    """The names of the layers within a layer of ``kind``."""
    outers = [outer + "." for outer, module in modules.items() if kind(module)]
    return {name for name in modules if any(name.startswith(o) for o in outers)}


def _hint(module: nn.Module, shape: tuple[int, ...]) -> LayoutKind | None:
    """What the module itself says of a 4-D output's layout, where it says anything."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d)):
        return "nchw"
    if isinstance(module, nn.Linear) and module.out_features == shape[-1]:
        return "nhwc"
    if isinstance(module, nn.LayerNorm) and tuple(module.normalized_shape) == shape[-1:]:
        return "nhwc" if shape[0] != shape[-1] else None  # LayerNorm2d normalises axis 1
    return None


def _patch_grid(module: nn.Module, output: torch.Tensor) -> tuple[int, int] | None:
    """The grid a patch embedding makes: a convolution whose stride equals its kernel."""
    if isinstance(module, nn.Conv2d) and module.stride == module.kernel_size:
        if max(module.stride) > 1:
            return int(output.shape[2]), int(output.shape[3])
    return None


def _trace(
    model: nn.Module, inputs: torch.Tensor, modules: dict[str, nn.Module]
) -> tuple[list[LayerInfo], frozenset[str]]:
    """One forward of one image, noting each map or token output in the order it finishes.

    4-D outputs inside an attention layer (heads x tokens x head size) and
    any output inside a windowed layer (:func:`_is_windowed`) are not maps and
    are left out; a layer whose output is an attention layer's input is marked
    (``feeds_attention``: the transformer default). Also returned: the layers whose
    output is the model's own per-pixel logits (:func:`before_logits`).
    """
    seen: dict[str, tuple[tuple[int, ...], str, int, LayoutKind | None]] = {}
    order: list[str] = []
    grids: list[tuple[int, int]] = []
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> layer (tensor kept alive)
    feeding: set[str] = set()
    outputs: dict[str, torch.Tensor] = {}
    inside = _inside(modules, is_attention)  # 4-D there: heads x tokens x head size
    windowed = _inside(modules, _is_windowed)  # 3-D or 4-D there: windows, not one image

    def make_hook(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor) or output.ndim not in (3, 4):
                return
            if (output.ndim == 4 and name in inside) or name in windowed:
                return
            shape = tuple(output.shape[1:])
            grid = _patch_grid(module, output)
            if grid is not None and grid not in grids:
                grids.append(grid)
            calls = seen[name][2] + 1 if name in seen else 1
            hint = _hint(module, shape) if output.ndim == 4 else None
            seen[name] = (shape, type(module).__name__, calls, hint)
            produced[id(output)] = (name, output)
            outputs[name] = output
            if name in order:
                order.remove(name)
            order.append(name)

        return hook

    def attention_input(module: nn.Module, args: Any, kwargs: Any) -> None:
        first = args[0] if args else next(iter(kwargs.values()), None)
        entry = produced.get(id(first))
        if entry is not None and entry[1] is first:
            feeding.add(entry[0])

    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(this_thread_only(make_hook(name))))
            if is_attention(module):
                handles.append(
                    module.register_forward_pre_hook(
                        this_thread_only_any(attention_input), with_kwargs=True
                    )
                )
        with torch.no_grad():
            scored = _scored_maps(call_model(model, inputs))
    except RuntimeError as exc:
        if "not supported on ScriptModules" not in str(exc):
            raise
        return [], frozenset()
    finally:
        for h in handles:
            h.remove()
    size = (int(inputs.shape[2]), int(inputs.shape[3]))
    infos = []
    for name in order:
        shape, kind, calls, hint = seen[name]
        layout = guess_layout(shape, size, grids, hint=hint)
        if layout is None:
            continue
        plain = None if layout.kind == "nchw" else layout
        maps = map_shape(shape, layout)
        infos.append(LayerInfo(name, maps, kind, calls, plain, name in feeding))
    logits = frozenset(n for n, out in outputs.items() if any(out is m for m in scored))
    return infos, logits


def layer_layout(layer: str, infos: list[LayerInfo], choice: LayoutChoice) -> LayoutChoice:
    """The layout a pass reads ``layer`` with: the user's choice, else the traced guess."""
    if choice is not None:
        return choice
    return next((info.layout for info in infos if info.name == layer), None)


def call_of(layer: str, infos: list[LayerInfo]) -> int:
    """Which call of ``layer`` (0-based) a pass reads: the last one in a forward."""
    for info in infos:
        if info.name == layer:
            return info.calls - 1
    return 0


def is_scripted(model: nn.Module) -> bool:
    """A TorchScript module: it takes no Python hooks, and its code may do anything."""
    return isinstance(model, torch.jit.ScriptModule)


def opaque_error(model: nn.Module) -> UnsupportedModel | None:
    """Why layer methods cannot run on ``model``, when hooks never see its layers.

    TorchScript and torch.export modules run their layers outside Python.
    """
    if not (is_scripted(model) or isinstance(model, torch.fx.GraphModule)):
        return None
    return UnsupportedModel(
        f"layer: {type(model).__name__} (TorchScript / torch.export) cannot be "
        "hooked, so layer methods need the eager model; pixel and perturbation methods "
        "(saliency, occlusion, ...) work on it"
    )
