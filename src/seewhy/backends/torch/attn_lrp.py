"""AttnLRP (Achtibat et al., ICML 2024) in one modified backward pass, through temporary hooks.

Relevance travels as gradient x input: the relevance of any tensor ``t`` is
``t * g`` where ``g`` is the modified gradient arriving at it, so each LRP rule
becomes a change of the gradient at a few places, and one
``torch.autograd.grad`` to the input gives the pixels' relevance
``x * dS/dx``. The paper's rules in that form:

* linear layers, the patch embedding, sums (residuals, position embeddings):
  the plain gradient (the epsilon rule at epsilon -> 0, biases absorbing their share);
* softmax: the plain gradient *is* the paper's softmax rule
  ``R_in = x * (R_out - s * sum(R_out))`` in gradient x input form;
* the products q.k^T and A.v (uniform rule): each factor gets half the
  relevance, so the gradient is halved at each factor; the scores' half passes
  the softmax to q and k, hence 1/4 at q and k and 1/2 at v; done as halves at
  q, k and the attention output A V, the same, and the attention itself is left
  to the model's own kernel (SDPA or eager);
* layer norm (identity rule on the normalisation): the standard deviation is
  held constant in the backward, so the centring and the affine map carry the
  relevance;
* GELU and other element-wise activations (identity rule): ``g_in = g_out * y / x``;
* the product of two computed tensors (a SwiGLU gate): the uniform rule, as above;
* L2 normalisations in the forward or the target's score (a CLIP embedding's unit
  length, ``F.normalize``, ``Tensor.norm``): the identity rule too, the norm held
  constant (else a cosine score, invariant to the embedding's length, would send
  no relevance at all into the tower).

Every change is a hook on the model's twin (:mod:`.twin`) that hands back a
tensor of the same value whose backward differs; all are removed on exit, also
when the model raises, so the user's model keeps no trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..._kit.warn import warn_user
from ...errors import UnsupportedModel
from ..relevance import RelevanceCapture, RuleSet
from .attention import attention_layers, output_sink, qkv_sources, split_heads
from .structure import scored_call, this_thread_only, this_thread_only_any
from .twin import current_model

__all__ = ["ATTNLRP_KINDS", "AttnLRPRules", "attn_lrp_relevance", "attn_lrp_rules"]

#: The kinds of operation AttnLRP rules, and the rule this backend carries out for each.
ATTNLRP_KINDS = {
    "softmax": "softmax",
    "matmul": "uniform",
    "layernorm": "pass",
    "activation": "pass",
}

_Handles = list[torch.utils.hooks.RemovableHandle]

#: The share of the gradient each factor of the attention keeps (the uniform rule, twice for
#: q and k: once at q.k^T, once at A.v through the softmax), where q, k, v can be seen.
_SHARE = {"q": 0.25, "k": 0.25, "v": 0.5}
_IDENTITY_EPSILON = 1e-10  # lxt's stabiliser of y / x in the identity rule

#: Element-wise activations by class; Hugging Face's and open_clip's by name (their modules).
_ACTIVATIONS = (nn.GELU, nn.SiLU, nn.Mish, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Tanh)
_ACTIVATION_NAMES = ("GELU", "SiLU", "Swish", "QuickGELU")


class _ScaledGradient(torch.autograd.Function):
    """The value unchanged; the gradient multiplied by ``factor`` (a number or a tensor)."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, factor: Any) -> torch.Tensor:
        ctx.factor = factor
        return t.view_as(t)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grads[0] * ctx.factor, None


class _IdentityRule(torch.autograd.Function):
    """``y`` forward; the identity rule backward: relevance ``y * g`` lands on ``x`` whole.

    ``y / (x + 1e-10)`` is lxt's stabiliser, kept so the two agree to the last digit;
    two element-wise passes, as cheap as the activation's own backward.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(y / (x + _IDENTITY_EPSILON))
        return y.view_as(y)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None]:
        (ratio,) = ctx.saved_tensors
        return grads[0] * ratio, None


class _NormIdentity(torch.autograd.Function):
    """A layer norm's output forward; backward with its standard deviation held constant.

    With ``s = weight / std`` the map is ``x -> s * (x - mean(x)) + bias``, linear,
    so the gradient is the centring of ``s * g`` (the centring is symmetric).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, out: torch.Tensor, module: nn.LayerNorm) -> torch.Tensor:
        dims = tuple(range(-len(module.normalized_shape), 0))
        with torch.no_grad():  # torch's fused kernel hands back 1 / std (var_mean: 4x slower)
            shape = list(module.normalized_shape)
            scale = torch.native_layer_norm(x, shape, None, None, module.eps)[2]
            if module.weight is not None:
                scale = scale * module.weight
        ctx.dims = dims
        ctx.save_for_backward(scale)
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (scale,) = ctx.saved_tensors
        scaled = grads[0] * scale
        return scaled - scaled.mean(dim=ctx.dims, keepdim=True), None, None


_NORMS = {torch.norm, torch.Tensor.norm, torch.linalg.vector_norm, torch.linalg.norm}
_PRODUCTS = {torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__}


def _computed(t: Any) -> bool:
    """A tensor the forward computed with a graph (not a weight, not a constant)."""
    return isinstance(t, torch.Tensor) and t.requires_grad and t.grad_fn is not None


class _CallRules(TorchFunctionMode):
    """The rules of operations that have no module of their own, while the forward runs.

    * L2 normalisations (identity rule): every norm computed inside is held constant in
      the backward (``F.normalize`` is caught whole, as its own norm is not seen);
    * the product of two computed tensors (a SwiGLU gate, ``act(x W_g) * x W_x``): the
      uniform rule, each factor half, as the attention's products.
    """

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.normalize and isinstance(args[0], torch.Tensor):
            named = dict(zip(("p", "dim", "eps"), args[1:], strict=False)) | kwargs
            x, p, dim = args[0], float(named.get("p", 2.0)), int(named.get("dim", 1))
            norm = x.detach().norm(p, dim, keepdim=True).clamp_min(float(named.get("eps", 1e-12)))
            return x / norm
        out = func(*args, **kwargs)
        if func in _NORMS and isinstance(out, torch.Tensor):
            return out.detach()
        two = len(args) == 2 and args[0] is not args[1]  # a square is a norm's part: plain
        if func in _PRODUCTS and two and all(_computed(t) for t in args):
            return _ScaledGradient.apply(out, 0.5)
        return out


@dataclass
class AttnLRPRules:
    """What the hooks did in one pass: each layer's rule, by the user's layer name."""

    rules: dict[str, str] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # layers whose hook ran
    attention: list[str] = field(default_factory=list)  # the q/k/O-hooked attention layers
    fired: set[tuple[str, str]] = field(default_factory=set)  # (layer, "q"/"k"/"o") seen

    def check(self) -> None:
        """Refuses a pass in which an attention layer ran without handing out q, k or O."""
        for name in self.attention:
            fired = {slot for layer, slot in self.fired if layer == name}
            missing = [slot for slot in ("q", "k", "o") if slot not in fired]
            if name in self.seen and missing:
                raise UnsupportedModel(
                    f"attnlrp: {name!r} computed its {'/'.join(missing)} without the layer "
                    "seewhy hooks, so AttnLRP's rules cannot reach it; use gradient-x-input"
                )


def _is_activation(module: nn.Module) -> bool:
    if isinstance(module, _ACTIVATIONS):
        return True
    name = type(module).__name__
    bare = next(module.children(), None) is None and next(module.parameters(), None) is None
    hf = type(module).__module__.startswith("transformers.activations")
    return bare and (hf or any(part in name for part in _ACTIVATION_NAMES))


def _halves(parts: list[tuple[str, int | None]], out: torch.Tensor) -> Any:
    """0.5, or per feature of a fused qkv output: 0.5 on the thirds of q and k, 1 on v's."""
    if all(index is None for _, index in parts):
        return 0.5 ** len(parts)
    factor = torch.ones(3, out.shape[-1] // 3, dtype=out.dtype, device=out.device)
    for _, index in parts:
        factor[index] *= 0.5
    return factor.reshape(-1)


def _hook_projections(name: str, module: nn.Module, handles: _Handles, done: AttnLRPRules) -> None:
    """Halve the gradient at q and k (where :func:`.attention.qkv_sources` finds them) and
    at the attention output O = A V (the input of :func:`.attention.output_sink`).

    The same as q/4, k/4, v/2: O's half reaches v and, through A and the softmax,
    q.k^T, whose half again goes to each of q and k. Nothing at v is needed, so a
    layer that computes v without its module (timm's EVA adds its q/v biases through
    ``F.linear`` on ``qkv.weight``) is served too; q, k and O must each be seen.
    """
    if getattr(module, "gate", None) is not None:
        raise UnsupportedModel(
            f"attnlrp: {name!r} gates its attention output, which AttnLRP's rules do not "
            "cover; use gradient-x-input or generic-attention on this model"
        )
    sink = output_sink(module)
    places = qkv_sources(module, values=False)
    if sink is None or any(source is None for source, _, _ in places):
        raise UnsupportedModel(
            f"attnlrp: cannot find where {name!r} hands out its queries, keys or output; "
            "use gradient-x-input on this model"
        )
    grouped: dict[int, tuple[nn.Module, list[tuple[str, int | None]]]] = {}
    for source, slot, index in places:
        assert source is not None  # checked above
        grouped.setdefault(id(source), (source, []))[1].append((slot, index))
    for source, parts in grouped.values():

        def half(mod: nn.Module, args: Any, out: Any, parts: Any = parts) -> Any:
            done.fired.update((name, slot) for slot, _ in parts)
            return _ScaledGradient.apply(out, _halves(parts, out))

        handles.append(source.register_forward_hook(this_thread_only(half)))

    def half_output(mod: nn.Module, args: Any) -> Any:
        done.fired.add((name, "o"))
        return (_ScaledGradient.apply(args[0], 0.5), *args[1:])

    def ran(mod: nn.Module, args: Any) -> None:
        done.seen.add(name)

    handles.append(sink.register_forward_pre_hook(this_thread_only_any(half_output)))
    handles.append(module.register_forward_pre_hook(this_thread_only_any(ran)))
    done.rules[name] = "uniform (q.k, A.v); softmax: gradient x input"
    done.attention.append(name)


def _hook_multihead(
    name: str, module: nn.MultiheadAttention, handles: _Handles, done: AttnLRPRules
) -> None:
    """``nn.MultiheadAttention`` (torchvision): its output recomputed from its input and
    weights with q, k, v's gradients scaled (its fused kernel hides them)."""
    if not module._qkv_same_embed_dim or module.in_proj_weight is None:
        raise UnsupportedModel(f"attnlrp: {name!r} has separate q/k/v sizes; use gradient-x-input")

    def redo(mod: nn.Module, args: Any, kwargs: Any, output: Any) -> Any:
        query = args[0] if args else kwargs["query"]
        key = args[1] if len(args) > 1 else kwargs.get("key", query)
        masks = (kwargs.get("attn_mask"), kwargs.get("key_padding_mask"), *args[3:4])
        if key is not query or any(torch.is_tensor(m) for m in masks):
            raise UnsupportedModel(
                f"attnlrp: {name!r} is cross-attention or masked, which seewhy's AttnLRP "
                "does not follow; use gradient-x-input on this model"
            )
        x = query if module.batch_first else query.transpose(0, 1)
        parts = F.linear(x, module.in_proj_weight, module.in_proj_bias).chunk(3, dim=-1)
        heads = [
            _ScaledGradient.apply(split_heads(p, module.num_heads), _SHARE[slot])
            for p, slot in zip(parts, "qkv", strict=True)
        ]
        o = F.scaled_dot_product_attention(*heads).transpose(1, 2).flatten(2)
        out = F.linear(o, module.out_proj.weight, module.out_proj.bias)
        out = out if module.batch_first else out.transpose(0, 1)
        done.seen.add(name)
        rest = output[1] if isinstance(output, tuple) else None
        return (out, rest) if isinstance(output, tuple) else out

    handles.append(module.register_forward_hook(this_thread_only_any(redo), with_kwargs=True))
    done.rules[name] = "uniform (q.k, A.v); softmax: gradient x input"


def _epsilon(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The epsilon rule at a linear layer's output: the gradient times z / (z + eps sign z)."""
    sign = torch.where(z >= 0, 1.0, -1.0).to(z.dtype)
    return _ScaledGradient.apply(z, (z / (z + epsilon * sign)).detach())


def _hook_elementwise(
    name: str, module: nn.Module, handles: _Handles, done: AttnLRPRules, epsilon: float
) -> None:
    """Layer norms and activations: the same output, the identity rule's backward; with
    ``epsilon`` > 0, linear layers and convolutions: the epsilon rule."""
    if epsilon > 0 and isinstance(module, (nn.Linear, nn.Conv2d)):

        def stabilised(mod: nn.Module, args: Any, out: Any) -> Any:
            done.seen.add(name)
            return _epsilon(out, epsilon)

        handles.append(module.register_forward_hook(this_thread_only(stabilised)))
        done.rules[name] = f"epsilon ({epsilon:g})"
    elif isinstance(module, nn.LayerNorm) and _channels_first(module):
        raise UnsupportedModel(
            f"attnlrp: {name!r} normalises channels first (a SAM-style neck), which AttnLRP's "
            "norm rule does not follow; use gradcam or gradient-x-input on this model"
        )
    elif isinstance(module, nn.LayerNorm):

        def norm(mod: nn.Module, args: Any, out: Any) -> Any:
            done.seen.add(name)
            return _NormIdentity.apply(args[0], out.detach(), module)

        handles.append(module.register_forward_hook(this_thread_only(norm)))
        done.rules[name] = "identity (normalisation)"
    elif _is_activation(module):

        def act(mod: nn.Module, args: Any, out: Any) -> Any:
            done.seen.add(name)
            return _IdentityRule.apply(args[0], out.detach())

        handles.append(module.register_forward_hook(this_thread_only(act)))
        done.rules[name] = "identity"


@contextlib.contextmanager
def attn_lrp_rules(net: nn.Module, epsilon: float = 0.0) -> Iterator[AttnLRPRules]:
    """AttnLRP's rules on ``net`` for the forwards run inside; every hook gone on exit.

    ``epsilon`` is the linear layers' epsilon rule's (0: their plain gradient, as ``lxt``).

    Refuses, in one line, a model with no self-attention layer seewhy recognises
    (the same layers the attention methods read, :func:`.attention.attention_layers`).
    """
    attention = attention_layers(net)
    if not attention:
        raise UnsupportedModel(
            "attnlrp: the model has no self-attention layer seewhy can read (timm, torchvision, "
            "Hugging Face ViTs, CLIP image towers); for a CNN use lrp"
        )
    done, handles = AttnLRPRules(), list[torch.utils.hooks.RemovableHandle]()
    try:
        for name, module in attention:
            if isinstance(module, nn.MultiheadAttention):
                _hook_multihead(name, module, handles, done)
            else:
                _hook_projections(name, module, handles, done)
        for name, module in net.named_modules():
            _hook_elementwise(name, module, handles, done, epsilon)
        yield done
    finally:
        for handle in handles:
            handle.remove()


def _epsilon_of(rules: RuleSet) -> float:
    """The linear layers' epsilon, once ``rules`` is known to be AttnLRP's; else a refusal."""
    kinds = {kind: rule.name for kind, rule in rules.kinds.items()}
    layers = {rules.linear.name, rules.convolution.name}
    same = rules.linear.epsilon == rules.convolution.epsilon
    if kinds != ATTNLRP_KINDS or layers != {"epsilon"} or not same or rules.layers:
        raise UnsupportedModel(
            f"relevance: the torch backend's transformer rules are AttnLRP's ({ATTNLRP_KINDS}, "
            "one epsilon rule on linear layers); got another set: use method attnlrp"
        )
    return float(rules.linear.epsilon)


def attn_lrp_relevance(
    passes: Any, x: np.ndarray, *, targets: np.ndarray | None, rules: RuleSet, score: Any
) -> RelevanceCapture:
    """One forward with AttnLRP's rules and one backward to the input, on the running twin.

    ``passes`` is the torch backend inside its ``on_twin`` pass (its ``_scores``,
    ``_targets`` and ``_target_scores`` pick the target's score as every pass does);
    ``rules`` must be AttnLRP's (:data:`ATTNLRP_KINDS`), as ``methods/attnlrp.py`` builds it.
    """
    epsilon = _epsilon_of(rules)
    net = current_model(passes.model)
    inputs = passes._to_tensor(x).requires_grad_(True)
    calls = _CallRules()
    with attn_lrp_rules(net, epsilon) as done, calls, torch.enable_grad():
        logits = passes._scores(scored_call(net, inputs))
        t = passes._targets(targets, logits)
        chosen = passes._target_scores(logits, t, score)
        done.check()
        (grad,) = torch.autograd.grad(chosen.sum(), inputs)
    if not any(rule == "identity" and name in done.seen for name, rule in done.rules.items()):
        warn_user(
            "attnlrp: no activation module (GELU) was seen in the model; its MLPs' "
            "non-linearities kept their plain gradient"
        )
    relevance = (inputs.detach() * grad).permute(0, 2, 3, 1)
    return RelevanceCapture(
        logits=logits.detach().float().cpu().numpy(),
        targets=t.cpu().numpy(),
        relevance=relevance.float().cpu().numpy(),
        start=chosen.detach().double().cpu().numpy(),
        rules={name: rule for name, rule in done.rules.items() if name in done.seen},
    )


def _channels_first(norm: nn.Module) -> bool:
    """A layer norm over the channels of (N, C, H, W) maps (Hugging Face SAM's neck)."""
    return getattr(norm, "data_format", "") == "channels_first"
