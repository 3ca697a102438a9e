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
* Hugging Face style: ``q_proj/k_proj/v_proj/o_proj``, ``scaling``; O is ``o_proj``'s input;
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
from ..base import AttentionCapture, Score
from ..layouts import Layout, token_grid
from ..model_lock import one_pass_at_a_time
from .structure import call_model, eval_mode, is_attention, named_layers, this_thread_only_any

__all__ = ["AttentionTap", "TorchAttention", "attention_layers", "tap_attention"]

_Handles = list[torch.utils.hooks.RemovableHandle]


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

    def attention(self) -> torch.Tensor:
        """A = softmax(q k^T * scale), (B, heads, T, T) float32, outside any graph."""
        q, k = self._need(self.q, "queries"), self._need(self.k, "keys")
        scale = self.scale or q.shape[-1] ** -0.5
        with torch.no_grad():
            scores = (q.float() * scale) @ k.float().transpose(-2, -1)
            return scores.softmax(dim=-1)

    def attention_gradient(self, grad_out: torch.Tensor) -> torch.Tensor:
        """dS/dA = dS/dO . V^T, (B, heads, T, T), from the gradient at ``out``."""
        v = self._need(self.v, "values")
        if self.to_heads is None:  # pragma: no cover - every tap sets it
            raise UnsupportedModel(f"attention: {self.name!r} gave no attention output")
        with torch.no_grad():
            return self.to_heads(grad_out).float() @ v.float().transpose(-2, -1)

    def _need(self, t: torch.Tensor | None, what: str) -> torch.Tensor:
        if self.refused:
            raise UnsupportedModel(self.refused)
        if t is None:
            raise UnsupportedModel(
                f"attention: {self.name!r} computed its {what} without a layer seewhy can "
                "hook, so its attention cannot be recovered; use gradcam on this model"
            )
        return t


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
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
    return ""


def attention_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's self-attention layers that hold their own q/k/v (outer wrappers left out)."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in named_layers(model).items():
        if isinstance(module, nn.MultiheadAttention):
            found.append((name, module))
        elif is_attention(module) and (_module(module, "qkv", "q_proj", "query") is not None):
            found.append((name, module))
    return found


def _tap_projections(name: str, module: nn.Module, handles: _Handles) -> AttentionTap:
    """Hooks on a timm- or Hugging-Face-style layer: q/k (after any norm), v, and O."""
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
            t = output
            if index is not None:  # a fused qkv projection: (B, T, 3 * heads * d)
                b, n, _ = t.shape
                t = t.reshape(b, n, 3, heads, -1)[:, :, index].transpose(1, 2)
            setattr(tap, slot, _heads(t, heads))

        return hook

    q_norm, k_norm = _module(module, "q_norm"), _module(module, "k_norm")
    qkv = _module(module, "qkv")
    q_proj, k_proj = _module(module, "q_proj", "query"), _module(module, "k_proj", "key")
    v_proj = _module(module, "v_proj", "value")
    sources: list[tuple[nn.Module | None, str, int | None]] = [
        (q_norm, "q", None) if q_norm else (q_proj or qkv, "q", None if q_proj else 0),
        (k_norm, "k", None) if k_norm else (k_proj or qkv, "k", None if k_proj else 1),
        (v_proj or qkv, "v", None if v_proj else 2),
    ]
    for source, slot, index in sources:
        if source is not None:
            handles.append(source.register_forward_hook(this_thread_only_any(setter(slot, index))))

    def take_out(mod: nn.Module, args: Any) -> None:
        tap.out = args[0]

    def extra_inputs(mod: nn.Module, args: Any, kwargs: Any) -> None:
        tap.q = tap.k = tap.v = tap.out = None  # a second call replaces the first
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

    sink = _module(module, "norm", "o_proj", "proj")
    if sink is not None:
        handles.append(sink.register_forward_pre_hook(this_thread_only_any(take_out)))
    handles.append(
        module.register_forward_pre_hook(this_thread_only_any(extra_inputs), with_kwargs=True)
    )
    tap.to_heads = lambda g: _heads(g, heads)
    return tap


def _tap_multihead(name: str, module: nn.MultiheadAttention, handles: _Handles) -> AttentionTap:
    """Hooks on ``nn.MultiheadAttention``: q, k, v recomputed from its input and weights."""
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
        q, k, v = F.linear(x, module.in_proj_weight, module.in_proj_bias).chunk(3, dim=-1)
        tap.q, tap.k, tap.v = _heads(q, heads), _heads(k, heads), _heads(v, heads)

    def take_output(mod: nn.Module, args: Any, output: Any) -> None:
        tap.out = output[0] if isinstance(output, tuple) else output

    weight = module.out_proj.weight

    def to_heads(grad: torch.Tensor) -> torch.Tensor:
        g = grad if module.batch_first else grad.transpose(0, 1)
        return _heads(g @ weight.detach(), heads)  # out = O W^T + b, so dS/dO = dS/dout W

    tap.to_heads = to_heads
    handles.append(
        module.register_forward_pre_hook(this_thread_only_any(take_input), with_kwargs=True)
    )
    handles.append(module.register_forward_hook(this_thread_only_any(take_output)))
    return tap


class _Taps:
    """The taps of every attention layer, hooks removed on exit."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.handles: _Handles = []
        self.taps: list[AttentionTap] = []

    def __enter__(self) -> list[AttentionTap]:
        try:
            for name, module in attention_layers(self.model):
                if isinstance(module, nn.MultiheadAttention):
                    self.taps.append(_tap_multihead(name, module, self.handles))
                else:
                    self.taps.append(_tap_projections(name, module, self.handles))
        except BaseException:
            self.__exit__()
            raise
        return self.taps

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def tap_attention(model: nn.Module) -> _Taps:
    """Context manager: hooks that fill one :class:`AttentionTap` per attention layer."""
    return _Taps(model)


class TorchAttention:
    """The attention pass of :class:`~seewhy.backends.torch.TorchBackend` (a mixin).

    One forward with the taps on; with ``gradients`` the forward keeps a
    graph and ``torch.autograd.grad`` goes to the attention outputs only (no
    parameter's ``.grad`` is touched).
    """

    model: nn.Module

    @one_pass_at_a_time
    def attention(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        gradients: bool,
        score: Score = "logit",
    ) -> AttentionCapture:
        passes: Any = self
        infos = passes.layers(x[:1])
        inputs = passes._to_tensor(x)
        with tap_attention(self.model) as taps, eval_mode(self.model):
            if not taps:
                raise UnsupportedModel(
                    "attention: the model has no self-attention layer seewhy can read "
                    "(timm, torchvision, Hugging Face ViTs); use gradcam"
                )
            with torch.set_grad_enabled(gradients):
                if gradients:
                    inputs.requires_grad_(True)  # a graph even when every weight is frozen
                logits = passes._scores(call_model(self.model, inputs))
                t = passes._targets(targets, logits)
                attentions = [tap.attention() for tap in taps]
                grads = None
                if gradients:
                    grads = _attention_gradients(passes._target_scores(logits, t, score), taps)
        layout = _token_layout(
            infos, attentions[0].shape[-1], taps[0].name, (x.shape[1], x.shape[2])
        )
        return AttentionCapture(
            logits=logits.detach().float().cpu().numpy(),
            targets=t.cpu().numpy(),
            layers=tuple(tap.name for tap in taps),
            attentions=tuple(a.cpu().numpy() for a in attentions),
            gradients=None if grads is None else tuple(g.cpu().numpy() for g in grads),
            layout=layout,
        )


def _attention_gradients(score: torch.Tensor, taps: list[AttentionTap]) -> list[torch.Tensor]:
    """dS/dA of every block, from one ``autograd.grad`` to the attention outputs."""
    outs: list[torch.Tensor] = []
    for tap in taps:
        if tap.out is None:
            raise UnsupportedModel(
                f"attention: cannot see the output of {tap.name!r} before its projection; "
                "use gradcam on this model"
            )
        outs.append(tap.out)
    grads = torch.autograd.grad(score.sum(), outs, allow_unused=True)
    return [
        tap.attention_gradient(torch.zeros_like(out) if g is None else g)
        for tap, out, g in zip(taps, outs, grads, strict=True)
    ]


def _token_layout(infos: list[Any], tokens: int, layer: str, size: tuple[int, int]) -> Layout:
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
