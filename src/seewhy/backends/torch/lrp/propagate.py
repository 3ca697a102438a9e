"""The LRP rules put on a forward pass of the model's twin, and taken off after.

Why this design: zennit puts its rules on the user's own modules as hooks and
merges BatchNorm into the convolutions by writing their weights (undone
afterwards), and swaps ResNet blocks' ``forward`` to see the residual sums. Here
nothing of the user's is touched: the pass runs on the model's private twin
(:mod:`..twin`), whose hook dicts are its own; each weighted layer's output is
remade by :class:`.rules.LayerRule` (the forward value unchanged, the backward
the layer's rule, with the BatchNorm after it folded in from copies of its
statistics); and the weightless steps that have no module (a residual ``+``, a
squeeze-excite ``*``, timm's ``x.mean((2, 3))``, ``F.silu``) are caught by a
torch function mode that lives only inside the forward. Hooks and mode leave in
``finally``, also when the model raises.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ....errors import UnsupportedModel
from ...relevance import Rule, RuleSet
from ..structure import this_thread_only, this_thread_only_any
from .rules import (
    WEIGHTED,
    Gate,
    LayerRule,
    Merged,
    PassInPlace,
    PassOn,
    Proportional,
    tensor_of,
)

__all__ = ["Record", "rules_on"]

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class Record:
    """What the rules did in one pass: each layer's rule, the merges, the layers left out."""

    rules: dict[str, str] = field(default_factory=dict)
    merged: list[tuple[str, str]] = field(default_factory=list)
    unruled: list[str] = field(default_factory=list)
    first_seen: bool = False
    # id of a weighted layer's output -> (that output, its layer): a BatchNorm reading it merges
    made: dict[int, tuple[torch.Tensor, Merged, str]] = field(default_factory=dict)


def _own_forward(module: nn.Module) -> bool:
    """A weighted layer whose forward is torch's own (so the rule can recompute it)."""
    kind = next((k for k in WEIGHTED if isinstance(module, k)), None)
    return kind is not None and type(module).forward is kind.forward


def _rule_for(name: str, module: nn.Module, rules: RuleSet, record: Record) -> Rule:
    first = not record.first_seen
    record.first_seen = True
    if name in rules.layers:
        return rules.layers[name]
    if first and rules.first is not None:
        return rules.first
    return rules.linear if isinstance(module, nn.Linear) else rules.convolution


def _mergeable(bn: nn.Module, made: Merged) -> bool:
    """A BatchNorm in eval mode that computes ``x * scale + shift`` from its running
    statistics, over the channels of the layer before it, not merged yet."""
    mean, var = tensor_of(bn, "running_mean"), tensor_of(bn, "running_var")
    weight = tensor_of(made.module, "weight")
    if mean is None or var is None or weight is None or bn.training:
        return False
    return made.batchnorm is None and mean.shape[0] == weight.shape[0]


@contextlib.contextmanager
def rules_on(net: nn.Module, rules: RuleSet) -> Iterator[Record]:
    """The forward passes inside carry ``rules`` (on ``net``, a twin); the record fills."""
    if rules.kinds:
        raise UnsupportedModel(
            f"lrp: the torch backend has no rule for {', '.join(sorted(rules.kinds))}; "
            "use the layer rules of a CNN composite"
        )
    record = Record()
    handles: list[Any] = []
    inputs: dict[int, list[torch.Tensor]] = {}

    def keep_input(module: nn.Module, args: Any) -> Any:
        if not args or not isinstance(args[0], torch.Tensor):
            return None
        inputs.setdefault(id(module), []).append(args[0])
        return (args[0].detach(), *args[1:])  # the layer's own graph is never needed

    def weighted(name: str, module: nn.Module, args: Any, out: Any) -> Any:
        stack = inputs.get(id(module))
        if not stack or not isinstance(out, torch.Tensor):
            return None
        x = stack.pop()
        layer = Merged(module, _rule_for(name, module, rules, record))
        record.rules[name] = layer.rule.name
        made = LayerRule.apply(x, layer, [out.detach()])
        record.made[id(made)] = (made, layer, name)
        return made

    def batchnorm(name: str, module: nn.Module, args: Any, out: Any) -> Any:
        stack = inputs.get(id(module))
        if not stack or not isinstance(out, torch.Tensor):
            return None
        x = stack.pop()
        found = record.made.get(id(x))
        if rules.canonize and found is not None and found[0] is x and _mergeable(module, found[1]):
            found[1].batchnorm = module
            record.merged.append((found[2], name))
        record.rules[name] = "pass"
        return PassOn.apply(x, [out.detach()])

    def unruled(name: str, module: nn.Module, args: Any, out: Any) -> None:
        said = name or f"the model's own {type(module).__name__}"
        if said not in record.unruled:
            record.unruled.append(said)

    try:
        for name, module in net.named_modules():
            if _own_forward(module) or isinstance(module, _BATCHNORMS):
                step = weighted if _own_forward(module) else batchnorm
                hook = this_thread_only(functools.partial(step, name))
                handles.append(module.register_forward_pre_hook(this_thread_only_any(keep_input)))
                handles.append(module.register_forward_hook(hook))
            elif any(True for _ in module.parameters(recurse=False)):
                handles.append(
                    module.register_forward_hook(this_thread_only(functools.partial(unruled, name)))
                )
        with _WeightlessRules(rules):
            yield record
    finally:
        for handle in handles:
            handle.remove()
        record.made.clear()


def _depends(t: Any) -> bool:
    """A tensor computed from the input (not a parameter, buffer or constant)."""
    return isinstance(t, torch.Tensor) and t.grad_fn is not None


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a + b


def _spatial_mean(dims: tuple[int, ...], keep: bool, t: torch.Tensor) -> torch.Tensor:
    return t.mean(dims, keepdim=keep)


T = torch.Tensor
_ADDS = {torch.add, T.add, T.__add__, T.__radd__, T.__iadd__, T.add_}
_MULS = {torch.mul, T.mul, T.__mul__, T.__rmul__, T.__imul__, T.mul_}
_ACTIVATIONS = {
    F.relu, torch.relu, T.relu, torch.relu_, T.relu_, F.silu, F.gelu, torch._C._nn.gelu,
    F.hardswish, F.mish, F.elu, F.leaky_relu, F.softplus, torch._C._nn.softplus, F.hardtanh,
    F.relu6, torch._C._nn.hardtanh, torch._C._nn.hardtanh_, F.hardsigmoid, torch.sigmoid,
    T.sigmoid, F.sigmoid, torch.tanh, T.tanh, F.tanh,
}  # fmt: skip
_IN_PLACE = {torch.relu_, T.relu_, torch._C._nn.hardtanh_, T.__iadd__, T.add_, T.__imul__, T.mul_}
_POOLS = {
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, torch._C._nn.avg_pool2d,
    torch._C._nn.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
}  # fmt: skip
_MEANS = {torch.mean, T.mean}
_SUMS = {torch.sum, T.sum}  # a target summing logits (MultiLabel) shares like a "+"


class _WeightlessRules(TorchFunctionMode):
    """The rules of steps without a module of their own, while the forward runs."""

    def __init__(self, rules: RuleSet) -> None:
        super().__init__()
        self.rules = rules

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        ruled = self._ruled(func, args, kwargs)
        return func(*args, **kwargs) if ruled is None else ruled()

    def _ruled(
        self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Callable[[], Any] | None:
        """The call with its rule, or None for a call left as it is."""
        if not args or not _depends(args[0]):
            return None
        first = args[0]
        in_place = func in _IN_PLACE
        if func in _ADDS and len(args) == 2 and not kwargs and _depends(args[1]):
            epsilon, other = self.rules.sums.epsilon, args[1]
            out = None if in_place else [first + other]
            return lambda: Proportional.apply(_add, epsilon, out, first, other)
        if func in _MULS and len(args) == 2 and not kwargs and _depends(args[1]):
            out = None if in_place else [first * args[1]]
            return lambda: Gate.apply(first, args[1], out)
        if func in _ACTIVATIONS:
            rest = args[1:]
            if in_place or kwargs.get("inplace") is True or any(a is True for a in rest):
                return lambda: PassInPlace.apply(first, lambda t: func(t, *rest, **kwargs))
            return lambda: PassOn.apply(first, [func(first.detach(), *rest, **kwargs)])
        if func in _POOLS:
            rest = args[1:]
            return self._proportional(lambda t: func(t, *rest, **kwargs), first)
        if func in _SUMS:
            rest = args[1:]
            epsilon = self.rules.sums.epsilon

            def step(t: torch.Tensor) -> torch.Tensor:
                return func(t, *rest, **kwargs)

            return lambda: Proportional.apply(step, epsilon, [step(first.detach())], first)
        if func in _MEANS and first.ndim == 4:
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            keep = bool(args[2] if len(args) > 2 else kwargs.get("keepdim", False))
            if isinstance(dims, (tuple, list)) and sorted(d % 4 for d in dims) == [2, 3]:
                return self._proportional(functools.partial(_spatial_mean, (2, 3), keep), first)
        return None

    def _proportional(self, step: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Any:
        epsilon = self.rules.pooling.epsilon
        return lambda: Proportional.apply(step, epsilon, [step(x.detach())], x)
