"""One batch of the audit: decode, explain with every method, score, draw.

Both engines run this same code on the same batches, so a local run and a Ray
run give identical results. Decoding is split from computing so the local
engine can decode the next batch in threads while this one is explained.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seewhy._kit.scores import probabilities
from seewhy.api import Explainer
from seewhy.errors import InvalidInput
from seewhy.explanation import Explanation
from seewhy.inputs import Batch, load_image, resize_for_model
from seewhy.preprocess import Preprocess

from .dataset import Item
from .flags import (
    border_energy,
    box_energy,
    box_notes,
    detection_box,
    image_notes,
    object_energy,
    object_mask,
    suspicion,
)
from .objects import objects_record
from .settings import Settings
from .targets import check_model_target, image_targets, is_detector, top_detections

__all__ = ["BatchResult", "BatchWorker", "Decoded", "Settings", "method_key"]

THUMB_QUALITY = 82
NON_FINITE = "the model gave non-finite scores (NaN or infinity)"


@dataclass
class Decoded:
    """One decoded picture (or the reason it could not be used)."""

    item: Item
    input: np.ndarray | None = None  # model input, float32 (H, W, 3)
    picture: np.ndarray | None = None  # what the model saw, uint8 (H, W, 3)
    size: tuple[int, int] = (0, 0)  # original (H, W)
    notes: list[str] = field(default_factory=list)
    mask: np.ndarray | None = None  # boxes and mask together, in the picture's pixels
    objects: dict[str, Any] | None = None  # what the report draws: see .objects
    error: str | None = None


@dataclass
class BatchResult:
    """What a batch leaves behind: one record per item, the maps, and pictures."""

    index: int
    records: list[dict[str, Any]]
    arrays: dict[str, np.ndarray]
    images: dict[str, bytes] = field(default_factory=dict)
    explanations: list[Explanation] | None = None  # dropped once drawn


def method_key(position: int) -> str:
    """File-name-safe key of the ``position``-th method (``m0``, ``m1``...)."""
    return f"m{position}"


def _jpeg(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=THUMB_QUALITY, optimize=False)
    return buffer.getvalue()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class BatchWorker:
    """Holds one model and one :class:`Explainer` per method, built from :class:`Settings`.

    Building it checks every setting against the model (a layer method on a
    model that only predicts, a precision the method cannot use), so the
    audit builds one before any image is read.
    """

    def __init__(self, model: Any, settings: Settings) -> None:
        self.settings = settings
        self.explainers = [Explainer(model, m, **settings.keywords(m)) for m in settings.methods]
        check_model_target(settings.target, self.explainers[0].adapted, settings.option("prompt"))
        self.spec = self.explainers[0].spec
        self.preprocess: Preprocess = self.spec.preprocess

    # ------------------------------------------------------------------ decode

    def decode(self, item: Item) -> Decoded:
        """Read one file; any problem becomes a one-line reason, never an exception."""
        if item.skipped is not None:  # listed by the folder walk, never opened
            return Decoded(item, error=item.skipped)
        try:
            rgb = load_image(item.file)
            picture = resize_for_model(rgb, self.preprocess)
            x = np.asarray(self.preprocess.normalise(picture), dtype=np.float32)
            mask, objects = self._objects(item, rgb.shape[:2])
            notes = image_notes(rgb) + box_notes(item.boxes, rgb.shape[:2])
            return Decoded(item, x, picture, rgb.shape[:2], notes, mask, objects)
        except InvalidInput as exc:
            return Decoded(item, error=_first_line(exc).replace(item.path, item.name))
        except MemoryError:
            return Decoded(item, error="too large to decode in memory")
        except Exception as exc:  # a bad file must not stop the audit
            return Decoded(item, error=f"{type(exc).__name__}: {_first_line(exc)}")

    def _objects(
        self, item: Item, size: tuple[int, int]
    ) -> tuple[np.ndarray | None, dict[str, Any] | None]:
        """The object mask the scores use, and the boxes and outline the report draws.

        The outline is the mask file's alone, so boxes given as well are drawn as
        boxes, not merged into it.
        """
        if not (item.boxes or item.mask):
            return None, None
        pre = self.preprocess
        mask = object_mask(size, pre, boxes=item.boxes, mask_path=item.mask)
        shape = None
        if item.mask:
            shape = object_mask(size, pre, mask_path=item.mask) if item.boxes else mask
        return mask, objects_record(size, pre, item.boxes, shape)

    def decode_all(self, items: Sequence[Item]) -> list[Decoded]:
        return [self.decode(item) for item in items]

    # ------------------------------------------------------------------ compute

    def compute(self, index: int, decoded: Sequence[Decoded]) -> BatchResult:
        """Explain the good pictures of a batch with every method and score them."""
        good = [d for d in decoded if d.error is None]
        records: dict[int, dict[str, Any]] = {}
        good, explanations = self._explain(good)
        arrays: dict[str, np.ndarray] = {"ids": np.array([d.item.index for d in good], np.int64)}
        for j, ex in enumerate(explanations):
            arrays[f"maps_{j}"] = ex.maps.astype(np.float16)
            arrays[f"layer_maps_{j}"] = ex.layer_maps.astype(np.float32)
        if explanations:
            arrays["logits"] = explanations[0].logits.astype(np.float32)
        for row, d in enumerate(good):
            if all(np.isfinite(ex.logits[row]).all() for ex in explanations):
                records[d.item.index] = self._record(d, row, index, explanations)
            else:  # never a class-0 guess with probability NaN
                d.error = NON_FINITE
                records[d.item.index] = _failure_record(d, index, row=row)
        for d in decoded:
            if d.item.index not in records:
                records[d.item.index] = _failure_record(d, index)
        ordered = [records[d.item.index] for d in decoded]
        return BatchResult(index, ordered, arrays, explanations=explanations)

    def _explain(self, good: list[Decoded]) -> tuple[list[Decoded], list[Explanation]]:
        """Every method on the batch; an image the API refuses fails alone, not the batch."""
        try:
            return good, self._explain_batch(good)
        except InvalidInput as exc:
            if len(good) == 1:
                good[0].error = _first_line(exc).replace(good[0].item.path, good[0].item.name)
                return [], []
        kept: list[Decoded] = []
        for d in good:  # rare: find the images that were refused, keep the others
            try:
                self._explain_batch([d])
                kept.append(d)
            except InvalidInput as exc:
                d.error = _first_line(exc).replace(d.item.path, d.item.name)
        return kept, self._explain_batch(kept)

    def _explain_batch(self, good: Sequence[Decoded]) -> list[Explanation]:
        if not good:
            return []
        batch = Batch(
            inputs=np.stack([d.input for d in good if d.input is not None]),
            images=np.stack([d.picture for d in good if d.picture is not None]),
            sources=tuple(d.item.name for d in good),
        )
        chosen = image_targets(self.settings.target, good, self.preprocess)
        adapted = self.explainers[0].adapted
        if chosen is None and adapted is not None and is_detector(adapted):
            chosen = top_detections(adapted, batch)  # one map per image: its top detection
        return [explainer.explain(batch, target=chosen) for explainer in self.explainers]

    def _record(
        self, d: Decoded, row: int, batch: int, explanations: Sequence[Explanation]
    ) -> dict[str, Any]:
        first = explanations[0]
        preds = first.predictions[row]
        top = preds[0] if preds else None  # a segmenter or a detector lists no classes
        probs = _class_probabilities(first, row)
        item = d.item
        truth = item.true_index
        known = truth is not None and 0 <= truth < len(probs) and top is not None
        wrong = (top.index != truth) if known and top is not None else None
        energies: dict[str, dict[str, float | None]] = {}
        obj: list[float] = []
        bord: list[float] = []
        inside: list[float] = []
        for ex in explanations:
            o = object_energy(ex.maps[row], d.mask) if d.mask is not None else math.nan
            b = border_energy(ex.maps[row])
            obj.append(o)
            bord.append(b)
            energies[ex.method] = {"object": _num(o), "border": _num(b)}
            box = detection_box(ex.params.get("target"), row)  # a Box explained: its own box
            if box is not None:
                inside.append(box_energy(ex.maps[row], box))
                energies[ex.method]["box"] = _num(inside[-1])
        flags: list[str] = []
        if wrong:
            flags.append("wrong")
        if any(not math.isnan(e) and e < self.settings.object_threshold for e in obj):
            flags.append("off-object")
        if any(not math.isnan(e) and e < self.settings.object_threshold for e in inside):
            flags.append("off-box")  # the map explains the detection from outside its box
        if any(not math.isnan(e) and e > self.settings.border_threshold for e in bord):
            flags.append("border")
        if d.notes:
            flags.append("odd")
        return {
            "index": item.index,
            "name": item.name,
            "path": item.path,
            "status": "ok",
            "reason": "",
            "true_label": item.true_label,
            "true_index": truth,
            "target": first.target_labels[row],
            "pred_label": None if top is None else top.label,
            "pred_index": None if top is None else top.index,
            "confidence": None if top is None else round(top.probability, 6),
            "true_probability": round(float(probs[truth]), 6)
            if known and truth is not None
            else None,
            "correct": None if wrong is None else not wrong,
            "top": [[p.label, p.index, round(p.probability, 6)] for p in preds],
            "width": d.size[1],
            "height": d.size[0],
            "has_object": d.mask is not None,
            "objects": d.objects,
            "energies": energies,
            "flags": flags,
            "notes": d.notes,
            "suspicion": suspicion(
                wrong=wrong,
                confidence=0.0 if top is None else top.probability,
                object_energies=obj + inside,
                border_energies=bord,
            ),
            "shard": batch,
            "row": row,
        }

    # ------------------------------------------------------------------ draw

    def render(self, result: BatchResult) -> BatchResult:
        """JPEG pictures for the report: what the model saw, and one overlay per method."""
        s = self.settings
        for ex_pos, ex in enumerate(result.explanations or ()):
            for row in range(len(ex)):
                ident = int(result.arrays["ids"][row])
                if ex_pos == 0:
                    result.images[f"{ident:07d}.jpg"] = _jpeg(ex.images[row])
                overlay = np.asarray(ex.overlay(row, cmap=s.cmap, alpha=s.alpha))
                result.images[f"{ident:07d}.{method_key(ex_pos)}.jpg"] = _jpeg(overlay)
        result.explanations = None
        return result


def _class_probabilities(ex: Explanation, row: int) -> np.ndarray:
    """Row ``row``'s class probabilities as ``explain`` reports them (the kit's one rule).

    Why not a softmax here: over one logit it is always 1, and a sigmoid head's
    labels are independent, so ``true_probability`` would disagree with
    ``confidence`` (the top prediction's) for exactly those models.
    """
    logits = ex.logits[row : row + 1]
    if not logits.size:
        return np.zeros(0)
    return probabilities(logits, ex.params.get("head") == "sigmoid")[0]


def _num(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def _failure_record(d: Decoded, batch: int, *, row: int | None = None) -> dict[str, Any]:
    """An image that was not explained; ``row`` is its place in the maps, if it has one."""
    item = d.item
    scored = d.error == NON_FINITE
    return {
        "index": item.index,
        "name": item.name,
        "path": item.path,
        "status": "error",
        "reason": d.error or "",
        "true_label": item.true_label,
        "true_index": item.true_index,
        "pred_label": None,
        "pred_index": None,
        "confidence": None,
        "true_probability": None,
        "correct": None,
        "top": [],
        "width": d.size[1] if scored else None,
        "height": d.size[0] if scored else None,
        "has_object": False,
        "objects": None,
        "energies": {},
        "flags": ["non-finite"] if scored else ["unreadable"],
        "notes": list(d.notes) if scored else [],
        "suspicion": 0.0,
        "shard": batch,
        "row": row,
    }
