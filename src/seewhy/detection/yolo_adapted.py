"""The :class:`~seewhy.adapters.Adapted` fields of an ultralytics model (see :mod:`.yolo`)."""

from __future__ import annotations

import functools
import weakref
from typing import Any

from .letterbox import classify_preprocess, imgsz_of, letterbox
from .yolo_outputs import NmsSettings, YoloPixels, bind_boxes, bind_regions, nms_rows

__all__ = ["adapted_fields", "scale_layers"]


def scale_layers(net: Any) -> tuple[str, ...]:
    """The layers feeding a detection head, P3 (finest) to P5: its inputs ``f``."""
    sources = net.model[-1].f
    sources = [sources] if isinstance(sources, int) else list(sources)
    count = len(net.model)
    return tuple(f"model.{i if i >= 0 else count - 1 + i}" for i in sources)


#: The module explained of each user's model, kept while that model lives: the backends
#: keep their per-model notes (the layer trace, the sigmoid check) on it, so a second
#: explanation of the same model runs none of those passes again.
_PIXELS: weakref.WeakKeyDictionary[Any, YoloPixels] = weakref.WeakKeyDictionary()


def pixels_of(net: Any, kind: str) -> YoloPixels:
    """The :class:`YoloPixels` over ``net``'s layers, made again if its layers were replaced."""
    known = _PIXELS.get(net)
    if known is None or known.model is not net.model or known.kind != kind:
        known = _PIXELS[net] = YoloPixels(net, kind)
    return known


def adapted_fields(owner: Any, net: Any, kind: str, name: str) -> dict[str, Any]:
    """What seewhy explains of ``net`` (the ``YOLO`` object ``owner``'s model, or itself)."""
    size, where = imgsz_of(owner, net)
    labels = _labels(net)
    pixels = pixels_of(net, kind)
    side = f"{size[0]}x{size[1]}"
    if kind == "classify":
        said = (
            f"ultralytics {name}: explained as a classifier over its logits (layer names as in "
            f"yolo.model); pictures resized and centre-cropped to {side} ({where}), scaled to 0..1"
        )
        return {
            "model": pixels,
            "family": "ultralytics-classify",
            "said": said,
            "preprocess": classify_preprocess(size),
            "bind": _as_given,
            "labels": labels,
        }
    settings = NmsSettings.of(owner)
    layers = scale_layers(net)
    regions = "; a Region scores its instance's mask" if kind == "segment" else ""
    said = (
        f"ultralytics {name}: seewhy explains its layers (names as in yolo.model: "
        f"{layers[0]}); pictures letterboxed to {side} ({where}; aspect kept, grey 114, "
        f"OpenCV's resize); no target: each detection its NMS keeps ({settings.said()}) is "
        f"a row, scored as a Box{regions}; default layers {', '.join(layers)} (P3-P5, the "
        "neck outputs feeding its head), their maps fused"
    )
    return {
        "model": pixels,
        "family": f"ultralytics-{kind}",
        "said": said,
        "preprocess": letterbox(size),
        "bind": bind_regions if kind == "segment" else bind_boxes,
        "labels": labels,
        "layer": layers,
        "rows": functools.partial(nms_rows, pixels, settings),
    }


def _labels(net: Any) -> tuple[str, ...] | None:
    names = getattr(net, "names", None)
    if isinstance(names, dict) and names:
        return tuple(str(names.get(i, i)) for i in range(max(int(k) for k in names) + 1))
    if isinstance(names, (list, tuple)) and names:
        return tuple(str(n) for n in names)
    return None


def _as_given(target: Any) -> Any:
    """A YOLO model's targets are seewhy's own (Box, class indices): nothing to bind."""
    return target
