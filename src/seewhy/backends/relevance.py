"""The ``Relevance`` capability: layer-wise relevance propagation (LRP) in one modified backward.

LRP (Bach et al., 2015) sends the target's score back through the network
layer by layer, each layer sharing out the relevance that reaches its output
among its inputs by a *rule* (epsilon, gamma, z+, ...), so that what reaches
the pixels sums to the score. Which rule goes on which layer is a
:class:`RuleSet`, framework-free, built by the method (:mod:`seewhy.methods.lrp`
names zennit's composites) and carried out by the backend; a backend serving
it never changes the model (no module swapped, no weight merged in place, no
hook left), also when the model raises. Only PyTorch offers it today, so
:func:`~seewhy.backends.requirements.require` refuses the others in one line.

A rule set says what goes on the layers a CNN has (convolutions, dense
layers, the first layer that sees the pixels, by name); transformer rules
(AttnLRP's softmax, products, norms) go in :attr:`RuleSet.kinds`, keyed by the
kind of operation the backend recognises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from .._kit.scores import Score

__all__ = ["RULES", "Relevance", "RelevanceCapture", "Rule", "RuleSet"]

#: The rules a backend knows, in the words of the LRP literature (see :class:`Rule`).
RULES = (
    "epsilon", "gamma", "zplus", "alphabeta", "flat", "wsquare", "zbox", "norm", "pass",
    "uniform", "softmax",
)  # fmt: skip


@dataclass(frozen=True)
class Rule:
    r"""One LRP rule with its parameters, for a layer :math:`z_k = \sum_j x_j w_{jk} + b_k`.

    Every rule shares the relevance :math:`R_k` of the layer's outputs among its
    inputs :math:`j`; the denominators get ``epsilon`` added with their own sign
    (+1 at zero), so nothing divides by zero.

    - ``epsilon``: :math:`R_j = \sum_k x_j w_{jk} R_k / (z_k + \epsilon)`
      (LRP-0 at ``epsilon`` -> 0; Bach et al., 2015).
    - ``gamma``: positive contributions boosted, :math:`w + \gamma w^+`
      (Montavon et al., 2019; the generalised form for negative inputs too).
    - ``zplus``: only positive contributions (:math:`x^+ w^+` and :math:`x^- w^-`).
    - ``alphabeta``: :math:`\alpha` times the positive share minus :math:`\beta` times
      the negative one, :math:`\alpha - \beta = 1` (Bach et al., 2015).
    - ``flat``: relevance spread uniformly over each output's receptive field
      (Lapuschkin et al., 2019); ``wsquare``: in proportion to :math:`w^2`
      (Montavon et al., 2017); both ignore the input's values.
    - ``zbox``: the input bounded by ``low`` and ``high`` (Montavon et al., 2017),
      for the first layer, which sees the pixels.
    - ``norm``: a layer without weights (an average pool, a residual sum) shares
      its output's relevance in proportion to each input's part in it.
    - ``pass``: relevance passes unchanged (activations, an identity BatchNorm).
    - ``uniform``: a product of two inputs (AttnLRP's q.k and A.v) gives each factor
      half of each term's relevance (Achtibat et al., 2024).
    - ``softmax``: AttnLRP's softmax rule, :math:`R_i = x_i (R_i - s_i \sum_j R_j)`.

    Attributes
    ----------
    name : str
        One of :data:`RULES`.
    epsilon : float
        The epsilon rule's epsilon; every other rule's stabiliser.
    gamma : float
        The gamma rule's factor.
    alpha, beta : float
        The alpha-beta rule's weights (``alpha - beta == 1``).
    low, high : tuple of float
        The z-box rule's bounds of each input channel, in the model's input space
        (after preprocessing); one value is every channel's.
    """

    name: str
    epsilon: float = 1e-6
    gamma: float = 0.25
    alpha: float = 2.0
    beta: float = 1.0
    low: tuple[float, ...] = (0.0,)
    high: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise ValueError(f"rule: unknown LRP rule {self.name!r}; expected one of {RULES}")


#: Where a weightless layer's relevance goes (average pools, residual sums).
NORM = Rule("norm")
#: Activations and what BatchNorm leaves once merged into the convolution before it.
PASS = Rule("pass")


@dataclass(frozen=True)
class RuleSet:
    """Which rule goes on which layer (a zennit *composite*, framework-free).

    A layer's rule is, in this order: its own in ``layers`` (by the user's
    layer name); ``first`` for the first convolution or dense layer the
    forward pass runs (the one that sees the pixels); ``convolution`` or
    ``linear`` by its kind. Weightless layers: ``pooling`` for average pools,
    ``sums`` for additions of two tensors (the residual connections), ``pass``
    for activations. With ``canonize``, a BatchNorm right after a convolution
    or dense layer is merged into it for the rules (functionally: no weight is
    written) and then passes relevance unchanged.

    ``kinds`` is the place for the rules of other operations, keyed by the
    kind the backend recognises (AttnLRP: ``"softmax"``, ``"matmul"``,
    ``"layernorm"``, ``"gelu"``); a backend that does not know a kind refuses it.

    Attributes
    ----------
    name : str
        The composite's name, as recorded (``"epsilon-plus-flat"``).
    convolution : Rule
        The rule of convolutions after the first.
    linear : Rule
        The rule of dense (fully connected) layers after the first.
    first : Rule or None
        The rule of the first weighted layer; None: its kind's rule.
    layers : Mapping
        Rules of named layers, before any other.
    pooling : Rule
        Average pools (adaptive or not).
    sums : Rule
        Additions of two tensors that both depend on the input (residual connections).
    canonize : bool
        Merge each BatchNorm into the layer before it (zennit's canonizers).
    kinds : Mapping
        Rules of other operations, by the backend's name for them.
    """

    name: str
    convolution: Rule
    linear: Rule
    first: Rule | None = None
    layers: Mapping[str, Rule] = field(default_factory=dict)
    pooling: Rule = NORM
    sums: Rule = NORM
    canonize: bool = True
    kinds: Mapping[str, Rule] = field(default_factory=dict)


@dataclass(frozen=True)
class RelevanceCapture:
    """One LRP pass: the logits, the input's relevance and what was done where.

    Attributes
    ----------
    logits : numpy.ndarray
        (N, K) float32 scores of the unmodified forward pass.
    targets : numpy.ndarray
        (N,) int64 the column explained per image.
    relevance : numpy.ndarray
        (N, H, W, C) float32 relevance of each input value, signed; it sums
        to about the target's score where every layer's rule conserves it.
    start : numpy.ndarray
        (N,) float64 the relevance each image started from (the target's score).
    rules : Mapping
        The rule applied at each layer, by the user's layer name.
    merged : tuple of tuple of str
        (layer, batchnorm) pairs merged for the rules.
    unruled : tuple of str
        Layers with weights that no rule covers: their plain gradient passed.
    """

    logits: np.ndarray
    targets: np.ndarray
    relevance: np.ndarray
    start: np.ndarray
    rules: Mapping[str, str] = field(default_factory=dict)
    merged: tuple[tuple[str, str], ...] = ()
    unruled: tuple[str, ...] = ()


@runtime_checkable
class Relevance(Protocol):
    """Layer-wise relevance propagation through the model (LRP, AttnLRP)."""

    def relevance(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        rules: RuleSet,
        score: Score = "logit",
    ) -> RelevanceCapture:
        """One forward and one modified backward: each input value's relevance.

        The target's score (its logit, or its probability with
        ``score="probability"``) is the relevance put on its column; the
        other columns start at zero.

        Parameters
        ----------
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.
        targets : numpy.ndarray or None
            (N,) the column explained per image; None: each image's top-1.
        rules : RuleSet
            Which rule goes on which layer.
        score : str
            ``"logit"`` or ``"probability"``: the relevance the pass starts from.

        Returns
        -------
        RelevanceCapture
            The logits, targets, the input relevance (N, H, W, C) and the rules applied.
        """
        ...
