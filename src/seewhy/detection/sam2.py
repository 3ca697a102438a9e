"""SAM 2 (Hugging Face ``Sam2Model``): its Hiera encoder's three feature levels as one output.

SAM 2's mask decoder reads the stride-16 image embedding and two
higher-resolution levels beside it (projected by the decoder's own
``conv_s0``/``conv_s1``), so the explained module's output holds all three,
flattened into one (N, D, 1, 1) tensor (4-D: nothing mistakes it for class
scores); :func:`levels` cuts it back for the decoder. The default layer is the
last Hiera block at stride 16, the stage the embedding is read from (the
stride-32 stage reaches it through the FPN's top-down path, after that block).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["default_block", "embeddings", "levels", "preprocess_read"]


def _shapes(model: Any) -> list[tuple[int, int, int]]:
    """(C, h, w) of each level the decoder reads, high resolution first."""
    sizes = [tuple(int(v) for v in s) for s in model.config.vision_config.backbone_feature_sizes]
    channels = [
        int(model.mask_decoder.conv_s0.out_channels),
        int(model.mask_decoder.conv_s1.out_channels),
        int(model.config.vision_config.fpn_hidden_size),
    ]
    return [(c, s[0], s[1]) for c, s in zip(channels, sizes, strict=True)]


def embeddings(image: Any, pixels: torch.Tensor) -> torch.Tensor:
    """The three levels of each row, as the model's ``get_image_embeddings`` makes them,
    flattened into (N, D, 1, 1); run on ``image``'s own modules (a pass's twin)."""
    found = image.vision_encoder(pixel_values=pixels)
    maps = list(found.fpn_hidden_states)  # (N, C, h, w), high resolution first
    maps[0] = image.mask_decoder.conv_s0(maps[0])
    maps[1] = image.mask_decoder.conv_s1(maps[1])
    maps[-1] = maps[-1] + image.no_memory_embedding.reshape(1, -1, 1, 1)  # no memory (one frame)
    flat = torch.cat([m.flatten(1) for m in maps], dim=1)
    return flat[:, :, None, None]


def levels(model: Any, output: torch.Tensor) -> list[torch.Tensor]:
    """The (N, C, h, w) levels inside :func:`embeddings`' output."""
    out, start = [], 0
    flat = output.flatten(1)
    for c, h, w in _shapes(model):
        out.append(flat[:, start : start + c * h * w].reshape(len(flat), c, h, w))
        start += c * h * w
    return out


def default_block(model: Any) -> str:
    """The last Hiera block of the stride-16 stage (the one before the last stage)."""
    stages = [int(v) for v in model.config.vision_config.backbone_config.blocks_per_stage]
    return f"vision_encoder.backbone.blocks.{sum(stages[:-1]) - 1}"


def preprocess_read(model: Any, processor: Any) -> tuple[int, bool, str]:
    """(the input side, whether the processor is given, a few words): SAM 2 squashes the
    picture to a square (no padding), ImageNet's mean and std."""
    images = getattr(processor, "image_processor", processor)
    if images is not None and hasattr(images, "to_dict"):
        size = images.to_dict().get("size") or {}
        side = int(size.get("height", 1024))
        return side, True, f"from the processor ({type(images).__name__})"
    side = int(model.config.vision_config.backbone_config.image_size[0])
    return side, False, "Sam2Processor's defaults assumed (pass processor= to use its own)"
