"""ultralytics YOLO (v5u, v8, v11 and later; detect, segment, pose, classify) as seewhy sees it.

:func:`adapt_yolo` claims the ``YOLO`` object or its ``.model`` (a
``DetectionModel``, ``SegmentationModel``, ``PoseModel`` or
``ClassificationModel``). The module explained is :class:`~.yolo_outputs.YoloPixels`
over the user's own layers (names as in ``yolo.model``: ``model.15``), fed
the model's letterbox (:mod:`.letterbox`). A detector's default layers are
the neck outputs feeding its head (P3-P5, ``model.model[-1].f``), their maps
fused; without a target each detection surviving ultralytics' NMS is a row.

Nothing is called on the user's object that changes it: no ``predict`` (its
first call fuses Conv+BN into the user's modules), no ``fuse``, no ``eval``;
passes run on seewhy's twin of the layers.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedModel

__all__ = ["adapt_yolo", "is_ultralytics"]

#: ultralytics model classes seewhy explains, and what each is to it.
_KINDS = {
    "DetectionModel": "detect",
    "SegmentationModel": "segment",
    "PoseModel": "detect",
    "ClassificationModel": "classify",
}
#: ultralytics models whose output is not boxes + class scores (said in the refusal).
_REFUSED = {
    "OBBModel": "its boxes are rotated",
    "WorldModel": "its classes come from text embeddings",
    "YOLOEModel": "its classes come from text or visual prompts",
    "RTDETRDetectionModel": "it is a DETR-style decoder, not a YOLO head",
}


def is_ultralytics(model: Any) -> bool:
    """An object of ultralytics' own classes (told without importing ultralytics)."""
    return any(cls.__module__.startswith("ultralytics.") for cls in type(model).__mro__)


def adapt_yolo(
    model: Any, *, tokenizer: Any, processor: Any, prompt: str | None
) -> dict[str, Any] | None:
    """The fields of an :class:`~seewhy.adapters.Adapted` for an ultralytics YOLO model
    (a dict, so this module needs no import of the seam's); None for any other model."""
    if not is_ultralytics(model):
        return None
    if _is_task_model(model):
        owner, net = model, model
    elif _is_task_model(getattr(model, "model", None)):
        owner, net = model, model.model  # the YOLO object: its overrides hold imgsz, conf, iou
    else:
        return None
    name = _task_class(net)
    if name in _REFUSED:
        raise UnsupportedModel(
            f"model: an ultralytics {name} is not served yet ({_REFUSED[name]}); explain a "
            "YOLO detect, segment, pose or classify model"
        )
    if name not in _KINDS:
        return None
    if any(getattr(layer, "end2end", False) for layer in net.model[-1:]):
        raise UnsupportedModel(
            f"model: this {name} has an end-to-end (NMS-free) head, which seewhy does not serve "
            "yet; explain a YOLOv5u/v8/v11 model or load this one with end2end=False"
        )
    from .yolo_adapted import adapted_fields

    return adapted_fields(owner, net, _KINDS[name], name)


def _is_task_model(obj: Any) -> bool:
    return obj is not None and any(
        cls.__module__ == "ultralytics.nn.tasks" and cls.__name__ == "BaseModel"
        for cls in type(obj).__mro__
    )


def _task_class(net: Any) -> str:
    """The ultralytics task class the model is (a subclass of the user's counts as its base)."""
    for cls in type(net).__mro__:
        if cls.__module__ == "ultralytics.nn.tasks" and (
            cls.__name__ in _KINDS or cls.__name__ in _REFUSED
        ):
            return cls.__name__
    return type(net).__name__
