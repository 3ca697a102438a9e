"""PyTorch models from names and files: torchvision, timm, TorchScript, .pt2, pickles.

Safe by default: a pickled model object, or a .pt2 archive with a member
that is more than weights (see :mod:`.archives`), can run code from the file
when loaded, so it is refused unless the caller trusts the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import InvalidInput, UntrustedModel
from ...preprocess import IMAGENET, ModelSpec, Preprocess
from ..common import require_module
from .archives import unsafe_member

__all__ = ["load_torch_model"]

_TRUST_HINT = "Pass --trust-model (trust=True) only if you trust its author"


def load_torch_model(spec: str, *, weights: str | None = None, trust: bool = False) -> nn.Module:
    """``torchvision:NAME``, ``timm:NAME`` (optionally with a state-dict file), or a model file."""
    if spec.startswith("torchvision:"):
        return _torchvision(spec.split(":", 1)[1], weights)
    if spec.startswith("timm:"):
        return _timm(spec.split(":", 1)[1], weights)
    return _torch_file(Path(spec), trust=trust)


def _load_state_dict(model: nn.Module, weights: str) -> None:
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
    from ...zoo import imagenet_labels

    labels = imagenet_labels() if classes == 1000 else None
    return ModelSpec(name=name, preprocess=preprocess, labels=labels)


def _torchvision(name: str, weights: str | None) -> Any:
    tv = require_module("torchvision", "torch")
    try:
        model: Any = tv.models.get_model(name, weights=None if weights else "DEFAULT")
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
    timm = require_module("timm", "timm")
    try:
        model: Any = timm.create_model(name, pretrained=weights is None)
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


def _torch_file(path: Path, *, trust: bool) -> nn.Module:
    if not path.is_file():
        raise InvalidInput(f"model: no such file or bundled model {str(path)!r}")
    if path.suffix.lower() == ".pt2":
        return _exported(path, trust=trust)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            is_script = any(n.endswith("constants.pkl") for n in archive.namelist())
        if is_script:
            scripted: nn.Module = torch.jit.load(  # type: ignore[no-untyped-call]
                str(path), map_location="cpu"
            )
            return scripted
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        obj = None
        if not trust:
            raise UntrustedModel(
                f"model: {path.name} is a pickled model object; loading it can run code from "
                f"the file. {_TRUST_HINT}"
            ) from None
    if obj is not None:
        raise InvalidInput(
            f"model: {path.name} holds weights only; pass the architecture with --model "
            "(e.g. torchvision:resnet50) and this file with --weights"
        )
    model = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(model, nn.Module):
        raise InvalidInput(f"model: {path.name} holds a {type(model).__name__}, not a model")
    return model


def _exported(path: Path, *, trust: bool) -> nn.Module:
    """The module of a ``torch.export`` archive, once no member of it can run code."""
    if not trust:
        try:
            with zipfile.ZipFile(path) as archive:
                found = unsafe_member(archive)
        except zipfile.BadZipFile as exc:
            raise InvalidInput(f"model: {path.name} is not a torch.export archive ({exc})") from exc
        if found is not None:
            member, why = found
            raise UntrustedModel(
                f"model: {path.name}: member {member!r} {why}; loading it can run code from "
                f"the file. {_TRUST_HINT}"
            )
    try:
        module: nn.Module = torch.export.load(str(path)).module()
    except Exception as exc:
        raise InvalidInput(f"model: {path.name} is not a torch.export archive ({exc})") from exc
    return module
