r"""AttnLRP (Achtibat et al., ICML 2024): layer-wise relevance propagation through transformers.

The target's score is shared out backwards, block by block, by rules derived
for each operation of a transformer, so that what reaches the pixels is each
pixel's signed share of the score::

    >>> e = seewhy.explain(vit, "cat.jpg", "attnlrp", target="tabby")
    >>> e.extras["attributions"].shape  # (N, H, W, C), signed

One forward and one modified backward (``backends/torch/attn_lrp.py``), so it
costs about what one input gradient does. For CNNs, use ``lrp``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._kit.checks import finite_float
from ..backends.capabilities import Predicts
from ..backends.relevance import Relevance, Rule, RuleSet
from ..errors import UnsupportedModel
from ..registry import register
from .base import Context
from .gradients import PixelAttribution

__all__ = ["AttnLRP", "attnlrp_rules"]


def attnlrp_rules(epsilon: float = 0.0) -> RuleSet:
    """AttnLRP's rule set: the kinds the paper rules, and one epsilon rule on linear layers.

    Parameters
    ----------
    epsilon : float
        The linear layers' (and the patch embedding's) epsilon; 0 is their plain
        gradient, as ``lxt``'s efficient AttnLRP.

    Returns
    -------
    RuleSet
        What :meth:`~seewhy.backends.relevance.Relevance.relevance` carries out.
    """
    linear = Rule("epsilon", epsilon=epsilon)
    kinds = {
        "softmax": Rule("softmax"),
        "matmul": Rule("uniform"),
        "layernorm": Rule("pass"),
        "activation": Rule("pass"),
    }
    return RuleSet("attnlrp", convolution=linear, linear=linear, canonize=False, kinds=kinds)


@register("attnlrp", "attn-lrp")
class AttnLRP(PixelAttribution):
    r"""AttnLRP (Achtibat, Hatefi, Dreyer, Jain, Wiegand, Lapuschkin & Samek, ICML 2024).

    Relevance :math:`R` starts as the target's score at its output and is shared
    backwards by one rule per operation; at each tensor it is gradient x input,
    :math:`R = t \odot g`, with :math:`g` the modified gradient:

    - linear layers :math:`z = Wx + b` (the epsilon rule):
      :math:`R_j = \sum_k x_j W_{kj} R_k / (z_k + \epsilon\,\mathrm{sign}(z_k))`;
      the bias keeps its share :math:`b_k R_k / z_k`;
    - softmax :math:`s = \mathrm{softmax}(x)`:
      :math:`R^{in}_i = x_i\,(R_i - s_i \sum_j R_j)`;
    - the products :math:`q k^\top` and :math:`A v` (the uniform rule): each term
      :math:`a_i b_i` gives half of its relevance to each factor,
      :math:`R_{a_i} = R_{b_i} = \tfrac12\, a_i b_i R / z`;
    - layer norm (the identity rule on the normalisation): the standard deviation is
      held constant, so the centring and the affine map share the relevance;
    - GELU and other element-wise activations (the identity rule): :math:`R^{in} = R^{out}`.

    The map is the input's relevance summed over colour channels, signed
    (positive: evidence for the target; ``panel(i, signed=True)`` draws it in a
    diverging colormap), as ``lrp``'s; the per-channel relevance is in
    ``extras["attributions"]`` and the score it started from in
    ``extras["relevance_start"]``. The rules are applied without touching the
    model (hooks on a private twin, removed after); they equal ``lxt``'s
    efficient AttnLRP on the same model. Only Vision Transformers are served
    (timm, torchvision, Hugging Face, CLIP image towers); a CNN is refused,
    naming ``lrp``.

    Parameters
    ----------
    epsilon : float
        The linear layers' epsilon rule (0: their plain gradient, as lxt; larger keeps less).
    reduce : str
        How the channels' relevance becomes the map: ``"sum"`` (signed) by default.

    Examples
    --------
    >>> seewhy.explain(vit, images, "attnlrp")
    >>> seewhy.explain(vit, images, "attnlrp", epsilon=1e-6)
    """

    requires = frozenset({Predicts, Relevance})

    def __init__(self, *, epsilon: float = 0.0, reduce: str = "sum") -> None:
        super().__init__(reduce=reduce)
        self.epsilon = finite_float(epsilon, "epsilon", where=self.name, minimum=0.0)

    def attribute(
        self, ctx: Context
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        backend: Any = ctx.backend
        if not isinstance(backend, Relevance):  # pragma: no cover - refused by requires
            raise UnsupportedModel("attnlrp: this model's backend offers no relevance pass")
        cap = backend.relevance(
            ctx.inputs, targets=ctx.targets, rules=attnlrp_rules(self.epsilon), score=ctx.score
        )
        if ctx.progress is not None:
            ctx.progress(len(ctx.inputs))
        start = np.asarray(cap.start)
        return (
            np.asarray(cap.relevance, np.float32),
            cap.logits,
            cap.targets,
            {"relevance_start": start},
        )
