"""Targets that score a place in the picture: a segmenter's region, a detector's box."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from .._kit.checks import bad_argument, finite_float
from .._kit.mask_codes import nearest_cells, run_lengths
from ..errors import InvalidInput
from .base import Target, _check_rank, _index


class Region(Target):
    """Semantic segmentation: class ``class_index``'s scores summed over ``mask``.

    ``mask`` is a boolean (H, W) map at the output's or the input's size (it
    is resized to the output's, nearest neighbour). The model's output is
    (N, classes, h, w); ``score="probability"`` sums the per-pixel softmax.

    Parameters
    ----------
    class_index : int
        The class whose per-pixel scores are summed.
    mask : array_like
        (H, W) boolean, at the output's or the input's size; not empty.
    """

    kind = "region"
    has_probability = True

    def __init__(self, class_index: int, mask: Any) -> None:
        self.index = _index(class_index, "class_index", "Region")
        values = np.asarray(mask)
        if values.ndim != 2 or values.size == 0:
            shape = values.shape
            raise bad_argument("mask", "a 2-D (H, W) boolean map", f"shape {shape}", where="Region")
        self.mask = values.astype(bool)
        if not self.mask.any():
            raise InvalidInput(
                "Region: mask is empty (no pixel is True); mark the region to explain"
            )

    def mask_at(self, size: tuple[int, int]) -> np.ndarray:
        """The mask as float32 at ``size`` (nearest neighbour, pixel centres)."""
        rows, cols = nearest_cells(self.mask.shape, size)
        return self.mask[rows][:, cols].astype(np.float32)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.mask.astype(np.float32), np.array([self.index], np.int64))

    def pass_key(self) -> Hashable:
        return (self.kind, self.mask.shape)  # the class is data too: any mix shares a pass

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        _check_rank(output, 4, "per-pixel class scores (N, classes, h, w)")
        self.check_classes(int(output.shape[1]))  # when the pass is traced
        values = ops.softmax(output, axis=1) if probability else output
        plane = ops.take(values, self._data(ops, 1), axis=1)  # (N, 1, h, w)
        size = (int(output.shape[2]), int(output.shape[3]))
        mask = self._data(ops, 0)
        if size != self.mask.shape:  # resized inside the pass: the mask stays an input
            rows, cols = nearest_cells(self.mask.shape, size)
            mask = ops.take(
                ops.take(mask, ops.convert_to_tensor(rows), axis=0),
                ops.convert_to_tensor(cols),
                axis=1,
            )
        return ops.sum(plane * mask[None, None], axis=(1, 2, 3))

    def check_classes(self, classes: int) -> None:
        """Refuse a class past the output's ``classes`` (per-pixel channels), in one line."""
        if self.index >= classes:
            raise InvalidInput(
                f"Region: class {self.index} is outside the model's 0..{classes - 1}"
            )

    def to_json(self) -> dict[str, Any]:
        rows, cols = np.nonzero(self.mask)
        return {
            "kind": self.kind,
            "class_index": self.index,
            "shape": list(self.mask.shape),
            "pixels": int(self.mask.sum()),
            "runs": run_lengths(self.mask),
            "bbox": [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1],
        }

    def describe(self, label: Callable[[int], str]) -> str:
        return f"region of {label(self.index)}"

    def class_index(self) -> int:
        return self.index


class Box(Target):
    """Detection: the score of the predicted box of ``label`` that overlaps ``xyxy`` most.

    For torchvision detectors (Faster R-CNN, RetinaNet, FCOS, SSD), whose
    output is one dict of ``boxes``/``labels``/``scores`` per image. No box
    of the label overlapping: the score is 0 (nothing to explain there).
    ``add_iou=True`` adds that box's IoU to its score, as pytorch-grad-cam's
    ``FasterRCNNBoxScoreTarget`` does. ``label=None`` takes any label.
    Hugging Face DETR-style detectors score the query whose box overlaps most
    among those of ``label``, by its class logit; open-vocabulary detectors
    (OWL-ViT, OWLv2, Grounding DINO) take ``text=`` instead of a label: the
    best-overlapping query's logit for that text.

    Parameters
    ----------
    xyxy : sequence of float
        The box ``(x0, y0, x1, y1)`` in model-input pixels.
    label : int, optional
        The detected class to match; None matches any.
    add_iou : bool
        Add the matched box's IoU to its score.
    text : str, optional
        What an open-vocabulary detector looks for in the box ("a cat").
    """

    kind = "box"
    needs_detections = True

    def __init__(
        self,
        xyxy: Sequence[float],
        label: int | None = None,
        *,
        add_iou: bool = False,
        text: str | None = None,
    ) -> None:
        if isinstance(xyxy, (str, bytes)) or len(list(np.asarray(xyxy).reshape(-1))) != 4:
            raise bad_argument("xyxy", "4 numbers x0, y0, x1, y1", xyxy, where="Box")
        box = tuple(finite_float(v, "xyxy", where="Box") for v in np.asarray(xyxy).reshape(-1))
        if not (box[2] > box[0] and box[3] > box[1]):
            raise bad_argument("xyxy", "x0 < x1 and y0 < y1", xyxy, where="Box")
        self.xyxy = box
        self.label = None if label is None else _index(label, "label", "Box")
        self.add_iou = bool(add_iou)
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise bad_argument(
                "text", "a non-empty text (what to find in the box)", text, where="Box"
            )
        if text is not None and self.label is not None:
            raise bad_argument("text", "a label or a text, not both", text, where="Box")
        self.text = text

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        if self.text is not None:
            raise InvalidInput(
                f"Box(text={self.text!r}): a text needs an open-vocabulary detector (Hugging "
                "Face OWL-ViT, OWLv2, Grounding DINO) passed as the model; use label= for others"
            )
        if not isinstance(output, (list, tuple)) or not all(isinstance(o, dict) for o in output):
            raise InvalidInput(
                "Box: the model's output is not a detector's (one dict of boxes, labels and "
                "scores per image); Box targets are for torchvision detection models"
            )
        return ops.stack([self._one(o, ops) for o in output], axis=0)

    def _one(self, detections: dict[str, Any], ops: Any) -> Any:
        boxes, scores = detections["boxes"], detections["scores"]
        x0, y0, x1, y1 = self.xyxy
        ix = ops.maximum(ops.minimum(boxes[:, 2], x1) - ops.maximum(boxes[:, 0], x0), 0.0)
        iy = ops.maximum(ops.minimum(boxes[:, 3], y1) - ops.maximum(boxes[:, 1], y0), 0.0)
        inter = ix * iy
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        iou = inter / ops.maximum(areas + (x1 - x0) * (y1 - y0) - inter, 1e-12)
        if self.label is not None:
            same = detections["labels"] == self.label
            iou = ops.where(same, iou, ops.zeros_like(iou))
        if int(iou.shape[0]) == 0 or not bool(ops.max(iou) > 0):
            return ops.sum(scores * 0.0)  # no overlapping box: 0, still on the graph
        best = int(ops.argmax(iou))
        value = scores[best]
        return value + iou[best] if self.add_iou else value

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "xyxy": list(self.xyxy), "label": self.label}
        if self.add_iou:
            out["add_iou"] = True
        if self.text is not None:
            out["text"] = self.text
        return out

    def describe(self, label: Callable[[int], str]) -> str:
        corners = ",".join(f"{v:g}" for v in self.xyxy)
        if self.text is not None:
            return f"{self.text} [{corners}]"
        return f"box {corners}" if self.label is None else f"{label(self.label)} [{corners}]"

    def class_index(self) -> int:
        return -1 if self.label is None else self.label
