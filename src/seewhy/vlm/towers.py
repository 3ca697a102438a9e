"""The image tower of a dual encoder, as a module the torch backend explains.

Each tower is a small module holding the user's own submodules under their
own attribute names, so layer names are the user's (``visual.transformer.
resblocks.11.ln_1`` for open_clip, ``vision_model.encoder.layers.11`` for
Hugging Face), and no weight is copied or changed. Its output is the image
embedding the model compares with texts (before normalisation).

open_clip's own ViT (up to 2.2x) runs its transformer sequence-first
(tokens, batch, channels), which no layout reads as one image's map. Its
tower here is a *mirror*: shallow copies of ``visual``, its transformer and
blocks, sharing every parameter, whose blocks run batch-first (the
attention itself still gets its sequence-first input). The user's modules
are not touched.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = ["Tower", "hf_tower", "open_clip_tower"]


@dataclass(frozen=True)
class Tower:
    """The module explained, its default layer (None: seewhy's usual choice) and why."""

    module: nn.Module
    layer: str | None
    why: str


class _Tower(nn.Module):
    """Pixels to the image embedding, over the user's own modules (named as theirs)."""

    seewhy_features_only: ClassVar[bool] = True  # an embedding, never a sigmoid's output

    def __init__(self, name: str, **parts: nn.Module) -> None:
        super().__init__()
        self.name = name  # the model's name in captions (seewhy.spec reads .name)
        for key, part in parts.items():
            self.add_module(key, part)


class OpenClipTower(_Tower):
    """open_clip's ``visual``: its pooled, projected embedding."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        visual: Any = self.visual
        out = visual(pixels)
        return out[0] if isinstance(out, tuple) else out  # output_tokens: (pooled, tokens)


class HFTower(_Tower):
    """Hugging Face ``vision_model`` (+ ``visual_projection``): ``get_image_features``."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        vision: Any = self.vision_model
        pooled = vision(pixel_values=pixels).pooler_output
        projection: Any = getattr(self, "visual_projection", None)
        return pooled if projection is None else projection(pooled)


def _mirror(module: nn.Module, cls: type[nn.Module] | None = None, **children: nn.Module) -> Any:
    """A shallow copy of ``module`` with its own children dict and hook dicts (``children``
    replacing some); parameters and buffers are the very same tensors."""
    twin = copy.copy(module)
    twin.__dict__["_modules"] = {**module._modules, **children}
    for name in ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs"):
        if name in module.__dict__:
            twin.__dict__[name] = type(module.__dict__[name])(module.__dict__[name])
    if cls is not None:
        twin.__class__ = cls
    return twin


@functools.cache
def _batch_first(block_class: Any) -> Any:
    """``block_class`` (open_clip's ResidualAttentionBlock) taking (N, T, C) tokens."""

    def forward(self: Any, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> Any:
        h = self.ln_1(x).transpose(0, 1)
        mask = attn_mask.to(h.dtype) if attn_mask is not None else None
        attended = self.attn(h, h, h, need_weights=False, attn_mask=mask)[0].transpose(0, 1)
        x = x + self.ls_1(attended)
        return x + self.ls_2(self.mlp(self.ln_2(x)))

    return type(f"BatchFirst{block_class.__name__}", (block_class,), {"forward": forward})


class _BatchFirstStack(nn.Module):
    """A transformer fed sequence-first, whose blocks run batch-first (see the module doc)."""

    def __init__(self, resblocks: nn.ModuleList) -> None:
        super().__init__()
        self.resblocks = resblocks

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x.transpose(0, 1)
        for block in self.resblocks:
            x = block(x, attn_mask=attn_mask)
        return x.transpose(0, 1)


def _sequence_first(transformer: Any) -> bool:
    blocks: Any = getattr(transformer, "resblocks", None)
    attn = (
        getattr(blocks[0], "attn", None) if isinstance(blocks, nn.ModuleList) and blocks else None
    )
    return (
        isinstance(attn, nn.MultiheadAttention)
        and not attn.batch_first
        and (hasattr(blocks[0], "ln_1") and not hasattr(blocks[0], "ln_1_kv"))
    )


def open_clip_tower(model: Any) -> Tower:
    """The tower of an open_clip ``CLIP``/``CustomTextCLIP`` and its default layer."""
    visual: Any = model.visual
    kind = type(visual).__name__
    if kind == "VisionTransformer":
        last = len(visual.transformer.resblocks) - 1
        seen = visual
        if _sequence_first(visual.transformer):
            mirrored = [_mirror(b, _batch_first(b.__class__)) for b in visual.transformer.resblocks]
            stack = _mirror(visual.transformer, _BatchFirstStack)
            stack.__dict__["_modules"] = {"resblocks": nn.ModuleList(mirrored)}
            seen = _mirror(visual, transformer=stack)
        pooled_by_token = getattr(visual, "pool_type", "tok") == "tok" and visual.attn_pool is None
        if pooled_by_token:
            layer = f"visual.transformer.resblocks.{last}.ln_1"
            why = (
                "the last block's attention input, where every patch still reaches the class token"
            )
        else:
            layer = f"visual.transformer.resblocks.{last}"
            why = "the last block's patch tokens, which the pooling reads"
        return Tower(OpenClipTower("open_clip image tower", visual=seen), layer, why)
    if kind == "ModifiedResNet":
        return Tower(
            OpenClipTower("open_clip image tower", visual=visual),
            "visual.layer4",
            "the last stage before the attention pool",
        )
    trunk = getattr(visual, "trunk", None)  # TimmModel: a timm trunk and a head
    blocks: Any = getattr(trunk, "blocks", None)
    if isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks):
        last = len(blocks) - 1
        token = getattr(trunk, "global_pool", "") == "token" and getattr(
            trunk, "num_prefix_tokens", 0
        )
        if token and hasattr(blocks[last], "norm1"):
            return Tower(
                OpenClipTower("open_clip image tower", visual=visual),
                f"visual.trunk.blocks.{last}.norm1",
                "the last block's attention input, where every patch still reaches the class token",
            )
        return Tower(
            OpenClipTower("open_clip image tower", visual=visual),
            f"visual.trunk.blocks.{last}",
            "the last block's patch tokens, which the pooling reads",
        )
    return Tower(OpenClipTower("open_clip image tower", visual=visual), None, "seewhy's usual")


def hf_tower(model: Any, siglip: bool) -> Tower:
    """The tower of a Hugging Face ``CLIPModel``/``SiglipModel`` (or kin) and its default layer."""
    vision = model.vision_model
    parts: dict[str, nn.Module] = {"vision_model": vision}
    projection = getattr(model, "visual_projection", None)
    if isinstance(projection, nn.Module):
        parts["visual_projection"] = projection
    tower = HFTower(f"{type(model).__name__} image tower", **parts)
    layers: Any = getattr(getattr(vision, "encoder", None), "layers", None)
    if not isinstance(layers, nn.ModuleList) or not layers:
        return Tower(tower, None, "seewhy's usual")
    last = len(layers) - 1
    if siglip or not hasattr(layers[last], "layer_norm1"):
        return Tower(
            tower,
            f"vision_model.encoder.layers.{last}",
            "the last block's patch tokens (no class token: the head pools them all)",
        )
    return Tower(
        tower,
        f"vision_model.encoder.layers.{last}.layer_norm1",
        "the last block's attention input, where every patch still reaches the class token",
    )
