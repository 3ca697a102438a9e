"""LeGrad's pass: every chosen block's output read through the model's own head, at once.

LeGrad needs, per block l, the gradient of ``score(head(z_l))`` with respect to
block l's attention (or, for an attention-pooling head, the pooler's attention
when it reads z_l). Running the model once per block would cost L forwards and
L backwards. Instead, one forward on the model's twin:

* a forward hook on each chosen block keeps its output z_l (with its graph) and
  hands the next block ``z_l`` *detached*: the values the model computes are
  unchanged, but no gradient crosses from one block into the one before;
* the last chosen block's hook returns ``[z_s, ..., z_L, live]`` stacked along the
  batch, so the model's own head (final norm, class token or pooler, projection,
  classifier, and whatever a wrapper does after it) scores every block's output
  in one call, and the ``live`` copy gives the model's logits;
* one ``torch.autograd.grad`` of the sum of the per-block scores: as each block
  only reaches the head through its own copy, block l's attention receives
  exactly d score(head(z_l)) / d A_l.

The signal needs no attention matrix: dS/dA = dS/dO . V^T, from the values and
the gradient at the attention output, which the taps read (fused kernels
included): those of :mod:`.attention` on timm and Hugging Face layers, a
values-only tap here on ``nn.MultiheadAttention`` (open_clip, torchvision) and on
an attention-pooling head (timm's ``AttentionPoolLatent``; a learned query over an
``nn.MultiheadAttention``: Hugging Face SigLIP's head, open_clip CoCa's). A second
contrast target (LeGrad's SigLIP correction) reuses the forward: one more
``autograd.grad`` back to the taps. The user's model is never touched: hooks live
on the twin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InvalidInput, UnsupportedModel
from ...targets import Target
from ..base import Score
from ..heads import Head
from ..readout import READOUTS, ReadoutCapture
from .attention import (
    AttentionTap,
    attention_layers,
    split_heads,
    tap_projections,
    token_layout,
)
from .structure import named_layers, scored_call, this_thread_only_any
from .targets import head_scores
from .twin import current_model, on_twin

__all__ = ["TorchLayerReadout", "readout_blocks"]

_Handles = list[torch.utils.hooks.RemovableHandle]
_QUERY_PARAMETERS = ("probe", "query", "latent")  # an attention pooler's learned queries


def readout_blocks(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(block name, block, its attention's name) for each transformer block, in order.

    A block is the element of a ``ModuleList``/``Sequential`` that holds a
    self-attention layer: timm's ``blocks.3``, Hugging Face's
    ``encoder.layer.3``, open_clip's ``transformer.resblocks.3``, torchvision's
    ``encoder.layers.encoder_layer_3``. Attention outside such a list (a
    pooling head's) is not a block, and only the first list counts: the blocks
    after it belong to a decoder (SAM's mask decoder, a DETR's), whose tokens
    are prompts or queries, not the picture's patches.
    """
    modules = named_layers(model)
    found: list[tuple[str, nn.Module, str]] = []
    for name, _ in attention_layers(model):
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            parent = modules.get(".".join(parts[: cut - 1])) if cut > 1 else model
            if isinstance(parent, (nn.ModuleList, nn.Sequential)):
                block = ".".join(parts[:cut])
                if not found or found[-1][0] != block:
                    found.append((block, modules[block], name))
                break
    stack = found[0][0].rsplit(".", 1)[0] if found else ""
    later = [block for block, _, _ in found if block.rsplit(".", 1)[0] != stack]
    if later:
        raise UnsupportedModel(
            f"legrad: the model has more transformer blocks after {stack!r} ({later[0]!r}: "
            "a decoder, as SAM's or a DETR's), so no one head reads the picture's tokens at "
            "every block; use gradcam"
        )
    return found


def _pooler(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The attention-pooling head: learned queries attending over the tokens, if any."""
    found = []
    for name, module in named_layers(model).items():
        # its own parameters read directly: getattr on every module of a ViT-B cost 7 ms
        holds_query = any(module._parameters.get(p) is not None for p in _QUERY_PARAMETERS)
        if not holds_query:
            continue
        timm_style = hasattr(module, "kv") and hasattr(module, "q") and hasattr(module, "latent")
        mha = any(isinstance(c, nn.MultiheadAttention) for c in module.children())
        if timm_style or mha:
            found.append((name, module))
    if len(found) > 1:
        raise UnsupportedModel(
            f"legrad: the model has {len(found)} attention-pooling heads "
            f"({', '.join(n for n, _ in found)}), so which one reads the tokens is unclear; "
            "use gradcam"
        )
    return found[0] if found else None


def _tap_pooler(name: str, module: nn.Module, handles: _Handles) -> AttentionTap:
    """The values and attention output of a pooling head, for dS/dP = dS/dO . V^T."""
    if not hasattr(module, "kv"):  # Hugging Face SigLIP's, open_clip CoCa's: an MHA inside
        mha = next(c for c in module.children() if isinstance(c, nn.MultiheadAttention))
        return _tap_values(name, mha, handles)
    held: Any = module  # timm AttentionPoolLatent: q, kv, q_norm, k_norm, proj, by name
    heads = int(held.num_heads)
    tap = AttentionTap(name, heads, float(held.scale))

    def take_values(mod: nn.Module, args: Any, output: Any) -> None:
        b, n, _ = output.shape  # the fused kv projection: (B, N, 2 * D), v second
        tap.v = output.detach().reshape(b, n, 2, heads, -1)[:, :, 1].transpose(1, 2)

    def take_out(mod: nn.Module, args: Any) -> None:
        tap.out = args[0]

    handles.append(held.kv.register_forward_hook(this_thread_only_any(take_values)))
    handles.append(held.proj.register_forward_pre_hook(this_thread_only_any(take_out)))
    tap.to_heads = lambda g: split_heads(g, heads)
    return tap


def _tap_values(name: str, mha: nn.MultiheadAttention, handles: _Handles) -> AttentionTap:
    """An ``nn.MultiheadAttention``'s values and output: all LeGrad's signal needs
    (dS/dA = dS/dO . V^T), so its queries and keys are not computed a second time (on
    a ViT-B's last two blocks that alone was 4% of a forward)."""
    heads, e = mha.num_heads, mha.embed_dim
    tap = AttentionTap(name, heads, float(mha.head_dim) ** -0.5)
    if not mha._qkv_same_embed_dim or mha.in_proj_weight is None:
        tap.refused = f"legrad: {name!r} has separate q/k/v sizes; use gradcam"
        return tap

    def take_input(mod: nn.Module, args: Any, kwargs: Any) -> None:
        named = ("query", "key", "value")
        given = {**dict(zip(named, args, strict=False)), **kwargs}
        x = given["value"] if mha.batch_first else given["value"].transpose(0, 1)
        w, b = mha.in_proj_weight[2 * e :], mha.in_proj_bias
        with torch.no_grad():
            tap.v = split_heads(F.linear(x, w, None if b is None else b[2 * e :]), heads)

    def take_output(mod: nn.Module, args: Any, output: Any) -> None:
        tap.out = output[0] if isinstance(output, tuple) else output

    weight = mha.out_proj.weight

    def to_heads(grad: torch.Tensor) -> torch.Tensor:
        g = grad if mha.batch_first else grad.transpose(0, 1)
        return split_heads(g @ weight.detach(), heads)  # out = O W^T + b: dS/dO = dS/dout W

    tap.to_heads = to_heads
    handles.append(
        mha.register_forward_pre_hook(this_thread_only_any(take_input), with_kwargs=True)
    )
    handles.append(mha.register_forward_hook(this_thread_only_any(take_output)))
    return tap


def _tap_blocks(
    net: nn.Module, chosen: list[tuple[str, nn.Module, str]], handles: _Handles
) -> list[AttentionTap]:
    """Taps on the chosen blocks only: an ``nn.MultiheadAttention``'s values recomputed
    (:func:`_tap_values`), other layers' q/k/v read from their projections (:mod:`.attention`)."""
    modules = named_layers(net)
    taps = []
    for _, _, name in chosen:
        module = modules[name]
        if isinstance(module, nn.MultiheadAttention):
            taps.append(_tap_values(name, module, handles))
        else:
            taps.append(tap_projections(name, module, handles, True))
    return taps


def _axis_of(z: torch.Tensor, n: int, hint: int) -> int:
    """The batch axis of a block's (N, T, C) or (T, N, C) output: the one of size ``n``;
    ``hint`` (from the block's attention) when both are."""
    first, second = z.shape[0] == n, z.ndim > 1 and z.shape[1] == n
    if first != second:
        return 0 if first else 1
    return hint


def _batch_axis(block: nn.Module) -> int:
    """1 for blocks whose ``nn.MultiheadAttention`` is not ``batch_first`` (open_clip's,
    fed (tokens, batch, width)); 0 otherwise. Only a hint: see :func:`_axis_of`."""
    for child in block.modules():
        if isinstance(child, nn.MultiheadAttention):
            return 0 if child.batch_first else 1
    return 0


class _Rerouted:
    """The block hooks: each chosen block's output kept, the next block fed it detached,
    and every kept output stacked before the head after the last block."""

    def __init__(
        self,
        net: nn.Module,
        blocks: list[tuple[str, nn.Module, str]],
        readout: str,
        pooler: nn.Module | None,
        n: int,
    ) -> None:
        self.n = n  # images in the batch: which axis of a block's output is the batch
        self.net, self.blocks, self.mean = net, blocks, readout == "mean"
        self.pooler = pooler if readout == "pooler" else None
        self.kept: list[torch.Tensor] = []
        self.handles: _Handles = []
        self.axis = 0
        self.stacked = self.pooling = False  # past the last block; inside the pooler

    def __enter__(self) -> _Rerouted:
        last = len(self.blocks) - 1
        first = self.blocks[0][1].register_forward_pre_hook(
            this_thread_only_any(_cut_graph), with_kwargs=True
        )
        self.handles.append(first)
        if self.pooler is not None:
            for norm in _norms_outside(self.net, self.blocks, self.pooler):
                self.handles.append(norm.register_forward_hook(this_thread_only_any(self._skip)))
            self.handles.append(
                self.pooler.register_forward_pre_hook(this_thread_only_any(self._entered_pool))
            )
        for i, (_, block, _) in enumerate(self.blocks):
            hook = self._hook(_batch_axis(block), i == last)
            self.handles.append(block.register_forward_hook(this_thread_only_any(hook)))
        return self

    def _hook(self, hint: int, last: bool) -> Callable[..., Any]:
        def hook(mod: nn.Module, args: Any, output: Any) -> Any:
            z = output[0] if isinstance(output, tuple) else output
            if self.kept and z.shape != self.kept[0].shape:  # stages of a hierarchy, a decoder
                raise UnsupportedModel(
                    f"legrad: the model's transformer blocks output {tuple(self.kept[0].shape)} "
                    f"and then {tuple(z.shape)}, so one head cannot read them all (a "
                    "hierarchical encoder or a decoder: SegFormer, Swin, Mask2Former); use gradcam"
                )
            axis = _axis_of(z, self.n, hint)
            kept = z.mean(dim=1 - axis, keepdim=True).expand_as(z) if self.mean else z
            self.kept.append(kept)
            if last:
                passed = torch.cat([*self.kept, z.detach()], dim=axis)
                self.axis, self.stacked = axis, True
            else:
                passed = _fresh(z)
            return (passed, *output[1:]) if isinstance(output, tuple) else passed

        return hook

    def _entered_pool(self, mod: nn.Module, args: Any) -> None:
        self.pooling = True

    def _skip(self, mod: nn.Module, args: Any, output: Any) -> Any:
        """A norm between the last block and the pooler passes the blocks' copies through
        unchanged, as the authors' code feeds the pooler the blocks' raw tokens."""
        if not self.stacked or self.pooling or not torch.is_tensor(output) or not args:
            return None
        rows = sum(k.shape[self.axis] for k in self.kept)
        if args[0].shape != output.shape:
            return None
        raw = args[0].narrow(self.axis, 0, rows)
        normed = output.narrow(self.axis, rows, output.shape[self.axis] - rows)
        return torch.cat([raw, normed], dim=self.axis)

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def _norms_outside(
    net: nn.Module, blocks: list[tuple[str, nn.Module, str]], pooler: nn.Module
) -> list[nn.Module]:
    """Normalisation layers outside the blocks and the pooler: the final norm among them
    (which of them runs between the last block and the pooler, the hooks tell)."""
    inside = {id(m) for _, b, _ in blocks for m in b.modules()}
    inside |= {id(m) for m in pooler.modules()}
    return [m for m in net.modules() if "Norm" in type(m).__name__ and id(m) not in inside]


def _cut_graph(module: nn.Module, args: Any, kwargs: Any) -> tuple[Any, Any]:
    """The first block read starts the graph: its input detached, asking for gradients
    (the blocks before it keep none, also when every weight is frozen)."""
    torch.set_grad_enabled(True)  # the blocks before ran without a graph
    if args and torch.is_tensor(args[0]):
        return (_fresh(args[0]), *args[1:]), kwargs
    for key, value in kwargs.items():
        if torch.is_tensor(value) and value.is_floating_point():
            return args, {**kwargs, key: _fresh(value)}
    return args, kwargs


def _fresh(t: torch.Tensor) -> torch.Tensor:
    """``t``'s values starting a graph of their own; a copy, so that a block's in-place
    ops never touch the leaf."""
    return t.detach().requires_grad_(True).clone()


def _resolve(readout: str | None, blocks: list[tuple[str, nn.Module, str]], pooled: bool) -> str:
    """The readout asked for, or the LeGrad authors' for this model (see the method's doc)."""
    if readout is None:
        if pooled:
            return "pooler"
        kinds = type(blocks[-1][1]).__mro__  # a wrapper's subclass of open_clip's block counts
        from_open_clip = any(k.__module__.startswith("open_clip.") for k in kinds)
        return "mean" if from_open_clip else "head"
    if readout not in READOUTS:
        raise InvalidInput(f"legrad: readout must be one of {', '.join(READOUTS)}, got {readout!r}")
    if readout == "pooler" and not pooled:
        raise InvalidInput(
            "legrad: readout='pooler' but the model has no attention-pooling head; "
            "use readout='head' or 'mean'"
        )
    if readout == "mean" and pooled:
        raise InvalidInput(
            "legrad: readout='mean' makes every token alike, so the model's attention-pooling "
            "head would attend evenly; use readout='pooler' or 'head'"
        )
    return readout


def _start(start_block: int, count: int) -> int:
    """The first block read: a negative ``start_block`` counts from the last, and asking for
    more blocks than the model has reads them all (the default -2 on a one-block model, as
    legrad-torch does)."""
    start = max(0, start_block + count) if start_block < 0 else start_block
    if start >= count:
        raise InvalidInput(
            f"legrad: start_block {start_block} is past this model's {count} blocks; use a "
            f"block from 0 to {count - 1}, or a negative one to count from the last"
        )
    return start


def _signal(tap: AttentionTap, d_o: torch.Tensor, rows: slice, pooled: bool) -> torch.Tensor:
    """(B, keys): ReLU(dS/dA) averaged over heads and queries (the pooler: its first query)."""
    with torch.no_grad():
        d_a = tap.attention_gradient(d_o, rows).clamp(min=0).mean(1)  # (B, queries, keys)
        return d_a[:, 0] if pooled else d_a.mean(1)


class TorchLayerReadout:
    """The LeGrad pass of :class:`~seewhy.backends.torch.TorchBackend` (a mixin)."""

    model: nn.Module

    @on_twin
    def layer_readout(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        start_block: int,
        readout: str | None,
        score: Score = "logit",
        contrast: Sequence[Target] | None = None,
    ) -> ReadoutCapture:
        passes: Any = self
        infos = passes.layers(x[:1])
        net = current_model(self.model)
        blocks = readout_blocks(net)
        if not blocks:
            raise UnsupportedModel(
                "legrad: the model has no transformer blocks with self-attention seewhy can "
                "read (timm, torchvision, Hugging Face, open_clip ViTs); use gradcam"
            )
        chosen = blocks[_start(start_block, len(blocks)) :]
        pooler = _pooler(net)
        how = _resolve(readout, blocks, pooler is not None)
        n = len(x)
        inputs = passes._to_tensor(x)
        handles: _Handles = []
        grad_mode = torch.is_grad_enabled()
        try:
            if pooler is None:
                pool_tap, block_taps = None, _tap_blocks(net, chosen, handles)
            else:
                pool_tap, block_taps = _tap_pooler(*pooler, handles), []
            torch.set_grad_enabled(False)  # until the first block read (see _cut_graph)
            with _Rerouted(net, chosen, how, None if pooler is None else pooler[1], n):
                output = scored_call(net, inputs)
                scores = passes._scores(output)
                if scores.shape[0] != n * (len(chosen) + 1):
                    raise UnsupportedModel(
                        "legrad: the model's head did not score every block's output "
                        "separately; use gradcam"
                    )
                t = passes._targets(targets, scores[-n:])
                totals = [
                    sum(
                        passes._target_scores(scores[k * n : (k + 1) * n], t, score).sum()
                        for k in range(len(chosen))
                    )
                ]
                if contrast is not None:
                    totals.append(_contrast_total(passes._head, output, contrast, len(chosen)))
                relevance, *contrasted = _relevance(totals, pool_tap, block_taps, n, len(chosen))
        finally:
            for handle in handles:
                handle.remove()
            torch.set_grad_enabled(grad_mode)
        size = (x.shape[1], x.shape[2])
        layout = token_layout(infos, relevance.shape[-1], chosen[-1][0], size)
        grid = layout.grid or (0, 0)
        return ReadoutCapture(
            logits=scores[-n:].detach().float().cpu().numpy(),
            targets=t.cpu().numpy(),
            layers=tuple(name for name, _, _ in chosen),
            relevance=relevance[..., layout.prefix :].cpu().numpy(),
            grid=grid,
            readout=how,
            contrast=contrasted[0][..., layout.prefix :].cpu().numpy() if contrasted else None,
        )


def _contrast_total(head: Head, output: Any, contrast: Sequence[Target], blocks: int) -> Any:
    """The sum over blocks and images of each image's contrast target, read at every block
    (the same stacked output the targets were scored on: blocks, then the live rows)."""
    distinct: list[Target] = []
    for item in contrast:
        if not any(item is d for d in distinct):
            distinct.append(item)
    columns = head_scores(replace(head, columns=tuple(distinct), probability=False), output)
    n = len(contrast)
    if columns.shape[0] != n * (blocks + 1):
        raise InvalidInput(
            f"legrad: {n} contrast targets for {columns.shape[0] // (blocks + 1)} images; "
            "pass one per image"
        )
    picks = [next(j for j, d in enumerate(distinct) if d is item) for item in contrast]
    index = torch.tensor(picks, device=columns.device).expand(blocks, n)[..., None]
    return columns[: n * blocks, : len(distinct)].reshape(blocks, n, -1).gather(2, index).sum()


def _relevance(
    totals: list[Any],
    pool_tap: AttentionTap | None,
    block_taps: list[AttentionTap],
    n: int,
    blocks: int,
) -> list[torch.Tensor]:
    """Per total, (blocks, N, keys) float32: each block's signal, from one ``autograd.grad``
    (a second total, the contrast, reuses the forward's graph)."""
    taps = [pool_tap] if pool_tap is not None else block_taps
    for tap in taps:
        if tap.refused:
            raise UnsupportedModel(tap.refused)
        if tap.out is None:
            raise UnsupportedModel(
                f"legrad: cannot see the output of {tap.name!r} before its projection; "
                "use gradcam on this model"
            )
    outs = [tap.out for tap in taps if tap.out is not None]
    if not all(isinstance(t, torch.Tensor) and t.requires_grad for t in totals):
        raise UnsupportedModel(
            "legrad: the target's score does not depend on the image; use gradcam"
        )
    found = []
    for i, total in enumerate(totals):
        last = i == len(totals) - 1
        grads = torch.autograd.grad(total, outs, allow_unused=True, retain_graph=not last)
        parts = []
        for k in range(blocks):
            if pool_tap is not None:
                tap, grad, rows = pool_tap, grads[0], slice(k * n, (k + 1) * n)
            else:
                tap, grad, rows = block_taps[k], grads[k], slice(None)
            if grad is None:
                grad = torch.zeros_like(outs[0 if pool_tap is not None else k])
            d_o = tap.output_gradient(grad)
            parts.append(_signal(tap, d_o, rows, pool_tap is not None).float())
        found.append(torch.stack(parts))
    return found
