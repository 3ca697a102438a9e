"""The module seewhy explains of an ultralytics YOLO model, and its detections as rows.

:class:`YoloPixels` runs the user's own layers (``model.model``, so layer
names are those of the ``DetectionModel``: ``model.15``) in the model's own
order and hands the backends what a torchvision detector hands them: one
dict per image of ``boxes`` (x0, y0, x1, y1 in model-input pixels),
``labels`` and ``scores``, over *every* raw prediction (before NMS). So a
:class:`seewhy.targets.Box` scores the class score of the raw prediction of
its label that overlaps it most, unchanged. A classifier's module returns
its logits.

:func:`nms_rows` is the Explainer's ``rows`` hook: without a target, each
detection surviving ultralytics' own ``non_max_suppression`` at the
predictor's thresholds becomes one row, a Box on its panel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInput
from ..targets import Region

__all__ = ["InstanceRegion", "NmsSettings", "YoloPixels", "bind_boxes", "bind_regions", "nms_rows"]


class YoloPixels(nn.Module):
    """Pixels (N, 3, H, W) in 0..1 -> an ultralytics model's output, through its own layers.

    ``kind`` is ``"detect"`` (pose models too: their boxes and class scores),
    ``"segment"`` (also the masks' parts), or ``"classify"`` (the logits). The layers are the user's
    modules (no copy), routed as ``BaseModel._predict_once`` routes them
    (each layer's ``f``: the earlier outputs it takes).

    k detections of one picture are k rows of it: the torch backend runs the picture once
    and each row's score back alone (``seewhy_rows_by_backward``: its neck concatenates a
    layer's output with earlier ones, so rows cannot split at the layer as SAM's do). Its
    output is detections or a classifier's logits, never a sigmoid's result, so its forwards
    skip the sigmoid watch (``seewhy_features_only``: ~360 torch calls, 10 ms at 320 px).
    """

    seewhy_rows_by_backward: ClassVar[bool] = True  # detections of one picture: one forward
    seewhy_features_only: ClassVar[bool] = True  # detections or logits, never a sigmoid's

    def __init__(self, net: nn.Module, kind: str) -> None:
        super().__init__()
        self.model = net.model  # the user's nn.Sequential: names stay "model.<i>"
        self.kind = kind
        self.saved = frozenset(int(i) for i in getattr(net, "save", ()))
        self.classes = len(getattr(net, "names", {}) or {}) or int(getattr(net, "nc", 0) or 0)

    def raw(self, pixels: torch.Tensor) -> Any:
        """What the model itself returns in eval mode (its head's inference output)."""
        x: Any = pixels
        outputs: list[Any] = []
        layers: Any = self.model
        for layer in layers:
            source = getattr(layer, "f", -1)
            if source != -1:
                x = (
                    outputs[source]
                    if isinstance(source, int)
                    else [x if j == -1 else outputs[j] for j in source]
                )
            x = layer(x)
            outputs.append(x if getattr(layer, "i", -1) in self.saved else None)
        return x

    def forward(self, pixels: torch.Tensor) -> Any:
        """Detections over every raw prediction (a detector), or the logits (a classifier).

        A segmenter's detections also hold each prediction's mask ``coefficients``
        (anchors, masks), the image's mask prototypes ``proto`` (masks, h, w) and the
        input ``size``, for :class:`InstanceRegion`.
        """
        out = self.raw(pixels)
        if self.kind == "classify":
            return out[1] if isinstance(out, tuple) else out
        found = as_detections(predictions(out), self.classes)
        if self.kind == "segment":
            proto = out[0][1]
            masks = int(proto.shape[1])
            pred = predictions(out)
            coefficients = pred[:, 4 + self.classes : 4 + self.classes + masks, :].transpose(1, 2)
            size = torch.tensor(pixels.shape[2:], device=pixels.device)
            for i, item in enumerate(found):
                item.update(coefficients=coefficients[i], proto=proto[i], size=size)
        return found


def predictions(out: Any) -> torch.Tensor:
    """The (N, 4 + classes + extra, anchors) decoded predictions in a head's eval output."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 3:
        raise InvalidInput(
            "model: this ultralytics head does not return decoded predictions (N, 4 + classes, "
            "anchors) in eval mode; pass its DetectionModel, SegmentationModel or "
            "ClassificationModel"
        )
    return out


def as_detections(pred: torch.Tensor, classes: int) -> list[dict[str, torch.Tensor]]:
    """Every anchor as a torchvision-style detection: its box (xyxy), best class and its score."""
    xywh = pred[:, :4, :].transpose(1, 2)  # (N, anchors, 4): centre, size
    half = xywh[..., 2:] / 2
    boxes = torch.cat([xywh[..., :2] - half, xywh[..., :2] + half], dim=-1)
    scores, labels = pred[:, 4 : 4 + classes, :].max(dim=1)
    return [{"boxes": boxes[i], "labels": labels[i], "scores": scores[i]} for i in range(len(pred))]


class InstanceRegion(Region):
    """A YOLO segmenter's :class:`~seewhy.targets.Region`: an instance mask's logits summed.

    The instance is the raw prediction (before NMS) of ``class_index`` whose box overlaps
    the region's bounding box most; its mask logits are its coefficients times the mask
    prototypes (as ultralytics builds masks, before the sigmoid), summed over the region's
    pixels at the prototypes' size. No prediction of that class: 0. Recorded as the plain
    Region it was given as.
    """

    @classmethod
    def of(cls, region: Region) -> InstanceRegion:
        """The same class and mask, scored on the instance."""
        return cls(region.index, region.mask)

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        if not isinstance(output, list) or not all("proto" in o for o in output):
            raise _no_masks()
        return torch.stack([self._one(item) for item in output])

    def _one(self, item: dict[str, torch.Tensor]) -> torch.Tensor:
        proto = item["proto"]
        h, w = int(proto.shape[1]), int(proto.shape[2])
        mask = torch.as_tensor(self.mask_at((h, w)), device=proto.device)
        rows, cols = torch.nonzero(mask, as_tuple=True)
        if len(rows) == 0:  # the region vanished at the prototypes' size: nothing to score
            return (proto * 0.0).sum()
        sy, sx = float(item["size"][0]) / h, float(item["size"][1]) / w
        outline = torch.stack(
            [cols.min() * sx, rows.min() * sy, (cols.max() + 1) * sx, (rows.max() + 1) * sy]
        ).to(item["boxes"].dtype)
        iou = _iou(outline, item["boxes"].detach())
        iou = torch.where(item["labels"] == self.index, iou, torch.zeros_like(iou))
        if len(iou) == 0 or not bool(iou.max() > 0):
            return (proto * 0.0).sum()
        logits = torch.einsum("m,mhw->hw", item["coefficients"][int(iou.argmax())], proto)
        return (logits * mask.to(logits.dtype)).sum()


def _iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    ix = (torch.minimum(boxes[:, 2], box[2]) - torch.maximum(boxes[:, 0], box[0])).clamp(min=0)
    iy = (torch.minimum(boxes[:, 3], box[3]) - torch.maximum(boxes[:, 1], box[1])).clamp(min=0)
    inter = ix * iy
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (areas + (box[2] - box[0]) * (box[3] - box[1]) - inter).clamp(min=1e-12)


def bind_regions(target: Any) -> Any:
    """A segmenter's targets: each plain Region scored on its instance; the rest as given."""
    if isinstance(target, (list, tuple)):
        return type(target)(bind_regions(t) for t in target)
    return InstanceRegion.of(target) if type(target) is Region else target


def bind_boxes(target: Any) -> Any:
    """A detector's targets (Box, class indices) as given; a Region refused before any pass,
    as the plain Region's score would fail on the detections with a rank error."""
    if isinstance(target, (list, tuple)):
        return type(target)(bind_boxes(t) for t in target)
    if isinstance(target, Region):
        raise _no_masks()
    return target


def _no_masks() -> InvalidInput:
    return InvalidInput(
        "Region: this YOLO detect model makes no masks; use a -seg model (yolov8n-seg.pt), "
        "or target=seewhy.targets.Box(xyxy, label)"
    )


@dataclass(frozen=True)
class NmsSettings:
    """ultralytics' predictor defaults (or the YOLO object's own overrides)."""

    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    agnostic: bool = False

    @classmethod
    def of(cls, owner: Any) -> NmsSettings:
        """The thresholds the user's YOLO object predicts with (its overrides), else defaults."""
        given = getattr(owner, "overrides", None)
        given = given if isinstance(given, dict) else {}
        return cls(
            conf=float(given.get("conf") or cls.conf),
            iou=float(given.get("iou") or cls.iou),
            max_det=int(given.get("max_det") or cls.max_det),
            agnostic=bool(given.get("agnostic_nms") or False),
        )

    def said(self) -> str:
        return f"conf {self.conf:g}, iou {self.iou:g}"


def _nms() -> Any:
    """ultralytics' own ``non_max_suppression`` (in ``utils.ops`` before 8.3.x)."""
    from importlib import import_module

    try:
        return import_module("ultralytics.utils.nms").non_max_suppression
    except ImportError:
        return import_module("ultralytics.utils.ops").non_max_suppression


def detections_after_nms(
    adapted: YoloPixels, x: np.ndarray, settings: NmsSettings
) -> list[np.ndarray]:
    """Per image (D, 6) x0, y0, x1, y1, score, class: ultralytics' NMS on the raw output.

    Runs on the model's twin, without gradients, so nothing is left on the user's model.
    """
    from ..backends.torch.twin import run_on_twin

    first = next(adapted.parameters())
    pixels = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    pixels = pixels.to(device=first.device, dtype=first.dtype)

    def run(net: Any) -> Any:
        with torch.no_grad():
            return net.raw(pixels)

    pred = predictions(run_on_twin(adapted, run))
    kept = _nms()(
        pred,
        settings.conf,
        settings.iou,
        agnostic=settings.agnostic,
        max_det=settings.max_det,
        nc=adapted.classes,
    )
    return [k[:, :6].detach().float().cpu().numpy() for k in kept]


def nms_rows(
    adapted: YoloPixels, settings: NmsSettings, batch: Any, targets: Any
) -> tuple[Any, tuple[Any, ...]] | None:
    """Without a target: the batch with one row per detection kept by NMS, and its Boxes.

    None when targets were given (they are kept). An image with no detection
    gets no row (one warning names them); none at all is a one-line error.
    """
    if targets is not None:
        return None
    from ..inputs.rows import rows_of
    from ..targets import Box

    found = detections_after_nms(adapted, batch.inputs, settings)
    boxes = [
        [
            Box([float(x0), float(y0), float(x1), float(y1)], int(label))
            for x0, y0, x1, y1, _, label in kept
            if x1 > x0 and y1 > y0
        ]
        for kept in found
    ]
    return rows_of(
        batch,
        boxes,
        what=f"the YOLO model detected nothing ({settings.said()})",
        how="pass target=seewhy.targets.Box(xyxy, label) (--target box:x0,y0,x1,y1[:label]) "
        "to explain a region",
    )
