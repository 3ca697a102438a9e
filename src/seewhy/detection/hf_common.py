"""What the Hugging Face detectors share: the explained module, boxes, layers, rows.

The module explained is a *mirror* of the user's detector (a shallow copy
sharing every submodule and parameter, under the user's own layer names)
whose class adds a ``forward(pixels)`` returning one dict per picture:
``boxes`` (Q, 4) in model-input pixels (x0, y0, x1, y1), ``labels`` (Q,)
and ``scores`` (Q,), the score being each query's *logit* for its label, so
:class:`seewhy.targets.Box` scores the query whose box overlaps most among
those of its label by that logit. The user's model is never changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "backbone_layer",
    "explained",
    "label_names",
    "pixels_of",
    "run_without_gradients",
    "to_xyxy",
]


#: (the user's class, decode, attention) -> its explained class, made once.
_CLASSES: dict[tuple[Any, ...], type[nn.Module]] = {}


def _explained_class(
    cls: type[nn.Module], decode: Callable[..., Any], attention: Callable[..., Any] | None
) -> type[nn.Module]:
    """``cls`` with a forward from pixels to ``decode(self, pixels)``'s per-picture dicts and,
    for decoders with queries, ``query_attention(x, box)`` (``query-attention``)."""
    key = (cls, decode, attention)
    if key not in _CLASSES:
        _CLASSES[key] = _made(cls, decode, attention)
    return _CLASSES[key]


def _made(
    cls: type[nn.Module], decode: Callable[..., Any], attention: Callable[..., Any] | None
) -> type[nn.Module]:

    def forward(self: Any, pixels: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return decode(self, pixels)

    members: dict[str, Any] = {"forward": forward}
    if attention is not None:

        def query_attention(self: Any, x: np.ndarray, box: Any) -> np.ndarray:
            """(h, w) the cross-attention of the query ``box`` matches, for one input ``x``."""
            return np.asarray(attention(self, x, box))

        members["query_attention"] = query_attention
    return type(f"Explained{cls.__name__}", (cls,), members)


def explained(
    model: Any,
    decode: Callable[[Any, torch.Tensor], Any],
    attention: Callable[[Any, np.ndarray, Any], np.ndarray] | None = None,
) -> nn.Module:
    """A mirror of ``model`` whose forward is ``decode(mirror, pixels)`` (see the module doc)."""
    from ..vlm.towers import _mirror

    mirror: nn.Module = _mirror(model, _explained_class(type(model), decode, attention))
    mirror.__dict__["name"] = type(model).__name__  # the model's name in captions
    return mirror


def to_xyxy(cxcywh: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(..., 4) normalised centre, width, height -> corners in pixels of a ``height`` x ``width``
    input (the boxes' frame in DETR-style heads)."""
    cx, cy, w, h = cxcywh.unbind(-1)
    corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    return corners * corners.new_tensor([width, height, width, height])


def label_names(config: Any) -> tuple[str, ...] | None:
    """Class names by index from ``config.id2label`` (gaps named by their index); None when
    they are Hugging Face's placeholders (``LABEL_0``...)."""
    found = getattr(config, "id2label", None)
    if not isinstance(found, dict) or not found:
        return None
    names = {int(k): str(v) for k, v in found.items()}
    if all(re.fullmatch(r"LABEL_\d+", v) for v in names.values()):
        return None
    return tuple(names.get(i, str(i)) for i in range(max(names) + 1))


def backbone_layer(model: nn.Module) -> tuple[str | None, str]:
    """The backbone's last feature map that feeds the encoder, and why; None: not found.

    A Hugging Face backbone (``out_features`` among its ``stage_names``) names
    its stages ``encoder.stages.K`` (ResNet, ConvNeXt) or ``encoder.layers.K``;
    a timm backbone says its feature modules in ``feature_info``.
    """
    names = dict(model.named_modules())
    prefix = next(
        (p for p in ("model.backbone.model", "model.backbone.conv_encoder.model") if p in names),
        None,
    )
    if prefix is None:
        return None, "seewhy's usual choice (no backbone found)"
    inner = names[prefix]
    why = "the backbone's last feature map, which feeds the encoder"
    out: Any = getattr(inner, "out_features", None)
    stages: Any = getattr(inner, "stage_names", None)
    if out and stages and out[-1] in stages:
        k = list(stages).index(out[-1]) - 1  # stage_names[0] is the stem
        for part in ("encoder.stages", "encoder.layers", "stages", "layers"):
            if f"{prefix}.{part}.{k}" in names:
                return f"{prefix}.{part}.{k}", why
        for name in (f"{prefix}.{out[-1]}", f"{prefix}._backbone.{out[-1]}"):  # timm's, wrapped
            if name in names:
                return name, why
    info: Any = getattr(inner, "feature_info", None)
    if info is not None and callable(getattr(info, "module_name", None)):
        last = str(info.module_name()[-1])
        for name in (last, last.replace(".", "_")):
            if f"{prefix}.{name}" in names:
                return f"{prefix}.{name}", why
    return None, "seewhy's usual choice (the backbone's stages were not recognised)"


def pixels_of(module: nn.Module, x: np.ndarray) -> torch.Tensor:
    """Prepared (N, H, W, C) inputs as (N, C, H, W) on ``module``'s device, in its dtype."""
    first = next(module.parameters())
    tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    return tensor.to(device=first.device, dtype=first.dtype)


def run_without_gradients(module: nn.Module, x: np.ndarray) -> Any:
    """``module``'s output for ``x``, on its twin (eval mode, nothing left on the user's model)."""
    from ..backends.model_lock import model_lock
    from ..backends.torch.twin import run_on_twin

    pixels = pixels_of(module, x)

    def call(net: nn.Module) -> Any:
        with torch.no_grad():
            return net(pixels)

    with model_lock(module):
        return run_on_twin(module, call)
