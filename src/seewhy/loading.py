"""Turn a model name or file into a model object, safely.

Names: a bundled model (``efficientnet_lite0``), ``torchvision:NAME``,
``timm:NAME``, ``keras:NAME``; files: ``torch.export`` (``.pt2``), Keras
(``.keras``/``.h5``), TorchScript (``.pt``/``.pth``/``.ts``), ONNX
(``.onnx``, read into an ``onnxruntime.InferenceSession``) and pickled
models. What can run code when loaded is refused unless the caller says the
file is trusted (ONNX files are data and never need it): a pickled model
object, a .pt2 archive holding more than weights and tensor operators, any
TorchScript archive (its code writes files), a Keras file with a Lambda
layer. ``weights`` files are read with
weights-only rules whatever the trust. See SECURITY.md.

This module only dispatches: each framework's loader lives in its backend
(``backends/torch/loading.py``, ``backends/keras/loading.py``), and the
bundled models in ``zoo``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from .backends.common import require_module
from .errors import InvalidInput

__all__ = ["load_model"]

Framework = Literal["torch", "keras"]
_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_model(
    spec: str = "efficientnet_lite0",
    *,
    framework: Framework = "torch",
    weights: str | None = None,
    trust: bool = False,
    providers: Sequence[Any] | None = None,
) -> Any:
    """Load the model that ``spec`` names; see the module docstring for the forms.

    ``providers`` are ONNX Runtime's execution providers for a ``.onnx`` file
    (default: CUDA where present, else the CPU).
    """
    if framework not in ("torch", "keras"):
        raise InvalidInput(f"framework: expected 'torch' or 'keras', got {framework!r}")
    path = Path(spec)
    if path.suffix.lower() == ".onnx":  # data, not code: no trust needed
        from .backends.onnx import load_onnx

        return load_onnx(spec, providers=providers, weights=weights)
    if providers is not None:
        raise InvalidInput(f"providers: only for a .onnx model, got {spec!r}")
    if spec.startswith("keras:") or path.suffix.lower() in _KERAS_SUFFIXES:
        from .backends.keras.loading import load_keras_model

        return load_keras_model(spec, weights=weights, trust=trust)
    if spec.startswith(("torchvision:", "timm:")) or path.suffix or path.exists():
        require_module("torch", "torch")
        from .backends.torch.loading import load_torch_model

        return load_torch_model(spec, weights=weights, trust=trust)
    from . import zoo

    if framework == "keras":
        from .zoo.efficientnet_lite_keras import load_keras_zoo

        return load_keras_zoo(spec)
    return zoo.load(spec)
