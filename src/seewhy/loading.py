"""Turn a model name or file into a model object, safely.

Names: a bundled model (``efficientnet_lite0``), ``torchvision:NAME``,
``timm:NAME``, ``keras:NAME``, ``open_clip:NAME[:PRETRAINED]``; Hugging Face
model folders (``save_pretrained``'s, safetensors weights, never the
folder's own code); files: ``torch.export`` (``.pt2``), Keras
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

__all__ = ["NATIVE_FRAMEWORKS", "load_model", "load_processor", "text_keywords"]

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
        ``timm:NAME``, ``keras:NAME``, ``open_clip:NAME:PRETRAINED`` (a tag
        open_clip lists, downloaded by open_clip unless cached;
        ``open_clip:NAME`` with ``weights``; ``open_clip:NAME:random`` for
        random weights on purpose), a Hugging Face model folder (its class
        from ``config.json``'s ``architectures``), or a file: ``.pt2``
        (``torch.export``), ``.keras`` / ``.h5``, ``.pt`` / ``.pth`` /
        ``.ts`` (TorchScript or a pickled model), ``.onnx``.
    framework : {"torch", "keras"}
        Which build of a bundled model to load.
    weights : str, optional
        A weights file for the model ``spec`` builds, read with weights-only
        rules whatever ``trust`` says (``.safetensors`` too, for PyTorch).
    trust : bool
        Allow files that can run code when loaded: a pickled model object, a
        ``.pt2`` archive holding more than weights and tensor operators, any
        TorchScript archive, a Keras file with a Lambda layer, a Hugging Face
        folder whose weights are ``pytorch_model.bin`` (still read with
        torch's weights-only rules). ONNX files are data and never need it;
        a folder's own Python code (``trust_remote_code``) is never run. See
        SECURITY.md.
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
        The file could run code and ``trust`` is False, or a Hugging Face
        folder needs its own code.
    InvalidInput
        An unknown name (the nearest ones named), a missing file, an
        ``open_clip:`` name without weights, a folder without
        ``config.json``, or ``providers`` for a non-ONNX model.
    BackendError
        Pretrained weights that could not be downloaded (offline, or
        ``HF_HUB_OFFLINE`` set): the line says to pass a local file.
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
    if spec.startswith("yolo:"):  # ultralytics: a checkpoint is a pickle (trusted only)
        require_module("torch", "torch")
        from .backends.torch.loading_ultralytics import load_ultralytics

        return load_ultralytics(spec[len("yolo:") :], weights=weights, trust=trust)
    if spec.startswith(("torchvision:", "timm:", "open_clip:")) or path.suffix or path.exists():
        require_module("torch", "torch")
        from .backends.torch.loading import load_torch_model

        return load_torch_model(spec, weights=weights, trust=trust)
    from . import zoo

    if framework == "keras":
        from .zoo.efficientnet_lite_keras import load_keras_zoo

        return load_keras_zoo(spec)
    return zoo.load(spec)


def load_processor(path: str, *, kind: str = "auto") -> Any:
    """A Hugging Face processor or tokenizer saved in a folder, read without running its code.

    Parameters
    ----------
    path : str
        The folder ``save_pretrained`` wrote the processor or tokenizer in.
    kind : {"auto", "processor", "tokenizer"}
        What to read; ``"auto"`` takes a processor where the folder has one,
        else its tokenizer.

    Returns
    -------
    object
        The processor or tokenizer (for ``explain(..., processor=)`` or
        ``tokenizer=``); None for ``"auto"`` when the folder holds neither.

    Raises
    ------
    InvalidInput
        Not a folder, or one transformers cannot read a processor or
        tokenizer from (files missing, or one that needs its own code).
    """
    if kind not in ("auto", "processor", "tokenizer"):
        raise InvalidInput(f"kind: expected auto, processor or tokenizer, got {kind!r}")
    require_module("torch", "torch")
    from .backends.torch.loading_hf import load_text_side

    return load_text_side(Path(path), kind=kind)


def text_keywords(spec: str) -> dict[str, Any]:
    """The tokenizer or processor of the model ``spec`` names, as ``explain``'s keywords.

    ``open_clip:NAME...``: ``{"tokenizer": open_clip.get_tokenizer(NAME)}``,
    the tokenizer its text tower was trained with (a Hugging Face one may be
    downloaded, as the weights were). A Hugging Face folder whose
    ``config.json`` has a vision and a text part (CLIP, SigLIP, LLaVA,
    Qwen2-VL...): ``{"processor": ...}`` saved there or, with only a
    tokenizer there, ``{"tokenizer": ...}``. Anything else: ``{}``.

    Parameters
    ----------
    spec : str
        What :func:`load_model` was given.

    Returns
    -------
    dict
        Keywords for :func:`seewhy.explain` (empty when there is nothing to pass).
    """
    if spec.startswith("open_clip:"):
        require_module("torch", "torch")
        from .backends.torch.loading_open_clip import open_clip_tokenizer

        return {"tokenizer": open_clip_tokenizer(spec.split(":", 1)[1])}
    folder = Path(spec)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        return {}
    require_module("torch", "torch")
    from .backends.torch.loading_hf import saved_text_side

    return saved_text_side(folder)
