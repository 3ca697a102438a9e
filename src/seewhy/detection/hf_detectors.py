"""Hugging Face DETR-style detectors: DETR, Conditional DETR, Deformable DETR, RT-DETR (v1, v2).

:func:`adapt_hf_detector` claims their ``*ForObjectDetection`` models. The
module explained is a mirror of the user's model (see :mod:`.hf_common`)
whose output is, per picture, every decoder query's box in model-input
pixels (the head's normalised centre and size, as corners), its label (the
best class; DETR's "no object" class left out) and that label's logit. So
``Box(xyxy, label)`` scores the query whose box overlaps ``xyxy`` most among
those of ``label``, by that query's class logit; with no target, each query
whose probability (softmax without "no object" for DETR, a sigmoid for the
focal-loss families) reaches the family's usual 0.5 is a row of its own,
as ``post_process_object_detection`` keeps them. The default layer is the
backbone's last feature map, which feeds the encoder: one map per picture.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._kit.checks import bad_argument
from ..errors import InvalidInput
from ..inputs.rows import rows_of
from ..targets import Box, Prompt
from .hf_common import (
    backbone_layer,
    explained,
    label_names,
    run_without_gradients,
    to_xyxy,
)
from .hf_preprocessing import detector_preprocess

__all__ = ["THRESHOLD", "adapt_hf_detector", "detector_family", "query_probabilities"]

#: The families by class name: (family, whether class scores are a softmax with "no object" last).
_FAMILIES = {
    "DetrForObjectDetection": ("detr", True),
    "ConditionalDetrForObjectDetection": ("conditional-detr", False),
    "DeformableDetrForObjectDetection": ("deformable-detr", False),
    "RTDetrForObjectDetection": ("rt-detr", False),
    "RTDetrV2ForObjectDetection": ("rt-detr-v2", False),
}

#: Each family's usual processor, when none is passed or saved beside the model.
_DETR_PROCESSOR = {
    "image_processor_type": "DetrImageProcessor",
    "size": {"shortest_edge": 800, "longest_edge": 1333},
    "do_pad": True,
    "resample": 2,
}
_RT_DETR_PROCESSOR = {
    "image_processor_type": "RTDetrImageProcessor",
    "size": {"height": 640, "width": 640},
    "do_normalize": False,
    "resample": 2,
}

#: What ``post_process_object_detection`` keeps by default, in every family here.
THRESHOLD = 0.5


def detector_family(model: Any) -> tuple[str, bool] | None:
    """(family, softmax) of a Hugging Face DETR-style detector, or None for other models."""
    for cls in type(model).__mro__:
        if cls.__module__.startswith("transformers.") and cls.__name__ in _FAMILIES:
            return _FAMILIES[cls.__name__]
    return None


def _decode(softmax: bool) -> Any:
    def decode(net: Any, pixels: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out = super(type(net), net).forward(pixel_values=pixels)
        logits = out.logits
        real = logits[..., :-1] if softmax else logits
        labels = real.argmax(dim=-1)
        own = real.gather(-1, labels[..., None])[..., 0]
        boxes = to_xyxy(out.pred_boxes, int(pixels.shape[-2]), int(pixels.shape[-1]))
        return [
            {"boxes": boxes[i], "labels": labels[i], "scores": own[i], "logits": logits[i]}
            for i in range(len(pixels))
        ]

    return decode


_DECODERS = {True: _decode(True), False: _decode(False)}


def query_probabilities(logits: torch.Tensor, softmax: bool) -> torch.Tensor:
    """(Q,) each query's probability of its best class, as the family's post-processing has it."""
    if softmax:
        return logits.float().softmax(dim=-1)[..., :-1].max(dim=-1).values
    return logits.float().sigmoid().max(dim=-1).values


class _Detector:
    """One claimed detector: its mirror, classes and the rows of its detections."""

    def __init__(self, model: Any, module: Any, family: str, softmax: bool) -> None:
        self.module = module
        self.family = family
        self.softmax = softmax
        self.name = type(model).__name__
        self.classes = int(model.config.num_labels)

    def bind(self, target: Any) -> Any:
        """Boxes pass as they are (checked); anything else is refused in one line."""
        if target is None:
            return None
        if isinstance(target, (list, tuple)):
            return [self.bind(t) for t in target]
        if isinstance(target, dict) and target.get("kind") == Box.kind:
            from ..targets import from_json

            target = from_json(target)
        if isinstance(target, Box):
            if target.text is not None:
                raise bad_argument(
                    "target", f"Box(xyxy, label) ({self.name} has fixed classes, no text query)",
                    f"Box(text={target.text!r})", where=self.family,
                )  # fmt: skip
            if target.label is not None and target.label >= self.classes:
                raise InvalidInput(
                    f"target: Box label {target.label} is outside {self.name}'s classes "
                    f"0..{self.classes - 1}"
                )
            return target
        what = "a Prompt" if isinstance(target, Prompt) else repr(target)
        raise InvalidInput(
            f"target: {self.name} is a detector; pass seewhy.targets.Box(xyxy, label) (--target "
            f"box:x0,y0,x1,y1[:label]) or no target to explain each detection, not {what}"
        )

    def rows(self, batch: Any, targets: Any) -> tuple[Any, tuple[Any, ...]] | None:
        """No target: one row per query whose probability reaches :data:`THRESHOLD`."""
        if targets is not None:
            return None
        found: list[list[Box]] = []
        for item in run_without_gradients(self.module, batch.inputs):
            chance = query_probabilities(item["logits"], self.softmax).cpu().numpy()
            boxes = item["boxes"].float().cpu().numpy()
            labels = item["labels"].cpu().numpy()
            kept = [
                Box(boxes[q].tolist(), int(labels[q]))
                for q in np.argsort(-chance, kind="stable")
                if chance[q] >= THRESHOLD and _proper(boxes[q])
            ]
            found.append(kept)
        return rows_of(
            batch, found,
            what=f"the detector found nothing scoring >= {THRESHOLD}",
            how="pass target=seewhy.targets.Box(xyxy, label) (--target box:x0,y0,x1,y1[:label])",
        )  # fmt: skip


def _proper(box: np.ndarray) -> bool:
    return bool(box[2] > box[0] and box[3] > box[1])


def adapt_hf_detector(
    model: Any, *, tokenizer: Any, processor: Any, prompt: str | None
) -> dict[str, Any] | None:
    """The fields of the seam's ``Adapted`` for a DETR-style detector, or None for other models."""
    found = detector_family(model)
    if found is None:
        return None
    family, softmax = found
    if tokenizer is not None or prompt is not None:
        raise bad_argument(
            "tokenizer/prompt",
            "none for a detector with fixed classes; pass target=seewhy.targets.Box(xyxy, label)",
            type(model).__name__,
        )
    usual = (
        _DETR_PROCESSOR
        if family in ("detr", "conditional-detr", "deformable-detr")
        else (_RT_DETR_PROCESSOR)
    )
    pre, sizes, how = detector_preprocess(model, processor, usual)
    from .decoder_attention import query_attention

    module = explained(model, _DECODERS[softmax], query_attention)
    detector = _Detector(model, module, family, softmax)
    layer, why = backbone_layer(model)
    where = f"default layer {layer} ({why})" if layer else f"default layer: {why}"
    scored = "softmax without 'no object'" if softmax else "sigmoid"
    said = (
        f"{type(model).__name__} ({family}): Box(xyxy, label) scores the decoder query whose box "
        f"overlaps most among those of its label, by its class logit; no target: each query "
        f"scoring >= {THRESHOLD} ({scored}); {where}; preprocessing {how}"
    )
    fields: dict[str, Any] = {
        "model": detector.module,
        "family": f"hf-{family}",
        "said": said,
        "preprocess": pre,
        "bind": detector.bind,
        "labels": label_names(model.config),
        "layer": layer,
        "rows": detector.rows,
    }
    return with_sizes(fields, sizes)


def with_sizes(fields: dict[str, Any], sizes: Any) -> dict[str, Any]:
    """``fields`` with each photo's own preprocessing, where the seam takes one."""
    import dataclasses

    from ..adapters import Adapted

    if sizes is not None and "sizes" in {f.name for f in dataclasses.fields(Adapted)}:
        fields["sizes"] = sizes
    return fields
