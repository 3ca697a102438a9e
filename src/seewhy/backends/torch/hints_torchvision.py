"""What a torchvision model object says about its input, and what must be assumed.

A torchvision model object keeps no record of the weights it holds, and the
families' weights use different recipes (ResNet-50's DEFAULT resizes to 232,
ConvNeXt-T's to 236 bicubic, EfficientNetV2-S's to 384 without a crop...).
The object is matched to its builder by its class's module and its number
of parameters (as each weights' ``meta["num_params"]`` records it: nothing is
built or downloaded), and the builder's DEFAULT weights' ``transforms()``
are used, which is what ``weights="DEFAULT"`` loads. That is an assumption,
so it is said in one line with the way to change it.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import nn

from ...preprocess import Preprocess
from ..hints import ModelHints

__all__ = ["torchvision_hints"]


def torchvision_hints(model: nn.Module) -> ModelHints | None:
    """A torchvision classifier or detector object's hints; None for other models."""
    module = type(model).__module__
    if not module.startswith("torchvision.models"):
        return None
    name = type(model).__name__
    if module.startswith("torchvision.models.detection"):
        return _detector(model, name)
    side = _fixed_side(model)
    known = _identify(model, side)
    if known is None:
        return _unknown(model, name, side)
    builder, weights = known
    pre = Preprocess.from_torchvision(weights)
    categories = tuple(weights.meta.get("categories") or ())
    labels = categories if categories and _classes(model) == len(categories) else None
    resize = pre.resize if isinstance(pre.resize, int) else "x".join(map(str, pre.resize or ()))
    assumed = (
        f"torchvision {builder}'s DEFAULT weights' preprocessing ({weights}: resize {resize} "
        f"{pre.interpolation}, crop {pre.size[0]}x{pre.size[1]}), since a torchvision model "
        "object does not say which weights it holds; for other weights pass "
        "preprocess=seewhy.Preprocess.from_torchvision(weights), or load "
        f"'torchvision:{builder}'"
    )
    return ModelHints(
        pre.size, 3, pre, labels, f"torchvision {builder} (DEFAULT weights)", assumed=assumed
    )


def _classes(model: nn.Module) -> int | None:
    last = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not last:
        return None
    head = last[-1]
    return int(head.out_features if isinstance(head, nn.Linear) else head.out_channels)


def _fixed_side(model: nn.Module) -> int | None:
    """The input side a ViT or MaxViT was built for (its weights' crop must match it)."""
    side = getattr(model, "image_size", None)
    if isinstance(side, int):
        return side
    for module in model.modules():  # MaxViT: the first attention grid is the input / 4
        grid = getattr(module, "grid_size", None)
        if hasattr(module, "partition_type") and isinstance(grid, tuple):
            return 4 * int(grid[0])
    return None


#: Auxiliary classifiers that torchvision's weights drop (Inception3, GoogLeNet): not counted.
_AUX = ("AuxLogits.", "aux1.", "aux2.")


def _counts(model: nn.Module) -> tuple[int, ...]:
    """Parameters as a torchvision weights' ``meta["num_params"]`` counts them, each head
    at 1000 classes whatever the model's own number: without its auxiliary classifiers
    (GoogLeNet's weights count none) and with them (Inception3's count its AuxLogits)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    main = [m for n, m in layers if not f"{n}.".startswith(_AUX)]
    aux = [[m for n, m in layers if n.startswith(prefix)] for prefix in _AUX]
    heads = [group[-1] for group in aux if group]
    without = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(_AUX))
    without += _to_1000(main[-1]) if main else 0
    with_aux = sum(p.numel() for p in model.parameters()) + sum(_to_1000(h) for h in heads)
    with_aux += _to_1000(main[-1]) if main else 0
    if heads:
        return without, with_aux
    if type(model).__name__ == "Inception3" and getattr(model, "AuxLogits", 0) is None:
        return without, without + _INCEPTION_AUX  # built with aux_logits=False
    return (without,)


#: Inception3's auxiliary classifier at 1000 classes (``InceptionAux(768, 1000)``).
_INCEPTION_AUX = 3_326_696


def _to_1000(head: nn.Linear | nn.Conv2d) -> int:
    """The parameters a classifier layer would gain (or lose) at 1000 classes."""
    weight = head.weight
    bias = head.bias
    return (1000 - int(weight.shape[0])) * (weight[0].numel() + (1 if bias is not None else 0))


def _identify(model: nn.Module, side: int | None) -> tuple[str, Any] | None:
    """(builder, weights) for a torchvision model object: the builders of its class's module
    whose weights hold exactly its number of parameters (read from the weights' meta, nothing
    built or downloaded); the DEFAULT weights where they fit, else the weights that do."""
    return _match(type(model).__module__, _counts(model), side)


@functools.lru_cache(maxsize=64)
def _match(module: str, counts: tuple[int, ...], side: int | None) -> tuple[str, Any] | None:
    import torchvision

    found: list[tuple[str, Any]] = []
    for name in torchvision.models.list_models(module=torchvision.models):
        if torchvision.models.get_model_builder(name).__module__ != module:
            continue
        try:
            enum = torchvision.models.get_model_weights(name)
        except (ValueError, KeyError):
            continue
        fits = [w for w in enum if w.meta.get("num_params") in counts and _crop_fits(w, side)]
        if fits:
            found.append((name, enum.DEFAULT if enum.DEFAULT in fits else fits[0]))
    return found[0] if len(found) == 1 else None


def _crop_fits(weights: Any, side: int | None) -> bool:
    return side is None or int(weights.transforms().crop_size[0]) == side


def _unknown(model: nn.Module, name: str, side: int | None) -> ModelHints:
    """A torchvision model no builder makes (changed layers): the common ImageNet recipe."""
    from ...zoo import imagenet_labels

    crop = side or (299 if name == "Inception3" else 224)
    pre = Preprocess(size=(crop, crop), resize=342 if crop == 299 else round(crop / 0.875))
    labels = imagenet_labels() if _classes(model) == 1000 else None
    assumed = (
        f"the common ImageNet preprocessing (resize {pre.resize} bilinear, crop {crop}x{crop}), "
        f"since no torchvision builder makes this {name} and a model object does not say which "
        "weights it holds; pass preprocess=seewhy.Preprocess(...) or "
        "seewhy.Preprocess.from_torchvision(weights)"
    )
    return ModelHints((crop, crop), 3, pre, labels, f"torchvision {name}", assumed=assumed)


def _detector(model: nn.Module, name: str) -> ModelHints:
    """A torchvision detector: [0, 1] pictures at any size (it resizes and normalises inside).

    Its size stays a guess (pictures no larger than the default keep their own);
    COCO's names go with a 91-class head, as torchvision's COCO weights have.
    """
    classes = {
        int(n)
        for m in model.modules()
        for n in (getattr(m, "num_classes", None),)
        if isinstance(n, int) and not isinstance(n, bool)
    }
    cls_score = getattr(
        getattr(getattr(model, "roi_heads", None), "box_predictor", None), "cls_score", None
    )
    if isinstance(cls_score, nn.Linear):
        classes.add(int(cls_score.out_features))
    labels = _coco_labels() if classes == {91} else None
    return ModelHints(
        channels=3,
        labels=labels,
        source=f"torchvision {name} (normalises inside)",
        value_range=(0.0, 1.0),
    )


def _coco_labels() -> tuple[str, ...] | None:
    try:
        from torchvision.models._meta import _COCO_CATEGORIES
    except ImportError:  # a private table: without it, no names
        return None
    return tuple(str(c) for c in _COCO_CATEGORIES)
