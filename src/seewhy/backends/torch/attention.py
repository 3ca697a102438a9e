"""Attention matrices and their gradients, recovered without touching the model.

Transformers today compute attention with a fused kernel (timm's
``fused_attn``, PyTorch's SDPA, Hugging Face's ``sdpa``), so the matrix
A = softmax(q k^T * scale) never exists as a tensor to hook. It is recomputed
here from what the attention layer does hand out: its queries and keys (after
any q/k norm) and values, read by forward hooks on the projections; and the
gradient of the score with respect to A follows from the gradient at the
attention output O = A V (before the output projection): dS/dA = dS/dO . V^T.
No flag of the model (``fused_attn``, ``attn_implementation``) is changed.

Supported layers (found by what they hold, not by class):

* timm ``Attention``/``EvaAttention`` style: ``qkv`` or ``q_proj/k_proj/v_proj``,
  ``q_norm``/``k_norm``, ``num_heads``, ``scale``; O is the input of ``norm``/``proj``;
* Hugging Face style: ``q_proj/k_proj/v_proj`` and ``o_proj`` (CLIP, SigLIP: ``out_proj``),
  ``scale`` or ``scaling``; O is the output projection's input;
* ``nn.MultiheadAttention`` (torchvision's ViT): q, k, v from its input and
  ``in_proj_weight``; dS/dO from the gradient at its output times ``out_proj``.

Rotary embeddings and relative position biases (EVA-02, Swin) change the
scores in ways these taps cannot see; such layers are refused with a one-line
error rather than given a wrong matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import UnsupportedModel
from ..base import AttentionCapture, BlockFusion, Score
from ..layouts import Layout, token_grid
from .structure import (
    ATTENTION_PROJECTIONS,
    is_attention,
    named_layers,
    scored_call,
    this_thread_only_any,
)
from .twin import current_model, on_twin

__all__ = [
    "AttentionTap",
    "TorchAttention",
    "attention_layers",
    "head_readout",
    "output_sink",
    "qkv_sources",
    "split_heads",
    "tap_attention",
    "tap_multihead",
    "tap_projections",
    "token_layout",
]

_Handles = list[torch.utils.hooks.RemovableHandle]

_CHUNK_FLOATS = 1 << 19  # 2 MB of float32 (images, heads, T, T) per chunk: stays in cache


@dataclass
class AttentionTap:
    """What one attention layer showed in one forward pass."""

    name: str
    heads: int
    scale: float
    q: torch.Tensor | None = None  # (B, heads, T, d)
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    out: torch.Tensor | None = None  # the tensor whose gradient gives dS/dO
    to_heads: Callable[[torch.Tensor], torch.Tensor] | None = None  # grad of ``out`` -> dO
    refused: str = ""
    fuse: BlockFusion | None = None  # without gradients: fuse as soon as q and k are seen
    fused: torch.Tensor | None = None  # (B, T, T), what ``fuse`` made of this block

    def took(self) -> None:
        """Called after each q/k/v is seen: without gradients, the block is fused at once.

        Fusing inside the forward, while q and k are still in cache, and letting them
        go keeps the forward's own buffers reused; holding every block's q and k to
        the end made a ViT-S forward about 7% slower (CPU, batch 8).
        """
        if self.fuse is not None and not self.refused and self.q is not None and self.k is not None:
            self.fused = self.fused_blocks(self.fuse, None)

    def fused_blocks(self, fuse: BlockFusion, d_o: torch.Tensor | None) -> torch.Tensor:
        """``fuse`` of this block's A (and dS/dA from ``d_o``), float32; q, k, v let go.

        On the CPU a few images at a time, so each chunk's (heads, T, T) matrices
        stay in cache (ViT-S, batch 8: 1.5x to 2x faster than the whole batch at
        once); on an accelerator the whole batch in one go.
        """
        q = self._need(self.q, "queries")
        n, heads, t, _ = q.shape
        step = n if q.device.type != "cpu" else max(1, _CHUNK_FLOATS // (heads * t * t))
        parts = []
        with torch.no_grad():
            for start in range(0, n, step):
                rows = slice(start, start + step)
                d_a = None if d_o is None else self.attention_gradient(d_o, rows)
                parts.append(fuse(self.attention(rows), d_a).float())
        self.q = self.k = self.v = self.out = None
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def attention(self, rows: slice = slice(None)) -> torch.Tensor:
        """A = softmax(q k^T * scale) of the images ``rows``, (B, heads, T, T) float32,
        outside any graph."""
        q, k = self._need(self.q, "queries")[rows], self._need(self.k, "keys")[rows]
        scale = self.scale or q.shape[-1] ** -0.5
        with torch.no_grad():  # contiguous: a batched matmul on the strided head views of a
            # fused projection takes a slow path (1.4x to 3x on ViT-S, CPU)
            scores = (q.float() * scale).contiguous() @ k.float().contiguous().transpose(-2, -1)
            return scores.softmax(dim=-1)

    def output_gradient(self, grad_out: torch.Tensor) -> torch.Tensor:
        """dS/dO per head, (B, heads, T, d), from the gradient at ``out``."""
        if self.to_heads is None:  # pragma: no cover - every tap sets it
            raise UnsupportedModel(f"attention: {self.name!r} gave no attention output")
        with torch.no_grad():
            return self.to_heads(grad_out)

    def attention_gradient(self, d_o: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """dS/dA = dS/dO . V^T of the images ``rows``, (B, heads, T, T), from
        :meth:`output_gradient`."""
        v = self._need(self.v, "values")[rows]
        with torch.no_grad():
            return d_o[rows].float().contiguous() @ v.float().contiguous().transpose(-2, -1)

    def _need(self, t: torch.Tensor | None, what: str) -> torch.Tensor:
        if self.refused:
            raise UnsupportedModel(self.refused)
        if t is None:
            raise UnsupportedModel(
                f"attention: {self.name!r} computed its {what} without a layer seewhy can "
                "hook, so its attention cannot be recovered; use gradcam on this model"
            )
        return t


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, heads * d) -> (B, heads, T, d); a (B, heads, T, d) tensor is left as it is."""
    if t.ndim == 4:
        return t
    b, n, _ = t.shape
    return t.reshape(b, n, heads, -1).transpose(1, 2)


def _module(parent: nn.Module, *names: str) -> nn.Module | None:
    for name in names:
        m = getattr(parent, name, None)
        if isinstance(m, nn.Module):
            return m
    return None


def _refusal(name: str, module: nn.Module) -> str:
    if hasattr(module, "relative_position_bias_table") or hasattr(module, "rel_pos"):
        return (
            f"attention: {name!r} adds a relative position bias to its scores (Swin-style "
            "window attention), which attention methods do not model; use gradcam"
        )
    if getattr(module, "use_rel_pos", False):  # SAM's encoder: rel_pos_h, rel_pos_w
        return (
            f"attention: {name!r} adds a decomposed relative position bias to its scores "
            "(SAM-style), which attention methods do not model; use gradcam"
        )
    return ""


def _grid_refusal(name: str) -> str:
    """A fused qkv fed an (N, H, W, C) grid (SAM's windows), not (N, T, C) tokens."""
    return (
        f"attention: {name!r} attends over an (N, H, W, C) grid of windows, not a sequence of "
        "tokens, which attention methods do not model; use gradcam"
    )


def attention_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's self-attention layers that hold their own q/k/v (outer wrappers left out)."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in named_layers(model).items():
        if isinstance(module, nn.MultiheadAttention):
            found.append((name, module))
        elif is_attention(module) and _module(module, *ATTENTION_PROJECTIONS) is not None:
            found.append((name, module))
    return found


def qkv_sources(
    module: nn.Module, values: bool = True
) -> list[tuple[nn.Module | None, str, int | None]]:
    """Where a timm- or Hugging-Face-style layer hands out q and k (after any q/k norm)
    and, with ``values``, v: (module, "q"/"k"/"v", its third of a fused qkv or None).

    The attention taps read them here, and AttnLRP rescales their gradients here.
    """
    q_norm, k_norm = _module(module, "q_norm"), _module(module, "k_norm")
    qkv = _module(module, "qkv")
    q_proj, k_proj = _module(module, "q_proj", "query"), _module(module, "k_proj", "key")
    v_proj = _module(module, "v_proj", "value")
    sources: list[tuple[nn.Module | None, str, int | None]] = [
        (q_norm, "q", None) if q_norm else (q_proj or qkv, "q", None if q_proj else 0),
        (k_norm, "k", None) if k_norm else (k_proj or qkv, "k", None if k_proj else 1),
    ]
    if values:
        sources.append((v_proj or qkv, "v", None if v_proj else 2))
    return sources


def output_sink(module: nn.Module) -> nn.Module | None:
    """The layer whose input is the attention output O = A V, before the output projection
    (timm's ``norm``, else the projection: ``o_proj``, ``proj``, HF CLIP/SigLIP ``out_proj``)."""
    return _module(module, "norm", "o_proj", "proj", "out_proj")


def tap_projections(name: str, module: nn.Module, handles: _Handles, values: bool) -> AttentionTap:
    """Hooks on a timm- or Hugging-Face-style layer: q/k (after any norm), and with
    ``values`` v and O (what the gradient needs)."""
    heads = int(getattr(module, "num_heads", 0) or getattr(module, "num_attention_heads", 0))
    if not heads and hasattr(module, "head_dim"):
        q_proj = _module(module, "q_proj", "query")
        if isinstance(q_proj, nn.Linear):
            heads = q_proj.out_features // int(getattr(module, "head_dim"))  # noqa: B009
    scale = float(getattr(module, "scale", 0) or getattr(module, "scaling", 0) or 0)
    tap = AttentionTap(name, heads, scale, refused=_refusal(name, module))
    if not heads:
        tap.refused = f"attention: cannot tell how many heads {name!r} has"

    def setter(slot: str, index: int | None = None) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            if tap.refused:  # its reason is raised after the pass; its tensors may not fit
                return
            t = output
            if index is not None:  # a fused qkv projection: (B, T, 3 * heads * d)
                if t.ndim != 3:
                    tap.refused = _grid_refusal(name)
                    return
                b, n, _ = t.shape
                t = t.reshape(b, n, 3, heads, -1)[:, :, index].transpose(1, 2)
            setattr(tap, slot, split_heads(t, heads))
            tap.took()

        return hook

    for source, slot, index in qkv_sources(module, values):
        if source is not None:
            handles.append(source.register_forward_hook(this_thread_only_any(setter(slot, index))))

    def take_out(mod: nn.Module, args: Any) -> None:
        tap.out = args[0]

    def extra_inputs(mod: nn.Module, args: Any, kwargs: Any) -> None:
        tap.q = tap.k = tap.v = tap.out = tap.fused = None  # a second call replaces the first
        tap.refused = _refusal(name, module)
        if kwargs.get("rope") is not None:
            tap.refused = (
                f"attention: {name!r} applies rotary position embeddings inside its forward, "
                "which attention methods cannot recover; use gradcam on this model"
            )
        masks = [kwargs.get("attn_mask"), kwargs.get("attention_mask"), *args[1:2]]
        if not tap.refused and any(torch.is_tensor(m) for m in masks):
            tap.refused = (
                f"attention: {name!r} is called with a mask or position input that changes its "
                "scores, which attention methods cannot recover; use gradcam on this model"
            )

    sink = output_sink(module)
    if sink is not None and values:
        handles.append(sink.register_forward_pre_hook(this_thread_only_any(take_out)))
    handles.append(
        module.register_forward_pre_hook(this_thread_only_any(extra_inputs), with_kwargs=True)
    )
    tap.to_heads = lambda g: split_heads(g, heads)
    return tap


def tap_multihead(
    name: str, module: nn.MultiheadAttention, handles: _Handles, values: bool
) -> AttentionTap:
    """Hooks on ``nn.MultiheadAttention``: q, k (and with ``values`` v and the output)
    recomputed from its input and weights."""
    heads = module.num_heads
    tap = AttentionTap(name, heads, float(module.head_dim) ** -0.5)
    if not module._qkv_same_embed_dim or module.in_proj_weight is None:
        tap.refused = f"attention: {name!r} has separate q/k/v sizes; use gradcam"
        return tap

    def take_input(mod: nn.Module, args: Any, kwargs: Any) -> None:
        query = args[0] if args else kwargs.get("query")
        key = args[1] if len(args) > 1 else kwargs.get("key")
        if key is not None and key is not query:
            tap.refused = f"attention: {name!r} is cross-attention; use gradcam"
            return
        x = query if module.batch_first else query.transpose(0, 1)
        parts = 3 if values else 2  # q, k (, v): the rows of in_proj_weight, in that order
        rows = module.embed_dim * parts
        bias = None if module.in_proj_bias is None else module.in_proj_bias[:rows]
        q, k, *v = F.linear(x, module.in_proj_weight[:rows], bias).chunk(parts, dim=-1)
        tap.q, tap.k = split_heads(q, heads), split_heads(k, heads)
        tap.v = split_heads(v[0], heads) if v else None
        tap.fused = None  # a second call replaces the first
        tap.took()

    def take_output(mod: nn.Module, args: Any, output: Any) -> None:
        tap.out = output[0] if isinstance(output, tuple) else output

    weight = module.out_proj.weight

    def to_heads(grad: torch.Tensor) -> torch.Tensor:
        g = grad if module.batch_first else grad.transpose(0, 1)
        return split_heads(g @ weight.detach(), heads)  # out = O W^T + b, so dS/dO = dS/dout W

    tap.to_heads = to_heads
    handles.append(
        module.register_forward_pre_hook(this_thread_only_any(take_input), with_kwargs=True)
    )
    if values:
        handles.append(module.register_forward_hook(this_thread_only_any(take_output)))
    return tap


class _Taps:
    """The taps of every attention layer, hooks removed on exit."""

    def __init__(self, model: nn.Module, values: bool, fuse: BlockFusion | None) -> None:
        self.model, self.values, self.fuse = model, values, fuse
        self.handles: _Handles = []
        self.taps: list[AttentionTap] = []

    def __enter__(self) -> list[AttentionTap]:
        try:
            for name, module in attention_layers(self.model):
                if isinstance(module, nn.MultiheadAttention):
                    self.taps.append(tap_multihead(name, module, self.handles, self.values))
                else:
                    self.taps.append(tap_projections(name, module, self.handles, self.values))
            if not self.values:
                for tap in self.taps:
                    tap.fuse = self.fuse
        except BaseException:
            self.__exit__()
            raise
        return self.taps

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def tap_attention(model: nn.Module, values: bool = True, fuse: BlockFusion | None = None) -> _Taps:
    """Context manager: hooks that fill one :class:`AttentionTap` per attention layer
    (q and k; with ``values`` also v and the attention output, for the gradient).
    Without ``values``, ``fuse`` (if given) fuses each block inside the forward."""
    return _Taps(model, values, fuse)


class TorchAttention:
    """The attention pass of :class:`~seewhy.backends.torch.TorchBackend` (a mixin).

    One forward with the taps on; with ``gradients`` the forward keeps a
    graph and ``torch.autograd.grad`` goes to the attention outputs only (no
    parameter's ``.grad`` is touched). Each block's matrices are recomputed,
    fused by the method's ``fuse`` in torch on the model's device and dropped
    at once, so only (N, T, T) per block reaches numpy; without gradients
    that happens inside the forward, as each block's keys are seen.
    """

    model: nn.Module

    @on_twin
    def attention(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        gradients: bool,
        fuse: BlockFusion,
        score: Score = "logit",
    ) -> AttentionCapture:
        passes: Any = self
        infos = passes.layers(x[:1])
        inputs = passes._to_tensor(x)
        net = current_model(self.model)  # the twin: the taps' hooks go there
        with tap_attention(net, values=gradients, fuse=fuse) as taps:
            if not taps:
                raise UnsupportedModel(
                    "attention: the model has no self-attention layer seewhy can read "
                    "(timm, torchvision, Hugging Face ViTs); use gradcam"
                )
            with torch.set_grad_enabled(gradients):
                if gradients:
                    inputs.requires_grad_(True)  # a graph even when every weight is frozen
                logits = passes._scores(scored_call(net, inputs))
                t = passes._targets(targets, logits)
                grads: list[torch.Tensor | None] = [None] * len(taps)
                if gradients:
                    grads = _output_gradients(passes._target_scores(logits, t, score), taps)
            fused = [_fused(tap, fuse, g) for tap, g in zip(taps, grads, strict=True)]
        layout = token_layout(infos, fused[0].shape[-1], taps[0].name, (x.shape[1], x.shape[2]))
        tokens, patches = head_readout(self.model)
        return AttentionCapture(
            logits=logits.detach().float().cpu().numpy(),
            targets=t.cpu().numpy(),
            layers=tuple(tap.name for tap in taps),
            fused=tuple(f.cpu().numpy() for f in fused),
            layout=layout,
            readout=tokens,
            patches=patches,
        )


def head_readout(model: nn.Module) -> tuple[tuple[tuple[int, float], ...], float]:
    """Which tokens the classification head reads, weighted, and the weight of the patch mean.

    timm says it in ``global_pool`` (``"token"``, ``"avg"``; its distilled DeiT
    averages the heads of tokens 0 and 1 at inference, as Hugging Face's DeiT
    with teacher does); Hugging Face's DINOv2 classifier concatenates the class
    token and the patch mean (half each, as their features are the same size);
    every other model reads the class token.
    """
    pool = getattr(model, "global_pool", None)
    if isinstance(pool, str) and hasattr(model, "num_prefix_tokens"):  # a timm ViT
        if pool == "avg":
            return (), 1.0
        if pool not in ("token", ""):
            raise UnsupportedModel(
                f"attention: the head pools the tokens with global_pool={pool!r}, which "
                "attention methods do not follow; use gradcam"
            )
        if getattr(model, "head_dist", None) is not None:
            return ((0, 0.5), (1, 0.5)), 0.0
    name = type(model).__name__
    if name in ("Dinov2ForImageClassification", "Dinov2WithRegistersForImageClassification"):
        return ((0, 0.5),), 0.5
    if name == "DeiTForImageClassificationWithTeacher":
        return ((0, 0.5), (1, 0.5)), 0.0
    return ((0, 1.0),), 0.0


def _fused(tap: AttentionTap, fuse: BlockFusion, grad_out: torch.Tensor | None) -> torch.Tensor:
    """The method's fusion of one block, float32: made in the forward already (no
    gradients), or now from the gradient at the block's attention output."""
    if tap.fused is not None:
        fused, tap.fused = tap.fused, None
        return fused
    with torch.no_grad():
        d_o = None if grad_out is None else tap.output_gradient(grad_out)
    return tap.fused_blocks(fuse, d_o)


def _output_gradients(score: torch.Tensor, taps: list[AttentionTap]) -> list[torch.Tensor | None]:
    """dS/dO at every block's attention output, from one ``autograd.grad``."""
    outs: list[torch.Tensor] = []
    for tap in taps:
        if tap.refused:  # the reason, before what it caused
            raise UnsupportedModel(tap.refused)
        if tap.out is None:
            raise UnsupportedModel(
                f"attention: cannot see the output of {tap.name!r} before its projection; "
                "use gradcam on this model"
            )
        outs.append(tap.out)
    grads = torch.autograd.grad(score.sum(), outs, allow_unused=True)
    return [torch.zeros_like(out) if g is None else g for out, g in zip(outs, grads, strict=True)]


def token_layout(infos: list[Any], tokens: int, layer: str, size: tuple[int, int]) -> Layout:
    """Which tokens are the class token and the patch grid, from the traced token layers."""
    for info in infos:
        lay = info.layout
        if lay is not None and lay.kind == "tokens" and lay.grid is not None:
            if lay.prefix + lay.grid[0] * lay.grid[1] == tokens:
                return lay
    found = token_grid(tokens, size)
    if found is None:
        raise UnsupportedModel(f"attention: {tokens} tokens of {layer!r} make no patch grid")
    return Layout("tokens", found[0], found[1])
