"""Hugging Face segmenters and depth models: what their output means to a ``Region``.

:func:`adapt_segmenter` claims three kinds of ``transformers`` model:

* **semantic** (``...ForSemanticSegmentation``: SegFormer, UperNet, BEiT,
  MobileViT, DPT...): the model as it is; its ``logits`` (N, classes, h, w) are
  what ``post_process_semantic_segmentation`` upsamples and takes the argmax
  of, so ``Region(c, mask)`` sums class ``c``'s logits over the mask.
* **universal** (Mask2Former, MaskFormer): a query predicts a class and a
  mask, so there are no per-pixel logits to score. The module explained
  outputs channels ``0..K-1``, each class as the model's own semantic
  post-processing combines the queries (softmax over the classes without the
  null class, times the sigmoid masks, summed over the queries, at the mask
  resolution), then channels ``K..K+Q-1``, each query's instance (its best
  class's probability times its sigmoid mask, the two factors of the
  instance post-processing's score). ``Region(K + q, mask)`` explains query
  ``q``'s instance.
* **depth** (``...ForDepthEstimation``: DPT, Depth Anything, GLPN,
  ZoeDepth...): one value per pixel, with a sign that matters. As a binary
  classifier's one logit ``z`` is read as the two classes ``(-z, +z)``, the
  prediction ``d`` is read as two channels, ``0 = "nearer"`` and
  ``1 = "farther"``: ``(+d, -d)`` for a model predicting relative inverse
  depth (MiDaS-style DPT, Depth Anything's relative checkpoints: larger is
  nearer), ``(-d, +d)`` for metric depth. ``Region(0, mask)`` asks what makes
  the region read nearer, ``Region(1, mask)`` farther.

Each gets a default layer that is one map per picture and feeds the scored
output (the decoder's fused features), said in the one line seewhy prints.
With no target, a segmenter is refused in one line naming ``Region``, as
torchvision's are. The user's model is never changed: the universal and depth
kinds run a shallow mirror of it (its own modules, under its own names).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from ..vlm.towers import _mirror

__all__ = ["adapt_segmenter", "claimed", "segmenter_kind"]

#: Classes whose queries predict a class and a mask each (no per-pixel logits).
_UNIVERSAL = ("Mask2FormerForUniversalSegmentation", "MaskFormerForInstanceSegmentation")

#: Depth families whose checkpoints predict relative inverse depth unless the config says
#: ``depth_estimation_type="metric"`` (MiDaS-style DPT; Depth Anything's relative models).
_INVERSE_DEPTH = ("dpt", "depth_anything", "prompt_depth_anything")

#: Why each family's default layer, where seewhy picks one itself.
_SEMANTIC_LAYERS = {
    "segformer": ("decode_head.activation", "the all-MLP decoder's fused features"),
    "upernet": ("decode_head.fpn_bottleneck", "the decoder's fusion of every FPN level"),
}


def segmenter_kind(model: Any) -> str | None:
    """``"semantic"``, ``"universal"``, ``"depth"``, or None for any other model."""
    cls = type(model)
    if not cls.__module__.startswith("transformers.") or not isinstance(model, nn.Module):
        return None
    name = cls.__name__
    if name in _UNIVERSAL:
        return "universal"
    if name.endswith("ForSemanticSegmentation"):
        return "semantic"
    if name.endswith("ForDepthEstimation"):
        return "depth"
    return None


def adapt_segmenter(
    model: Any, *, tokenizer: Any, processor: Any, prompt: str | None
) -> dict[str, Any] | None:
    """The fields of the seam's ``Adapted`` for a Hugging Face segmenter or depth model,
    or None for other models."""
    kind = segmenter_kind(model)
    if kind is None:
        return None
    if tokenizer is not None or prompt is not None:
        from .._kit.checks import bad_argument

        raise bad_argument(
            "tokenizer/prompt",
            "none for a segmenter (it reads no text); pass target=seewhy.targets.Region("
            "class_index, mask)",
            type(model).__name__,
        )
    config = model.config
    family = str(getattr(config, "model_type", "")) or type(model).__name__
    pre = None
    if processor is not None:
        from ..backends.torch.hints_hf import image_processor_preset

        pre = image_processor_preset(processor)
    if kind == "semantic":
        module, labels = model, None
        scored = "Region(class, mask) sums its per-pixel class logits over the mask"
        layer, why = _SEMANTIC_LAYERS.get(family, (None, "seewhy's usual choice"))
    elif kind == "universal":
        module = _mirror(model, _scored(model.__class__))
        classes = _class_names(config)
        labels = classes + tuple(f"query {q}" for q in range(_queries(config)))
        scored = (
            f"Region(c, mask) scores channel c: 0..{len(classes) - 1} each class as its semantic "
            f"post-processing combines the queries, {len(classes)}..{len(labels) - 1} each "
            "query's instance"
        )
        layer = "model.pixel_level_module.decoder.mask_projection"
        why = "the pixel decoder's mask features, which every query's mask reads"
    else:
        nearer, source = _nearer_is_larger(config, family)
        module = _mirror(model, _scored(model.__class__))
        module.__dict__["seewhy_depth_sign"] = 1.0 if nearer else -1.0
        labels = ("nearer", "farther")
        read = "relative inverse depth (larger = nearer)" if nearer else "depth (larger = farther)"
        scored = (
            f"predicted_depth read as {read} ({source}); Region(0, mask) explains what makes "
            "the region nearer, Region(1, mask) farther"
        )
        layer, why = _depth_layer(model)
    if module is not model:  # named as the user's model in captions (seewhy.spec reads .name)
        module.__dict__["name"] = type(model).__name__
    if layer is not None and layer not in dict(model.named_modules()):
        layer, why = None, "seewhy's usual choice"
    where = f"default layer {layer} ({why})" if layer else "seewhy's usual default layer"
    said = f"{type(model).__name__} ({family} {kind} model): {scored}; {where}"
    return {
        "model": module,
        "family": f"hf-{family}",
        "said": said,
        "preprocess": pre,
        "bind": _as_given,
        "labels": labels,
        "layer": layer,
    }


def _as_given(target: Any) -> Any:
    """A segmenter's targets are ordinary ``Region`` targets on the explained output."""
    return target


def claimed(adapted: Any) -> bool:
    """Whether :func:`adapt_segmenter` made ``adapted`` (an ``Adapted``): its targets are
    the user's own, as a plain segmenter's are (the audit's ground-truth regions too)."""
    return adapted.bind is _as_given


def _class_names(config: Any) -> tuple[str, ...]:
    """The config's class names; ``class i`` where it has none (or Hugging Face's
    ``LABEL_i`` placeholders), so the query channels after them still have theirs."""
    from ..backends.torch.hints_hf import _labels as class_names

    count = int(config.num_labels)
    names = class_names(getattr(config, "id2label", None))
    if names is None or len(names) != count:
        return tuple(f"class {i}" for i in range(count))
    return names


def _queries(config: Any) -> int:
    """How many queries: Mask2Former's config says, MaskFormer's DETR decoder's does."""
    found = getattr(config, "num_queries", None)
    if found is None:
        found = config.decoder_config.num_queries
    return int(found)


def _nearer_is_larger(config: Any, family: str) -> tuple[bool, str]:
    """Whether the prediction is relative inverse depth (larger = nearer), and whence."""
    kind = getattr(config, "depth_estimation_type", None)
    if kind is not None:
        return str(kind) == "relative", f"its config's depth_estimation_type {kind!r}"
    if family in _INVERSE_DEPTH:
        return True, f"guessed: {family} checkpoints are MiDaS-style"
    return False, f"guessed: {family} predicts metric depth"


def _depth_layer(model: nn.Module) -> tuple[str | None, str]:
    """The last fusion block of a DPT-style neck: the features the depth head reads."""
    fusion = getattr(getattr(getattr(model, "neck", None), "fusion_stage", None), "layers", None)
    if isinstance(fusion, nn.ModuleList) and len(fusion):
        return (
            f"neck.fusion_stage.layers.{len(fusion) - 1}",
            "the neck's last fusion, which the depth head reads",
        )
    return None, "seewhy's usual choice"


@functools.cache
def _scored(cls: Any) -> Any:
    """``cls`` with a forward returning the channels a ``Region`` scores (see the module)."""

    def forward(self: Any, pixel_values: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = cls.forward(self, pixel_values=pixel_values)
        if cls.__name__ in _UNIVERSAL:
            return _universal_channels(out.class_queries_logits, out.masks_queries_logits)
        depth = out.predicted_depth
        sign = float(self.__dict__.get("seewhy_depth_sign", 1.0))
        return torch.stack([sign * depth, -sign * depth], dim=1)

    return type(f"Scored{cls.__name__}", (cls,), {"forward": forward, "seewhy_features_only": True})


def _universal_channels(classes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N, K + Q, h, w): the K class maps of the semantic post-processing, then each query's
    instance (its best class's probability times its sigmoid mask), from the (N, Q, K + 1)
    class logits (the null class last) and the (N, Q, h, w) mask logits."""
    probabilities = classes.softmax(dim=-1)[..., :-1]
    on = masks.sigmoid()
    semantic = torch.einsum("nqk,nqhw->nkhw", probabilities, on)
    instances = probabilities.max(dim=-1).values[..., None, None] * on
    return torch.cat([semantic, instances], dim=1)
