"""The image-seeing part of a generative vision-language model, as a module seewhy explains.

A :class:`VisionPath` holds the user's own submodules (no weight copied, the
layer names the user's: ``model.vision_tower.vision_model.encoder.layers.1``)
and maps (N, C, H, W) pixels, prepared as the model's processor prepares
them, to the image features the language model reads: (N, T, D), one row
per image token, through the model's own ``get_image_features``. Each
family says how the pixels reach that function (:class:`Family`):

* LLaVA (``LlavaForConditionalGeneration``) and PaliGemma
  (``PaliGemmaForConditionalGeneration``: a prefix LM, its prompt is the
  processor's own, no chat template): the pixels as they are.
* Qwen2-VL / Qwen2.5-VL: the pixels cut into the processor's patch rows
  (each frame repeated ``temporal_patch_size`` times, every merge window's
  patches together) with their grid; the merged tokens come out row by row
  over the (h / merge, w / merge) grid, and pass through ``merged_patches``
  (an identity), the layer the CAM family reads there, since the tower's own
  blocks hold every image's patches in one unbatched sequence.

* LLaVA-NeXT and Idefics3 / SmolVLM, which cut a picture into tiles: the
  pixels are a canvas of whole tiles, cut as the processor cuts them, and the
  tiles' features pass through ``tiles`` (one grid per picture, each tile
  where it lies) and the whole picture's view through ``base_image`` /
  ``global_image`` (:mod:`.generative_tiles`).

Families not served yet (LLaVA-OneVision, Idefics2) are refused in one line
by :func:`family_of` rather than explained with a wrong geometry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import UnsupportedModel

if TYPE_CHECKING:
    from .generative_tiles import Shrink

__all__ = ["SUPPORTED", "Family", "VisionPath", "family_of", "own_family"]

#: The families served, as messages name them.
SUPPORTED = (
    "LLaVA (LlavaForConditionalGeneration), LLaVA-NeXT, PaliGemma, Qwen2-VL, Qwen2.5-VL, "
    "Idefics3 and SmolVLM"
)

# class name -> family, for the models served
_FAMILIES = {
    "LlavaForConditionalGeneration": "llava",
    "PaliGemmaForConditionalGeneration": "paligemma",
    "Qwen2VLForConditionalGeneration": "qwen2-vl",
    "Qwen2_5_VLForConditionalGeneration": "qwen2-vl",
    "LlavaNextForConditionalGeneration": "llava-next",
    "Idefics3ForConditionalGeneration": "idefics3",
    "SmolVLMForConditionalGeneration": "idefics3",
}
# served through another family's geometry, but named as themselves in params and messages
# (so an explanation of one is never scored again on the other)
_OWN_NAMES = {
    "Qwen2_5_VLForConditionalGeneration": "qwen2.5-vl",
    "SmolVLMForConditionalGeneration": "smolvlm",
}
# generative VLMs recognised but not served yet: why, in a few words
_NOT_YET = {
    "LlavaOnevisionForConditionalGeneration": "its pictures become several tiles",
    "Idefics2ForConditionalGeneration": "its pictures are split into sub-images",
}


def family_of(model: Any) -> str | None:
    """The family of a served model (``"llava"``, ``"paligemma"``, ``"qwen2-vl"``); None for
    one that is no generative VLM.

    A known generative VLM that is not served yet is refused in one line.
    """
    name = type(model).__name__
    if not type(model).__module__.startswith("transformers."):
        return None
    if name in _NOT_YET:
        raise UnsupportedModel(
            f"model: {name} is not served by seewhy's Answer yet ({_NOT_YET[name]}); "
            f"served: {SUPPORTED}"
        )
    return _FAMILIES.get(name)


def own_family(model: Any, geometry: str) -> str:
    """The family a served model is named as (``"qwen2.5-vl"``, ``"smolvlm"``): its own,
    which may differ from ``geometry``, the family whose layout it is served through."""
    return _OWN_NAMES.get(type(model).__name__, geometry)


@dataclass(frozen=True)
class Family:
    """How one family's pixels reach ``get_image_features``, and its patch geometry."""

    name: str
    patch: int  # pixels per patch side
    merge: int  # patches per merged token side (Qwen2-VL: 2; LLaVA: 1)
    temporal: int  # frames per patch (Qwen2-VL repeats a picture's one frame)
    tile: int = 0  # pixels per tile side (LLaVA-NeXT, Idefics3); 0: one view per picture

    @property
    def patch_rows(self) -> bool:
        """The pixels reach the tower as the processor's patch rows with a grid (Qwen2-VL)."""
        return self.name == "qwen2-vl"

    @property
    def tiled(self) -> bool:
        """The pictures reach the tower as tiles plus a view of the whole (LLaVA-NeXT, Idefics3)."""
        return self.tile > 0

    @property
    def chat(self) -> bool:
        """The prompt is laid out by a chat template (PaliGemma's by its processor alone)."""
        return self.name != "paligemma"

    @property
    def answer_type(self) -> int:
        """The token type of answer tokens: PaliGemma's suffix (1: causal), else text (0)."""
        return 1 if self.name == "paligemma" else 0

    @property
    def step(self) -> int:
        """The side, in pixels, an input's height and width must be a multiple of."""
        return self.tile or self.patch * self.merge


def describe_family(model: Any, name: str) -> Family:
    """The family's geometry from the model's vision config."""
    vision = model.config.vision_config
    if name in ("llava", "paligemma"):
        return Family(name, int(vision.patch_size), 1, 1)
    if name == "llava-next":
        return Family(name, int(vision.patch_size), 1, 1, tile=int(vision.image_size))
    if name == "idefics3":
        scale = int(model.config.scale_factor)  # the connector's pixel shuffle
        return Family(name, int(vision.patch_size), scale, 1, tile=int(vision.image_size))
    return Family(
        name,
        int(vision.patch_size),
        int(vision.spatial_merge_size),
        int(getattr(vision, "temporal_patch_size", 2)),
    )


class VisionPath(nn.Module):
    """Pixels (N, C, H, W) -> image features (N, T, D) through the user's own modules.

    The user's model's children are this module's children under their own
    names; the user's model object itself is not held as a module, so no
    pass of seewhy's ever runs its ``forward``.
    """

    seewhy_features_only: ClassVar[bool] = True  # image features, never a sigmoid's output

    def __init__(self, model: nn.Module, family: Family, shrink: Shrink | None = None) -> None:
        super().__init__()
        self.shrink = shrink  # a tiled model's: how its processor shrinks the whole picture
        for name, child in model.named_children():
            self.add_module(name, child)
        self.family = family
        self.config = model.config
        if family.patch_rows:
            self.merged_patches = nn.Identity()
        if family.tiled:
            from .generative_tiles import whole_view

            self.tiles = nn.Identity()
            self.add_module(whole_view(family.name), nn.Identity())

    @property
    def image_token(self) -> int:
        """The id of the placeholder token the image features replace in the prompt."""
        config: Any = self.config
        found = getattr(config, "image_token_id", None)
        return int(found if found is not None else config.image_token_index)

    def token_grid(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) the grid of one picture's image tokens, for an input of ``size`` (H, W)."""
        return size[0] // self.family.step, size[1] // self.family.step

    def image_cells(self, size: tuple[int, int], count: int) -> tuple[np.ndarray, tuple[int, int]]:
        """Which of a picture's ``count`` image tokens lie on an (h, w) grid over the input,
        in row-major order, and that grid (a class token or a tiled model's whole view and
        row-end tokens lie nowhere and are left out)."""
        if self.family.tiled:
            from .generative_tiles import attention_cells

            return attention_cells(self, size)
        h, w = self.token_grid(size)
        return np.arange(count - h * w, count), (h, w)

    def image_kwargs(self, pixels: torch.Tensor) -> dict[str, Any]:
        """What the family's ``get_image_features`` takes for ``pixels`` (N, C, H, W)."""
        if self.family.tiled:
            from .generative_tiles import tiled_inputs

            return tiled_inputs(self, pixels)
        if not self.family.patch_rows:
            return {"pixel_values": pixels}
        return {
            "pixel_values": patch_rows(pixels, self.family),
            "image_grid_thw": grid(pixels, self.family),
        }

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.last_size = tuple(pixels.shape[-2:])  # on the pass's twin: what the score reads
        if self.family.tiled:
            from .generative_tiles import tiled_features

            return tiled_features(self, pixels)
        inner: Any = self.model
        found = inner.get_image_features(**self.image_kwargs(pixels), return_dict=True)
        features = torch.stack(list(found.pooler_output))
        if self.family.patch_rows:
            features = self.merged_patches(features)
        return features


def grid(pixels: torch.Tensor, family: Family) -> torch.Tensor:
    """(N, 3) each image's (frames, h, w) patch grid, as the processor's ``image_grid_thw``."""
    n, _, height, width = pixels.shape
    if height % family.step or width % family.step:
        raise UnsupportedModel(
            f"inputs: a {family.name} model takes sides that are multiples of {family.step} "
            f"pixels; got {height}x{width} (pass preprocess= with such a size)"
        )
    row = torch.tensor([1, height // family.patch, width // family.patch], device=pixels.device)
    return row.repeat(n, 1)


def patch_rows(pixels: torch.Tensor, family: Family) -> torch.Tensor:
    """(N * h * w, C * frames * p * p): the processor's patch rows for still pictures.

    The one frame repeated ``temporal`` times, then the patches ordered merge
    window by merge window, row by row; differentiable, so gradients reach
    the pixels.
    """
    n, c, height, width = pixels.shape
    p, m, t = family.patch, family.merge, family.temporal
    h, w = height // p, width // p
    frames = pixels.unsqueeze(1).expand(n, t, c, height, width)
    cut = frames.reshape(n, t, c, h // m, m, p, w // m, m, p)
    ordered = cut.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return ordered.reshape(n * h * w, c * t * p * p)
