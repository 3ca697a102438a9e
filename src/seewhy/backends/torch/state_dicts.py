"""Weights files read as data, never as code: the ``--weights`` of every PyTorch loader.

A ``.safetensors`` file is read by safetensors; anything else by torch's
weights-only unpickler (an allow-list of tensor types), whatever the trust.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import InvalidInput
from ..common import one_line

__all__ = ["load_state_dict"]


def load_state_dict(model: nn.Module, weights: str, *, strip_prefix: str = "") -> None:
    """Weights from a file read only as data, whatever the trust.

    A ``.safetensors`` file through safetensors, anything else through torch's
    weights-only unpickler; a checkpoint's ``state_dict`` entry is taken, and
    ``strip_prefix`` (``module.``, what DataParallel adds) removed where every
    key has it.
    """
    path = Path(weights)
    if not path.is_file():
        raise InvalidInput(f"weights: no such file {weights!r}")
    try:
        state = _read_weights(path)
    except Exception as exc:
        raise InvalidInput(
            f"weights: {weights!r} is not a loadable state dict ({one_line(exc)}); "
            "weight files are read with torch's weights-only rules (or as .safetensors)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InvalidInput(f"weights: {weights!r} holds a {type(state).__name__}, not a state dict")
    if strip_prefix and state and all(str(k).startswith(strip_prefix) for k in state):
        state = {str(k)[len(strip_prefix) :]: v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except Exception as exc:  # RuntimeError (keys, shapes), TypeError (values)
        lines = [line for line in str(exc).splitlines() if line.strip()]
        detail = one_line(RuntimeError(lines[1])) if len(lines) > 1 else one_line(exc)
        raise InvalidInput(f"weights: {weights!r} does not fit the model: {detail}") from None


def _read_weights(path: Path) -> Any:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)
