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
from typing import Any

from .backends.base import NATIVE_FRAMEWORKS, NativeFramework, check_native_framework
from .backends.common import require_module
from .errors import InvalidInput

__all__ = ["NATIVE_FRAMEWORKS", "load_model"]

Framework = NativeFramework  # the framework a name or checkpoint is read with
_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_model(
    spec: str = "efficientnet_lite0",
    *,
    framework: Framework = "torch",
    weights: str | None = None,
    trust: bool = False,
    providers: Sequence[Any] | None = None,
) -> Any:
    """Load the model that ``spec`` names, refusing files that could run code unless trusted.

    Parameters
    ----------
    spec : str
        A bundled model's name (``efficientnet_lite0``), ``torchvision:NAME``,
        ``timm:NAME``, ``keras:NAME``, or a file: ``.pt2`` (``torch.export``),
        ``.keras`` / ``.h5``, ``.pt`` / ``.pth`` / ``.ts`` (TorchScript or a
        pickled model), ``.onnx``.
    framework : {"torch", "keras"}
        Which build of a bundled model to load.
    weights : str, optional
        A weights file for the model ``spec`` builds, read with weights-only
        rules whatever ``trust`` says.
    trust : bool
        Allow files that can run code when loaded: a pickled model object, a
        ``.pt2`` archive holding more than weights and tensor operators, any
        TorchScript archive, a Keras file with a Lambda layer. ONNX files are
        data and never need it. See SECURITY.md.
    providers : sequence, optional
        ONNX Runtime's execution providers for a ``.onnx`` file (default: CUDA
        where present, else the CPU).

    Returns
    -------
    object
        The model: a ``torch.nn.Module``, a Keras model or an
        ``onnxruntime.InferenceSession``.

    Raises
    ------
    UntrustedModel
        The file could run code and ``trust`` is False.
    InvalidInput
        An unknown name, a missing file, or ``providers`` for a non-ONNX model.
    """
    framework = check_native_framework(framework)
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
