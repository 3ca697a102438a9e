"""Turn a model name or file into a model object, safely.

Names: a bundled model (``efficientnet_lite0``), ``torchvision:NAME``,
``timm:NAME``, ``keras:NAME``; files: TorchScript (``.pt``/``.pth``/``.ts``),
``torch.export`` (``.pt2``) and Keras (``.keras``/``.h5``). A pickled model
object can run arbitrary code when loaded, so it is refused unless the caller
says the file is trusted.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Literal

from .errors import BackendError, InvalidInput, UntrustedModel
from .preprocess import IMAGENET, ModelSpec, Preprocess

__all__ = ["load_model"]

Framework = Literal["torch", "keras"]


def load_model(
    spec: str = "efficientnet_lite0",
    *,
    framework: Framework = "torch",
    weights: str | None = None,
    trust: bool = False,
) -> Any:
    """Load the model that ``spec`` names; see the module docstring for the forms."""
    if framework not in ("torch", "keras"):
        raise InvalidInput(f"framework: expected 'torch' or 'keras', got {framework!r}")
    if spec.startswith("keras:") or Path(spec).suffix.lower() in (".keras", ".h5", ".hdf5"):
        from .backends.keras_loading import load_keras_model

        return load_keras_model(spec, weights=weights, trust=trust)
    if spec.startswith("torchvision:"):
        return _torchvision(spec.split(":", 1)[1], weights)
    if spec.startswith("timm:"):
        return _timm(spec.split(":", 1)[1], weights)
    path = Path(spec)
    if path.suffix or path.exists():
        return _torch_file(path, trust=trust)
    from . import zoo

    if framework == "keras":
        from .zoo.efficientnet_lite_keras import load_keras_zoo

        return load_keras_zoo(spec)
    return zoo.load(spec)


def _require(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendError(
            f"{module} is not installed; install it with: pip install 'seewhy[{extra}]'"
        ) from exc


def _load_state_dict(model: Any, weights: str) -> None:
    torch = _require("torch", "torch")
    path = Path(weights)
    if not path.is_file():
        raise InvalidInput(f"weights: no such file {weights!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidInput(f"weights: {weights!r} is not a loadable state dict ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0]
        raise InvalidInput(f"weights: {weights!r} does not fit the model: {detail}") from exc


def _imagenet_spec(name: str, classes: int, preprocess: Preprocess) -> ModelSpec:
    from .zoo import imagenet_labels

    labels = imagenet_labels() if classes == 1000 else None
    return ModelSpec(name=name, preprocess=preprocess, labels=labels)


def _torchvision(name: str, weights: str | None) -> Any:
    tv = _require("torchvision", "torch")
    try:
        model = tv.models.get_model(name, weights=None if weights else "DEFAULT")
    except ValueError as exc:
        raise InvalidInput(f"model: torchvision has no model {name!r}") from exc
    if weights:
        _load_state_dict(model, weights)
    model.eval()
    classes = int(getattr(getattr(model, "fc", None), "out_features", 1000) or 1000)
    model.seewhy_spec = _imagenet_spec(
        f"torchvision:{name}", classes, Preprocess(size=(224, 224), resize=256)
    )
    return model


def _timm(name: str, weights: str | None) -> Any:
    timm = _require("timm", "timm")
    try:
        model = timm.create_model(name, pretrained=weights is None)
    except RuntimeError as exc:
        raise InvalidInput(f"model: timm could not create {name!r}: {exc}") from exc
    if weights:
        _load_state_dict(model, weights)
    model.eval()
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = tuple(cfg.get("input_size", (3, 224, 224)))[1:]
    crop = float(cfg.get("crop_pct", 0.875) or 0.875)
    pre = Preprocess(
        size=(int(size[0]), int(size[1])),
        resize=round(size[0] / crop),
        mean=tuple(cfg.get("mean", IMAGENET.mean)),
        std=tuple(cfg.get("std", IMAGENET.std)),
    )
    model.seewhy_spec = _imagenet_spec(f"timm:{name}", int(model.num_classes), pre)
    return model


def _torch_file(path: Path, *, trust: bool) -> Any:
    torch = _require("torch", "torch")
    if not path.is_file():
        raise InvalidInput(f"model: no such file or bundled model {str(path)!r}")
    if path.suffix.lower() == ".pt2":
        try:
            return torch.export.load(str(path)).module()
        except Exception as exc:
            raise InvalidInput(f"model: {path.name} is not a torch.export archive ({exc})") from exc
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            is_script = any(n.endswith("constants.pkl") for n in archive.namelist())
        if is_script:
            return torch.jit.load(str(path), map_location="cpu")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        obj = None
        if not trust:
            raise UntrustedModel(
                f"model: {path.name} is a pickled model object; loading it can run code from "
                "the file. Pass --trust-model (trust=True) only if you trust its author"
            ) from None
    if obj is not None:
        raise InvalidInput(
            f"model: {path.name} holds weights only; pass the architecture with --model "
            "(e.g. torchvision:resnet50) and this file with --weights"
        )
    model = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(model, torch.nn.Module):
        raise InvalidInput(f"model: {path.name} holds a {type(model).__name__}, not a model")
    return model
