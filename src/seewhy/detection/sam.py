"""SAM (segment_anything's ``Sam`` and ``SamPredictor``, Hugging Face ``SamModel`` and
``Sam2Model``): which pixels made the mask a prompt draws?

:func:`adapt_sam` claims those models. The module explained is
:class:`SamImage`: the user's own image encoder (pixels -> the image
embedding), holding the prompt encoder and mask decoder beside it so a
pass's private twin carries them too. A :class:`~seewhy.targets.Mask` is
bound to a :class:`~.sam_prompts.MaskScore` whose score runs the prompt
encoder and the mask decoder on that embedding, so every method works
unchanged and gradients stop at the layer explained.

Cost: the rows of one picture (k prompts) are the same pixels, so
:attr:`SamImage.seewhy_shared_rows` lets the torch backend run the encoder
up to the layer once per picture and hand each row its own copy of the
layer's output: one encoder forward and one backward for k prompts, and each
prompt's decoder runs on its own row only (:func:`seewhy.backends.heads.rows_scoring`).
SAM 2's decoder also reads earlier encoder stages, so there each row runs the
encoder (batched).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from ..backends.torch.hints_hf import _resampler
from ..errors import UnsupportedModel
from ..preprocess import Preprocess
from .sam2 import default_block, embeddings, preprocess_read
from .sam_prompts import Binder

__all__ = ["SamImage", "adapt_sam", "sam_family"]


def sam_family(model: Any) -> str | None:
    """``"sam"`` (segment_anything), ``"hf-sam"``, ``"hf-sam2"`` (transformers), or None."""
    module, name = type(model).__module__, type(model).__name__
    if module.startswith("segment_anything") and name == "SamPredictor":
        return "sam"
    if module.startswith("segment_anything") and all(
        isinstance(getattr(model, a, None), nn.Module)
        for a in ("image_encoder", "prompt_encoder", "mask_decoder")
    ):
        return "sam"
    if module.startswith("transformers") and name == "SamModel":
        return "hf-sam"
    if module.startswith("transformers") and name == "SamHQModel":
        raise UnsupportedModel(
            "model: SamHQModel is not supported yet: its mask decoder also reads the encoder's "
            "intermediate blocks; SamModel, Sam2Model and segment_anything's Sam are"
        )
    if module.startswith("transformers") and name == "Sam2Model":
        return "hf-sam2"
    if module.startswith("transformers") and name == "Sam2VideoModel":
        raise UnsupportedModel(
            f"model: {name} tracks masks through a video's memory, which seewhy does not "
            "explain; load the same checkpoint as Sam2Model to explain one picture's masks"
        )
    return None


class SamImage(nn.Module):
    """SAM's image side as seewhy explains it: (N, 3, S, S) prepared pixels -> the image
    embedding (N, 256, S/16, S/16); SAM 2's three levels in one tensor (see :mod:`.sam2`).

    Holds the user's own modules under their own names (``image_encoder`` for
    segment_anything, ``vision_encoder`` for Hugging Face), so layer names are
    the model's; the prompt side is held too but runs only in a target's score.
    """

    #: The rows of one picture may share the encoder up to the layer (see the module doc).
    seewhy_shared_rows = True

    def __init__(self, model: Any, family: str) -> None:
        super().__init__()
        self.family = family
        if family == "sam":
            self.image_encoder = model.image_encoder
            self.prompt_encoder = model.prompt_encoder
            self.mask_decoder = model.mask_decoder
        else:
            self.vision_encoder = model.vision_encoder
            self.prompt_encoder = model.prompt_encoder
            self.mask_decoder = model.mask_decoder
        if family == "hf-sam":
            self.shared_image_embedding = model.shared_image_embedding
        if family == "hf-sam2":
            self.no_memory_embedding = model.no_memory_embedding
            # its decoder also reads earlier stages' features, so rows cannot split mid-encoder
            self.seewhy_shared_rows = False
        self._user = [model]  # the user's model, out of the module tree (not twinned)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The image embedding of each row."""
        if self.family == "sam":
            out: torch.Tensor = self.image_encoder(pixels)
            return out
        if self.family == "hf-sam2":
            return embeddings(self, pixels)
        found: torch.Tensor = self.vision_encoder(pixel_values=pixels)[0]
        return found

    @property
    def user(self) -> Any:
        """The user's whole model (its ``mask_threshold`` and config)."""
        return self._user[0]


@dataclass(frozen=True)
class _Read:
    """What seewhy read from the model: its input side, normalisation, and where from."""

    side: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float
    resampler: str
    said: str
    square: bool = False  # squashed to a square (SAM 2), not resized by its long side


def adapt_sam(
    model: Any, *, tokenizer: Any, processor: Any, prompt: str | None
) -> dict[str, Any] | None:
    """The fields of the seam's ``Adapted`` for a SAM model, or None for other models."""
    family = sam_family(model)
    if family is None:
        return None
    if tokenizer is not None or prompt is not None:
        from .._kit.checks import bad_argument

        raise bad_argument(
            "tokenizer/prompt",
            "neither for SAM (it is prompted by points and boxes); pass "
            "target=seewhy.targets.Mask(points=[(x, y)]) (--target point:x,y)",
            prompt if prompt is not None else type(tokenizer).__name__,
        )
    if type(model).__name__ == "SamPredictor":
        model = model.model  # the predictor's Sam; its cached image is left alone
    image = SamImage(model, family)
    read = _read_sam(model) if family == "sam" else _read_hf(model, processor, family)
    pre = Preprocess(
        size=(read.side, read.side),
        resize=None if read.square else (read.side, read.side),
        mean=read.mean,
        std=read.std,
        scale=read.scale,
        interpolation="bilinear",
        fit="short" if read.square else "contain",  # no resize: squashed to size
        fill=tuple(min(255, max(0, round(m / read.scale))) for m in read.mean),
        resampler=read.resampler,
        align="top-left",
    )
    encoder = "image_encoder" if family == "sam" else "vision_encoder"
    layer, why = f"{encoder}.neck", "the image embedding the mask decoder reads"
    if family == "hf-sam2":
        layer, why = default_block(model), "the last Hiera block at stride 16"
    cost = "the image embedding once per picture"
    if not image.seewhy_shared_rows:
        cost = "each prompt a pass of the encoder: the decoder reads its earlier stages too"
    geometry = "squashed to" if read.square else "long side to"
    padded = "" if read.square else ", padded bottom-right"
    said = (
        f"{type(model).__name__} ({family}): explaining its image encoder for mask prompts "
        "(score: the chosen mask's logits summed where it is on; the prompt encoder and mask "
        f"decoder run in the score, {cost}); default layer "
        f"{layer} ({why}); preprocessing {read.said}: {geometry} {read.side}{padded}"
    )
    binder = Binder(image)
    return {
        "model": image,
        "family": family,
        "said": said,
        "preprocess": pre,
        "bind": binder.bind,
        "layer": layer,
        "rows": binder.rows,
    }


def _read_sam(model: Any) -> _Read:
    side = int(model.image_encoder.img_size)
    mean = tuple(float(v) for v in model.pixel_mean.reshape(-1).tolist())
    std = tuple(float(v) for v in model.pixel_std.reshape(-1).tolist())
    return _Read(side, mean, std, 1.0, "pillow", "from image_encoder.img_size, pixel_mean/std")


def _read_hf(model: Any, processor: Any, family: str) -> _Read:
    if family == "hf-sam2":
        side, given, said = preprocess_read(model, processor)
        cfg = getattr(processor, "image_processor", processor).to_dict() if given else {}
        read = _from_config(cfg, "Sam2ImageProcessor", said)
        return replace(read, side=side, square=True)
    images = getattr(processor, "image_processor", processor)
    if images is not None and hasattr(images, "to_dict"):
        kind = type(images).__name__
        return _from_config(images.to_dict(), kind, f"from the processor ({kind})")
    saved = _saved_config(model)
    if saved is not None:
        kind = str(saved.get("image_processor_type", "SamImageProcessor"))
        return _from_config(saved, kind, "from preprocessor_config.json beside the model")
    side = int(getattr(model.config.vision_config, "image_size", 1024))
    return _Read(
        side,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        1 / 255,
        _resampler("SamImageProcessor"),
        "SamProcessor's defaults assumed (no processor given: pass processor= to use its own)",
    )


def _from_config(cfg: dict[str, Any], kind: str, said: str) -> _Read:
    """A SAM image processor's settings (its ``to_dict`` or saved JSON)."""
    longest = (cfg.get("size") or {}).get("longest_edge", 1024)
    return _Read(
        int(longest),
        tuple(float(v) for v in cfg.get("image_mean") or (0.485, 0.456, 0.406)),
        tuple(float(v) for v in cfg.get("image_std") or (0.229, 0.224, 0.225)),
        float(cfg.get("rescale_factor") or 1 / 255),
        _resampler(kind),
        said,
    )


def _saved_config(model: Any) -> dict[str, Any] | None:
    """The ``preprocessor_config.json`` saved in the folder the model was loaded from."""
    import json
    from pathlib import Path

    folder = str(getattr(model, "name_or_path", "") or "")
    path = Path(folder) / "preprocessor_config.json" if folder else None
    if path is None or not path.is_file() or path.stat().st_size > 1_000_000:
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None
