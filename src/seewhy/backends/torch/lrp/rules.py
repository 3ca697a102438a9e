"""The LRP rules of one layer, as autograd functions whose backward returns relevance.

Convention (zennit's): during an LRP pass the gradient flowing back through the
network *is* the relevance, so the input's gradient is the input's relevance.
Each weighted layer's output is made by :class:`LayerRule`, whose backward
shares the relevance of the outputs among the inputs by the layer's rule, from
the layer's weights (merged with the BatchNorm after it, computed here and
never written back). Weightless operations use :class:`Proportional` (an
average pool, a sum: the *norm* rule), :class:`PassOn` (activations,
BatchNorm once merged) and :class:`Gate` (an elementwise product).

Each rule is written as a list of *terms* ``(input, weight, bias)`` whose
forward values are the rule's contributions: with ``z_t`` each term's output,
``g_t`` the vector-Jacobian product of term t with ``R / z`` (``z`` the rule's
denominator), the input's relevance is ``sum_t sign_t * input_t * g_t``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...relevance import Rule

__all__ = [
    "WEIGHTED",
    "Gate",
    "LayerRule",
    "Merged",
    "PassInPlace",
    "PassOn",
    "Proportional",
    "layer_relevance",
    "stabilize",
    "tensor_of",
]

#: The layers a rule can go on: their forward is torch's own, so it can be recomputed.
WEIGHTED: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


#: Denominators whose sign the rule fixes (z+'s, alpha-beta's), by group: one addition.
_SIGN_OF: dict[str, dict[int, float]] = {"zplus": {0: 1.0}, "alphabeta": {0: 1.0, 1: -1.0}}


def stabilize(z: torch.Tensor, epsilon: float, sign: float | None = None) -> torch.Tensor:
    """``z`` moved away from zero by ``epsilon`` with its own sign (+1 at zero), or with
    ``sign`` where the rule says every entry has it."""
    if sign is not None:
        return z + sign * epsilon
    return torch.where(z >= 0, z + epsilon, z - epsilon)


def tensor_of(module: nn.Module, name: str) -> torch.Tensor | None:
    """The module's parameter or buffer ``name``, detached; None where it has none."""
    value = getattr(module, name, None)
    return value.detach() if isinstance(value, torch.Tensor) else None


@dataclass
class Merged:
    """A weighted layer and the BatchNorm right after it, if one was merged (set in the
    forward, read in the backward)."""

    module: nn.Module
    rule: Rule
    batchnorm: nn.Module | None = None

    def weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The layer's weight and bias with the BatchNorm folded in (new tensors)."""
        weight, bias = tensor_of(self.module, "weight"), tensor_of(self.module, "bias")
        assert weight is not None
        bn = self.batchnorm
        if bn is None:
            return weight, bias
        mean, var = tensor_of(bn, "running_mean"), tensor_of(bn, "running_var")
        assert mean is not None and var is not None
        scale = torch.rsqrt(var + float(getattr(bn, "eps", 1e-5)))
        gain, shift = tensor_of(bn, "weight"), tensor_of(bn, "bias")
        if gain is not None:
            scale = scale * gain
        shift = -mean * scale if shift is None else shift - mean * scale
        index = (slice(None), *((None,) * (weight.ndim - 1)))
        merged_bias = shift if bias is None else bias * scale + shift
        return weight * scale[index], merged_bias

    def call(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """The layer's own forward with other weights (no hook runs)."""
        module = self.module
        if isinstance(module, nn.Linear):
            return F.linear(x, weight, bias)
        assert isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        return module._conv_forward(x, weight, bias)

    def vjp(self, x: torch.Tensor, weight: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``v`` sent back through the layer's linear map to inputs like ``x`` (the transpose
        convolution, without building a graph); autograd where the padding is not plain."""
        module = self.module
        if isinstance(module, nn.Linear):
            return v @ weight
        assert isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        if module.padding_mode == "zeros" and not isinstance(module.padding, str):
            return torch.ops.aten.convolution_backward(
                v, x, weight, None, module.stride, module.padding, module.dilation,
                False, [0] * (x.ndim - 2), module.groups, [True, False, False],
            )[0]  # fmt: skip
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(module._conv_forward(leaf, weight, None), leaf, v)
        return grad


def _terms(
    rule: Rule, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]], list[float], list[int]]:
    """The rule's terms (input, weight, bias), each term's sign in the sum, and which
    denominator group each belongs to (terms of one group share ``R / sum(group)``).

    After a ReLU no input is negative: the rules that split inputs by sign then keep
    only their positive-input terms (the others are zero and have no bias), which
    saves a convolution and its transpose per term.
    """

    def part(t: torch.Tensor | None, positive: bool) -> torch.Tensor | None:
        if t is None:
            return None
        return t.clamp(min=0) if positive else t.clamp(max=0)

    name = rule.name
    if name == "epsilon":
        return [(x, weight, bias)], [1.0], [0]
    if name == "flat":
        return [(torch.ones_like(x), torch.ones_like(weight), None)], [1.0], [0]
    if name == "wsquare":
        return [(torch.ones_like(x), weight * weight, None)], [1.0], [0]
    wp = weight.clamp(min=0)
    signed = name == "zbox" or bool(x.min() < 0)
    if name == "zplus" and not signed:  # the usual case after a ReLU: one term
        return [(x, wp, part(bias, True))], [1.0], [0]
    wn = weight.clamp(max=0)
    if name == "zbox":
        shape = (1, -1, *((1,) * (x.ndim - 2)))
        low = torch.as_tensor(rule.low, dtype=x.dtype, device=x.device).reshape(shape)
        high = torch.as_tensor(rule.high, dtype=x.dtype, device=x.device).reshape(shape)
        low, high = low.expand_as(x), high.expand_as(x)
        terms = [(x, weight, bias), (low, wp, part(bias, True)), (high, wn, part(bias, False))]
        return terms, [1.0, -1.0, -1.0], [0, 0, 0]
    xp = x.clamp(min=0) if signed else x
    xn = x.clamp(max=0) if signed else x  # without negative inputs its terms are dropped
    if name == "zplus":
        terms = [(xp, wp, part(bias, True)), (xn, wn, None)]
        signs, groups = [1.0, 1.0], [0, 0]
    elif name == "alphabeta":
        terms = [(xp, wp, part(bias, True)), (xn, wn, None)]
        terms += [(xp, wn, part(bias, False)), (xn, wp, None)]
        a, b = rule.alpha, rule.beta
        signs, groups = [a, a, -b, -b], [0, 0, 1, 1]
    elif name == "gamma":
        g = rule.gamma
        up, down = weight + g * wp, weight + g * wn
        up_b = None if bias is None else bias + g * bias.clamp(min=0)
        down_b = None if bias is None else bias + g * bias.clamp(max=0)
        terms = [(xp, up, up_b), (xn, down, None), (xp, down, down_b), (xn, up, None)]
        signs, groups = [1.0] * 4, [0, 0, 1, 1]
    else:
        raise ValueError(f"rule: {name!r} does not go on a layer with weights")
    if signed:
        return terms, signs, groups
    return terms[::2], signs[::2], groups[::2]  # the negative inputs' terms are the odd ones


def layer_relevance(layer: Merged, x: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """The relevance of the layer's inputs ``x`` given its outputs' ``relevance``."""
    rule = layer.rule
    weight, bias = layer.weights()
    terms, signs, groups = _terms(rule, x, weight, bias)
    with torch.no_grad():
        outputs = [layer.call(i, w, b) for i, w, b in terms]
        denominators: dict[int, torch.Tensor] = {}
        for out, group in zip(outputs, groups, strict=True):
            value = out
            if rule.name == "zbox" and group in denominators:
                value = -value  # z-box: x w - low w+ - high w-
            denominators[group] = denominators[group] + value if group in denominators else value
        known = _SIGN_OF.get(rule.name, {})
        scaled = {
            g: relevance / stabilize(z, rule.epsilon, known.get(g)) for g, z in denominators.items()
        }
        if rule.name == "gamma":  # only the outputs of the sign the term explains
            z = sum(outputs)  # (2 + gamma) (x w + b): its sign is z's
            scaled = {0: scaled[0] * (z > 0), 1: scaled[1] * (z < 0)}
        total: torch.Tensor | None = None
        for (i, w, _), sign, group in zip(terms, signs, groups, strict=True):
            part = layer.vjp(i, w, scaled[group])
            if rule.name not in ("flat", "wsquare"):  # those spread by the weights alone
                part = part.mul_(i)
            if sign != 1.0:
                part = part.mul_(sign)
            total = part if total is None else total.add_(part)
    assert total is not None
    return total


class LayerRule(torch.autograd.Function):
    """A weighted layer's output (already computed) whose backward applies its rule."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, layer: Merged, out: Sequence[torch.Tensor]) -> Any:
        ctx.save_for_backward(x)
        ctx.layer = layer
        return out[0]

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (x,) = ctx.saved_tensors
        return layer_relevance(ctx.layer, x, grads[0]), None, None


class PassOn(torch.autograd.Function):
    """An elementwise step's output whose backward passes relevance unchanged."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, out: Sequence[torch.Tensor]) -> Any:
        return out[0]

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grads[0], None


class PassInPlace(torch.autograd.Function):
    """An in-place elementwise step (``ReLU(inplace=True)``, ``x.relu_()``) done in place,
    whose backward passes relevance unchanged."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, step: Callable[[torch.Tensor], Any]) -> Any:
        step(x)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grads[0], None


class Proportional(torch.autograd.Function):
    """A weightless linear step (average pool, sum of tensors): each input gets its part
    of the output times the output's relevance (the *norm* rule)."""

    @staticmethod
    def forward(
        ctx: Any,
        step: Callable[..., torch.Tensor],
        epsilon: float,
        out: Sequence[torch.Tensor] | None,
        *inputs: torch.Tensor,
    ) -> Any:
        ctx.step, ctx.epsilon = step, epsilon
        if out is not None:
            ctx.save_for_backward(*inputs)
            return out[0]
        first = inputs[0]  # in place (``x += y``, ``x.add_(y)``): the first input becomes it
        before = first.clone()
        first.copy_(step(before, *inputs[1:]))
        ctx.mark_dirty(first)
        ctx.save_for_backward(before, *inputs[1:])
        return first

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> Any:
        inputs = [t.detach().requires_grad_(True) for t in ctx.saved_tensors]
        with torch.enable_grad():
            z = ctx.step(*inputs)
            scaled = grads[0] / stabilize(z.detach(), ctx.epsilon)
            parts = torch.autograd.grad(z, inputs, scaled)
        return (None, None, None, *(i.detach() * p for i, p in zip(inputs, parts, strict=True)))


class Gate(torch.autograd.Function):
    """``a * b`` of two input-dependent tensors: the one broadcast over the other (a
    squeeze-excite gate) gets no relevance and the other all; equal shapes share it."""

    @staticmethod
    def forward(
        ctx: Any, a: torch.Tensor, b: torch.Tensor, out: Sequence[torch.Tensor] | None
    ) -> Any:
        ctx.shapes = (a.shape, b.shape)
        if out is not None:
            return out[0]
        a.mul_(b)  # in place (``x *= g``, ``x.mul_(g)``)
        ctx.mark_dirty(a)
        return a

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[Any, Any, None]:
        (sa, sb), r = ctx.shapes, grads[0]
        if sa == sb:
            return r / 2, r / 2, None
        if sa.numel() >= sb.numel():
            return r.sum_to_size(sa), torch.zeros(sb, dtype=r.dtype, device=r.device), None
        return torch.zeros(sa, dtype=r.dtype, device=r.device), r.sum_to_size(sb), None
