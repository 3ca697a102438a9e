r"""Layer-wise relevance propagation (LRP) for CNNs, with zennit's composites by name.

The target's score is sent back layer by layer, each layer sharing what
reaches its outputs among its inputs by a rule; the pixels' relevance sums to
the score where every rule conserves it::

    >>> seewhy.explain(resnet, "cat.jpg", "lrp")                       # epsilon-plus-flat
    >>> seewhy.explain(vgg, "cat.jpg", "lrp", composite="epsilon-gamma-box")
    >>> seewhy.explain(net, "cat.jpg", "lrp", composite="epsilon", epsilon=0.25)

The pass is the backend's (:class:`~seewhy.backends.relevance.Relevance`):
one forward and one modified backward, the model untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._kit.checks import bad_argument, finite_float, flag, one_of
from .._kit.warn import warn_user
from ..backends.capabilities import Predicts
from ..backends.relevance import RULES, Relevance, Rule, RuleSet
from ..errors import InvalidInput, UnsupportedModel
from ..preprocess import Preprocess
from ..registry import register
from .base import Context
from .gradients import REDUCTIONS, PixelAttribution

__all__ = ["COMPOSITES", "LRP", "composite_rules"]

#: zennit's composites (first layer, convolutions, dense layers), by their names here.
COMPOSITES: dict[str, tuple[str | None, str, str]] = {
    "epsilon-plus-flat": ("flat", "zplus", "epsilon"),
    "epsilon-plus": (None, "zplus", "epsilon"),
    "epsilon-gamma-box": ("zbox", "gamma", "epsilon"),
    "epsilon-alpha2-beta1-flat": ("flat", "alphabeta", "epsilon"),
    "epsilon-alpha2-beta1": (None, "alphabeta", "epsilon"),
}
#: One rule on every weighted layer: the rule's own name is a composite too.
UNIFORM = ("epsilon", "zplus", "gamma", "alphabeta", "flat", "wsquare")
_LAYER_RULES = tuple(r for r in RULES if r not in ("norm", "pass"))


def composite_rules(
    composite: str,
    *,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    alpha: float = 2.0,
    low: tuple[float, ...] = (0.0,),
    high: tuple[float, ...] = (1.0,),
    layer_rules: Mapping[str, str] | None = None,
    canonize: bool = True,
    stabilizer: float = 1e-6,
) -> RuleSet:
    """The :class:`~seewhy.backends.relevance.RuleSet` of a composite's name.

    Parameters
    ----------
    composite : str
        A key of :data:`COMPOSITES` or one of :data:`UNIFORM`.
    epsilon : float
        The epsilon rule's epsilon.
    gamma : float
        The gamma rule's factor.
    alpha : float
        The alpha-beta rule's alpha (beta is ``alpha - 1``); the composites named
        ``alpha2-beta1`` use 2.
    low, high : tuple of float
        The z-box rule's bounds per input channel.
    layer_rules : Mapping, optional
        Rule names by layer name, before the composite's.
    canonize : bool
        Merge BatchNorm into the layer before it.
    stabilizer : float
        What keeps every other rule's denominators (and those of pools and sums) off zero
        (zennit's 1e-6).

    Returns
    -------
    RuleSet
        What goes on which layer.
    """

    def rule(name: str, a: float = alpha) -> Rule:
        if name == "epsilon":
            return Rule("epsilon", epsilon=epsilon)
        return Rule(name, epsilon=stabilizer, gamma=gamma, alpha=a, beta=a - 1, low=low, high=high)

    first, conv, dense = COMPOSITES.get(composite, (None, composite, composite))
    return RuleSet(
        name=composite,
        convolution=rule(conv, 2.0 if "alpha2-beta1" in composite else alpha),
        linear=rule(dense),
        first=None if first is None else rule(first),
        layers={name: rule(r) for name, r in (layer_rules or {}).items()},
        pooling=Rule("norm", epsilon=stabilizer),
        sums=Rule("norm", epsilon=stabilizer),
        canonize=canonize,
    )


@register("lrp")
class LRP(PixelAttribution):
    r"""Layer-wise relevance propagation (Bach et al., 2015; Montavon et al., 2019).

    For a layer :math:`z_k = \sum_j x_j w_{jk} + b_k` the relevance :math:`R_k`
    of its outputs goes to its inputs by the layer's rule; the epsilon rule is

    .. math::

        R_j = \sum_k \frac{x_j w_{jk}}{z_k + \epsilon\,\mathrm{sign}(z_k)} R_k

    and gamma, z+, alpha-beta, flat, w-square and z-box change which
    contributions count (see :class:`~seewhy.backends.relevance.Rule`). The pass
    starts from the target's score on its column. The map is the relevance
    summed over the colour channels, signed (``panel(i, signed=True)`` draws it
    in a diverging colormap); ``extras["attributions"]`` holds it per channel,
    ``extras["relevance_start"]`` the score each image started from.

    A *composite* says which rule goes where, as zennit names them:
    ``"epsilon-plus-flat"`` (the default: flat on the first layer, z+ on
    convolutions, epsilon on dense layers; the practice Kohlbrenner et al., 2020
    found most faithful and readable on CNNs, and it needs no input bounds),
    ``"epsilon-plus"``, ``"epsilon-gamma-box"`` (z-box on the first convolution
    with ``low``/``high``, gamma on the others), ``"epsilon-alpha2-beta1-flat"``,
    ``"epsilon-alpha2-beta1"``, or one rule's name for every layer
    (``"epsilon"``, ``"zplus"``, ``"gamma"``, ``"alphabeta"``, ``"flat"``,
    ``"wsquare"``). Average pools and the residual sums share relevance in
    proportion to their inputs; activations pass it on; a BatchNorm after a
    convolution is merged into it for the rules (``canonize``), as zennit's
    canonizers do, without writing a weight. Layers no rule covers (LayerNorm,
    GroupNorm, a convolution with a forward of its own) pass their gradient,
    and a warning names them.

    Parameters
    ----------
    composite : str
        epsilon-plus-flat, epsilon-plus, epsilon-gamma-box, epsilon-alpha2-beta1(-flat), or a rule.
        One of zennit's composites above, or one rule's name for every layer: epsilon, zplus,
        gamma, alphabeta, flat, wsquare.
    epsilon : float
        The epsilon rule's epsilon (zennit's 1e-6); larger keeps only the strongest evidence.
    gamma : float
        The gamma rule's boost of positive weights.
    alpha : float
        The alpha-beta rule's alpha (beta = alpha - 1) where a rule name asks for it.
    low : float, tuple of float or None
        The z-box rule's lowest input value per channel; None: what pixel 0 becomes.
        In the model's input space, after preprocessing (None reads the preprocessing).
    high : float, tuple of float or None
        The z-box rule's highest input value per channel; None: what pixel 255 becomes.
    layer_rules : dict or None
        Rule names by layer name (``{"features.0": "zbox"}``), before the composite's.
    canonize : bool
        Merge each BatchNorm into the convolution before it.
    stabilizer : float
        Added to every denominator but the epsilon rule's (zennit's 1e-6; pools, sums too).
        With its denominator's sign; smaller conserves relevance more exactly.
    reduce : str
        How the channels' relevance becomes the map: ``"sum"`` (signed) by default.

    Examples
    --------
    >>> e = seewhy.explain(model, "cat.jpg", "lrp", composite="epsilon-gamma-box")
    >>> e.panel(0, signed=True)
    """

    requires = frozenset({Predicts, Relevance})

    def __init__(
        self,
        *,
        composite: str = "epsilon-plus-flat",
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        alpha: float = 2.0,
        low: float | tuple[float, ...] | None = None,
        high: float | tuple[float, ...] | None = None,
        layer_rules: Mapping[str, str] | None = None,
        canonize: bool = True,
        stabilizer: float = 1e-6,
        reduce: str = "sum",
    ) -> None:
        where = self.name
        self.reduce = one_of(reduce, REDUCTIONS, "reduce", where=where)
        self.composite = one_of(composite, (*COMPOSITES, *UNIFORM), "composite", where=where)
        self.epsilon = finite_float(epsilon, "epsilon", where=where, minimum=0.0)
        self.gamma = finite_float(gamma, "gamma", where=where, minimum=0.0)
        self.alpha = finite_float(alpha, "alpha", where=where, minimum=1.0)
        if "alpha2-beta1" in self.composite and self.alpha != 2.0:
            raise InvalidInput(
                f"{where}: composite {self.composite!r} fixes alpha=2; for alpha={self.alpha:g} "
                "use composite='alphabeta'"
            )
        self.low = _bounds(low, "low", where)
        self.high = _bounds(high, "high", where)
        self.layer_rules = _layer_rules(layer_rules, where)
        self.canonize = flag(canonize, "canonize", where=where)
        self.stabilizer = finite_float(stabilizer, "stabilizer", where=where, minimum=0.0)

    def attribute(
        self, ctx: Context
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        backend = ctx.backend
        if not isinstance(backend, Relevance):  # pragma: no cover - require() refused it
            raise UnsupportedModel(f"{self.name}: the {backend.framework} backend cannot")
        low, high = self._box(ctx)
        rules = composite_rules(
            self.composite,
            epsilon=self.epsilon,
            gamma=self.gamma,
            alpha=self.alpha,
            low=low,
            high=high,
            layer_rules=self.layer_rules,
            canonize=self.canonize,
            stabilizer=self.stabilizer,
        )
        cap = backend.relevance(ctx.inputs, targets=ctx.targets, rules=rules, score=ctx.score)
        missing = sorted(set(self.layer_rules or {}) - set(cap.rules))
        if missing:
            raise InvalidInput(
                f"{self.name}: layer_rules names {', '.join(map(repr, missing))}, which no rule "
                f"went on (not a convolution or dense layer that ran); layers ruled: "
                f"{', '.join(list(cap.rules)[:8])}"
            )
        if cap.unruled:
            warn_user(
                f"{self.name}: no LRP rule for {len(cap.unruled)} layer(s) with weights "
                f"({', '.join(cap.unruled[:4])}); relevance passed their gradient"
            )
        if ctx.progress is not None:
            ctx.progress(len(ctx.inputs))
        return cap.relevance, cap.logits, cap.targets, {"relevance_start": cap.start}

    def chosen_settings(self, ctx: Context) -> dict[str, Any]:
        """The z-box bounds used, where the composite has a z-box layer."""
        if not self._uses_box():
            return {}
        low, high = self._box(ctx, quiet=True)
        return {"low": low, "high": high}

    def _uses_box(self) -> bool:
        firsts = {COMPOSITES.get(self.composite, (None,))[0]}
        return "zbox" in firsts | set((self.layer_rules or {}).values())

    def _box(
        self, ctx: Context, *, quiet: bool = False
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The z-box bounds: the caller's, else what the preprocessing makes of 0 and 255."""
        low, high = self.low, self.high
        if (low is not None and high is not None) or not self._uses_box():
            return low or (0.0,), high or (1.0,)
        pre = ctx.preprocess
        if isinstance(pre, Preprocess):
            mean, std = np.asarray(pre.mean, np.float64), np.asarray(pre.std, np.float64)
            found_low = tuple(float(v) for v in (0.0 - mean) / std)
            found_high = tuple(float(v) for v in (255.0 * pre.scale - mean) / std)
        else:
            channels = ctx.inputs.reshape(-1, ctx.inputs.shape[-1])
            found_low = tuple(float(v) for v in channels.min(axis=0))
            found_high = tuple(float(v) for v in channels.max(axis=0))
            if not quiet:
                warn_user(
                    f"{self.name}: z-box bounds guessed from this batch's smallest and largest "
                    "input values (no preprocessing known); pass low= and high="
                )
        return low or found_low, high or found_high


def _bounds(value: Any, name: str, where: str) -> tuple[float, ...] | None:
    """None, one bound for every channel, or one per channel."""
    if value is None:
        return None
    values = value if isinstance(value, (tuple, list, np.ndarray)) else (value,)
    if not len(values):
        raise bad_argument(name, "a number or one number per channel", value, where=where)
    return tuple(finite_float(v, name, where=where) for v in values)


def _layer_rules(value: Any, where: str) -> dict[str, str] | None:
    """None, or {layer name: rule name} with every rule known."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise bad_argument("layer_rules", "a dict of layer name to rule name", value, where=where)
    checked = {}
    for layer, rule in value.items():
        if not isinstance(layer, str):
            raise bad_argument("layer_rules", "layer names as keys", layer, where=where)
        checked[layer] = one_of(rule, _LAYER_RULES, f"layer_rules[{layer!r}]", where=where)
    return checked
