"""seewhy: where an image model looks when it decides, and how far to trust it.

Importing seewhy imports no deep-learning framework; the backend for a model
is loaded when a model is first explained. A new method subclasses
:class:`Method`, declares its settings in ``__init__``, turns a
:class:`Context` into a :class:`RawResult` and is made known by
:func:`register`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import targets
from .api import Explainer, explain, layers, model_spec, predict
from .backends.base import PRECISIONS
from .backends.blackbox import BlackBox
from .backends.layouts import Layout
from .errors import (
    BackendError,
    ConstantMapWarning,
    FewSuperpixelsWarning,
    InputGuessWarning,
    InvalidInput,
    LayerNotFound,
    MethodNotFound,
    NonFiniteScoresWarning,
    SeewhyError,
    UnsupportedModel,
    UntrustedModel,
)
from .explanation import NOT_FINITE, Explanation, Prediction
from .loading import load_model
from .methods.base import Context, Method, RawResult
from .preprocess import IMAGENET, ModelSpec, Preprocess
from .registry import names as methods
from .registry import register

if TYPE_CHECKING:
    from . import audit, demo, keras, lightning, metrics, notebook, samples, synthetic, viz, zoo

__version__ = "0.1.0"

__all__ = [
    "IMAGENET",
    "NOT_FINITE",
    "PRECISIONS",
    "BackendError",
    "BlackBox",
    "ConstantMapWarning",
    "Context",
    "Explainer",
    "Explanation",
    "FewSuperpixelsWarning",
    "InputGuessWarning",
    "InvalidInput",
    "LayerNotFound",
    "Layout",
    "Method",
    "MethodNotFound",
    "ModelSpec",
    "NonFiniteScoresWarning",
    "Prediction",
    "Preprocess",
    "RawResult",
    "SeewhyError",
    "UnsupportedModel",
    "UntrustedModel",
    "__version__",
    "audit",
    "demo",
    "explain",
    "keras",
    "layers",
    "lightning",
    "load_model",
    "methods",
    "metrics",
    "model_spec",
    "notebook",
    "predict",
    "register",
    "samples",
    "synthetic",
    "targets",
    "viz",
    "vlm",
    "zoo",
]


_LAZY_SUBMODULES = (
    "audit",
    "demo",
    "keras",
    "lightning",
    "metrics",
    "notebook",
    "samples",
    "synthetic",
    "viz",
    "vlm",
    "zoo",
)


def __getattr__(name: str) -> Any:
    """Submodules that may pull in heavier dependencies load on first use."""
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'seewhy' has no attribute {name!r}")
