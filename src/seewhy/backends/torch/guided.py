"""Guided Backprop (Springenberg et al., 2015) as a torch function mode.

The rule lives at every ReLU-like call while the mode is active; no module is
swapped and no activation is edited, so the model is the same afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..._kit.warn import warn_user

__all__ = ["GuidedClamp", "guided_relu"]


class GuidedClamp(torch.autograd.Function):
    """ReLU / ReLU6 forward; Guided Backprop backward (Springenberg et al., 2015).

    The gradient passes only where the unit was active (0 < x < upper) and the
    gradient coming back is positive. The mask is computed from the output, so
    the in-place form (``ReLU(inplace=True)``) needs no copy of the input.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, upper: float | None, inplace: bool) -> torch.Tensor:
        if inplace:
            out = x.clamp_(min=0.0, max=upper)
            ctx.mark_dirty(x)
        else:
            out = x.clamp(min=0.0, max=upper)
        active = out > 0 if upper is None else (out > 0) & (out < upper)
        ctx.save_for_backward(active)
        return out

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (active,) = ctx.saved_tensors
        return grads[0].clamp(min=0.0) * active, None, None


def _guided_call(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, float | None, bool] | None:
    """(input, upper bound, in-place) when ``func`` is a ReLU-like call, else None."""
    if func in _RELU or func in _RELU6:
        flag = bool(args[1] if len(args) > 1 else kwargs.get("inplace", False))
        if func in _RELU:
            return args[0], None, func in _RELU_INPLACE or flag
        return args[0], 6.0, func in _RELU6_INPLACE or flag
    if func in _HARDTANH:
        names = ("min_val", "max_val", "inplace")
        values = {"min_val": -1.0, "max_val": 1.0, "inplace": func is _HARDTANH_INPLACE}
        values.update(zip(names, args[1:], strict=False))
        values.update({k: v for k, v in kwargs.items() if k in names})
        if float(values["min_val"]) != 0.0:  # a clamp that is not a ReLU: leave it alone
            return None
        return args[0], float(values["max_val"]), bool(values["inplace"])
    return None


_RELU = {F.relu, torch.relu, torch.Tensor.relu, torch.relu_, torch.Tensor.relu_}
_RELU_INPLACE = {torch.relu_, torch.Tensor.relu_}
_RELU6 = {F.relu6, torch._C._nn.relu6, torch._C._nn.relu6_}
_RELU6_INPLACE = {torch._C._nn.relu6_}
_HARDTANH_INPLACE = torch._C._nn.hardtanh_
_HARDTANH = {F.hardtanh, torch._C._nn.hardtanh, _HARDTANH_INPLACE}


class _GuidedMode(TorchFunctionMode):
    """Routes every ReLU / ReLU6 call made while active through :class:`GuidedClamp`.

    A torch-function mode sees module and functional forms alike (``nn.ReLU``,
    ``F.relu``, ``torch.relu``, ``x.relu_()``, ``nn.ReLU6`` via ``F.hardtanh``),
    so no module is swapped and no activation is edited. TorchScript modules
    bypass Python dispatch and keep their plain gradient.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        call = _guided_call(func, args, kwargs)
        if call is None or not isinstance(call[0], torch.Tensor):
            return func(*args, **kwargs)
        self.hits += 1
        return GuidedClamp.apply(*call)


@contextlib.contextmanager
def guided_relu() -> Iterator[None]:
    """Guided Backprop at every ReLU, without touching the model's modules.

    The mode lives only inside this block (left by ``with`` also on error).
    A model in which no ReLU was seen gets a warning: its result is a plain
    gradient.
    """
    mode = _GuidedMode()
    with mode:
        yield
    if mode.hits == 0:
        warn_user(
            "guided backprop: no ReLU or ReLU6 call was seen in the model (TorchScript, or "
            "other activations); the result is the plain gradient"
        )
