"""What the audit explains for each image (``target_from=``): top-1, true class, or ground truth.

``predicted`` (the default) explains each image's top-1 class; ``true`` its
true class (from the folders or the list file); ``region`` the true class's
scores summed over the ground-truth mask (a segmenter:
:class:`seewhy.targets.Region`); ``box`` the detection of the true class that
best overlaps the first ground-truth box (a detector: :class:`seewhy.targets.Box`).

A vision-language model's target is one for every image: a
:class:`seewhy.targets.Prompt` (CLIP, SigLIP; with several texts the
predictions and the accuracy are zero-shot among them, class folders matched
to the texts by name) or an :class:`seewhy.targets.Answer`; a generative
model given ``prompt=`` and ``predicted`` explains each image's own answer.
The settings keep such a target as its JSON form (plain data, recorded in
the resume fingerprint).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from ..targets import Answer, Box, Prompt, Region, Target, from_json
from .objects import input_boxes

if TYPE_CHECKING:
    from ..adapters import Adapted
    from ..preprocess import Preprocess
    from .worker import Decoded

__all__ = [
    "AUDIT_TARGETS",
    "AuditTarget",
    "check_audit_target",
    "check_model_target",
    "image_targets",
    "is_detector",
    "target_classes",
    "top_detections",
]

AUDIT_TARGETS = ("predicted", "true", "region", "box")
#: The targets given for every image (their JSON ``kind``): a vision-language model's.
_EVERY_IMAGE = (Prompt.kind, Answer.kind)

#: A word of :data:`AUDIT_TARGETS`, or the JSON form of a target explained in every image.
AuditTarget = str | dict[str, Any]


def check_audit_target(kind: Any, name: str = "target_from") -> AuditTarget:
    """``target_from=`` of the audit (``name``: as the caller spelt it), or a one-line error.

    A Prompt or an Answer (or its JSON form) is kept as its JSON form.
    """
    if isinstance(kind, dict) and kind.get("kind") in _EVERY_IMAGE:
        kind = from_json(kind)  # its own one-line refusal of a bad form
    if isinstance(kind, Answer) and kind.per_token:
        raise InvalidInput(
            f"{name}: Answer(per_token=True) makes a map per answer token, and the audit keeps "
            "one map per image; explain the whole answer (per_token=False)"
        )
    if isinstance(kind, Target) and kind.kind in _EVERY_IMAGE:
        return kind.to_json()
    if not isinstance(kind, str) or kind not in AUDIT_TARGETS:
        raise InvalidInput(
            f"{name}: expected one of {', '.join(AUDIT_TARGETS)}, or a seewhy.targets.Prompt "
            f"or Answer for every image, got {kind!r}"
        )
    return kind


def check_model_target(kind: AuditTarget, adapted: Adapted | None, prompt: Any) -> None:
    """Refuse, before any image is read, a target the model cannot score in every image.

    ``adapted``: the vision-language model seen by the Explainer (None: any
    other model); ``prompt``: the Explainer's ``prompt=``.
    """
    given = kind["kind"] if isinstance(kind, dict) else None
    if adapted is not None and is_detector(adapted):  # classes and boxes, like torchvision's
        if given is not None or kind not in ("predicted", "box"):
            raise InvalidInput(
                f"target_from: this {adapted.family} model detects boxes; use predicted (its "
                "most confident detection in each image) or box (the ground-truth box)"
            )
        return
    if adapted is not None and is_segmenter(adapted):  # per-pixel scores, like torchvision's
        adapted = None
    if adapted is None:
        if given is not None:
            raise InvalidInput(
                f"target_from: a {given} target needs a vision-language model (a Prompt: CLIP, "
                "SigLIP; an Answer: LLaVA, Qwen2-VL); this model has classes to explain"
            )
        return
    answers = adapted.rows is not None  # a generative model: it answers, it has no classes
    if answers and given is None and not (kind == "predicted" and prompt is not None):
        raise InvalidInput(
            f"target_from: this {adapted.family} model answers prompts and has no classes; "
            "pass prompt='What is in the picture?' (--prompt) to explain its own answer to "
            "each image, or target_from=seewhy.targets.Answer(text, prompt=...)"
        )
    if answers and given == Prompt.kind:
        raise InvalidInput(
            f"target_from: this {adapted.family} model answers prompts; explain an "
            "Answer(text, prompt=...), a Prompt is for dual encoders (CLIP, SigLIP)"
        )
    if not answers and given != Prompt.kind:
        raise InvalidInput(
            f"target_from: this {adapted.family} model compares pictures with texts and has no "
            "classes; pass target_from=seewhy.targets.Prompt('a cat', against=['a dog']) "
            "(--target-from 'prompt:a cat|a dog'): that text in every image, zero-shot among all"
        )


def is_segmenter(adapted: Adapted) -> bool:
    """An adapted segmenter or depth model (Hugging Face): Region targets, like torchvision's."""
    from ..detection.segmenters import claimed

    return claimed(adapted)


def is_detector(adapted: Adapted) -> bool:
    """An adapted detector (YOLO): classes, and a batch expanded to one row per detection."""
    return adapted.rows is not None and adapted.labels is not None


def top_detections(adapted: Adapted, batch: Any) -> tuple[Target, ...]:
    """Each image's most confident detection, as the Box the audit explains (one map each).

    The detector's own rows come most confident first; an image with none
    is refused in one line (the audit then fails that image alone).
    """
    found = adapted.rows(batch, None)  # type: ignore[misc]
    expanded, boxes = found
    first: dict[int, Target] = {}
    for index, box in zip(expanded.indices or range(len(boxes)), boxes, strict=True):
        first.setdefault(int(index), box)
    wanted = batch.indices or tuple(range(len(batch)))
    missing = [batch.sources[i] for i, index in enumerate(wanted) if int(index) not in first]
    if missing:
        raise InvalidInput(f"target_from: predicted: nothing detected in {', '.join(missing[:3])}")
    return tuple(first[int(index)] for index in wanted)


def target_classes(kind: AuditTarget) -> tuple[str, ...] | None:
    """The texts a Prompt target classifies among (the audit's labels), else None."""
    if isinstance(kind, dict) and kind.get("kind") == Prompt.kind:
        prompt = from_json(kind)
        if isinstance(prompt, Prompt) and len(prompt.texts) > 1:
            return prompt.texts
    return None


def image_targets(kind: AuditTarget, decoded: Sequence[Decoded], pre: Preprocess) -> Any:
    """The target of each decoded image for ``kind`` (None: each image's top-1; one
    Prompt or Answer: the same in every image).

    An image without the truth the kind needs is refused in one line naming it.
    """
    if isinstance(kind, dict):
        return from_json(kind)
    if kind == "predicted":
        return None
    out: list[Any] = []
    for d in decoded:
        truth = d.item.true_index
        if truth is None:
            raise InvalidInput(
                f"target_from: {kind} needs each image's true class; {d.item.name} has none "
                "(class folders or a list file give them)"
            )
        if kind == "true":
            out.append(int(truth))
        elif kind == "region":
            if d.mask is None or not d.mask.any():
                raise InvalidInput(
                    f"target_from: region needs a ground-truth mask; {d.item.name} has none"
                )
            out.append(Region(int(truth), d.mask))
        else:
            boxes = input_boxes(d.item.boxes, d.size, pre)
            if not boxes:
                raise InvalidInput(
                    f"target_from: box needs a ground-truth box; {d.item.name} has none"
                )
            out.append(Box(boxes[0], int(truth)))
    return out
