r"""LeGrad (Bousselham et al., 2024): how each block's attention forms the target's feature.

For each block from ``start_block`` to the last, the target's score is read
through the model's own head at that block's output, as if the block were the
last; its gradient with respect to the block's attention is the signal::

    >>> seewhy.explain(vit, "cat.jpg", "legrad", target="tabby")
    >>> seewhy.explain(clip, "street.jpg", "legrad", target=Prompt("a red car"))

One forward and one backward serve every block (see
``backends/torch/layer_readout.py``), so LeGrad costs about what Grad-CAM does.
"""

from __future__ import annotations

import numpy as np

from .._kit.checks import bad_argument, one_of
from ..backends.capabilities import Gradients, Predicts
from ..backends.readout import READOUTS, LayerReadout
from ..errors import UnsupportedModel
from ..registry import register
from .base import Context, Method, RawResult

__all__ = ["LeGrad"]


@register("legrad")
class LeGrad(Method):
    r"""LeGrad (Bousselham, Boggust, Chaybouti, Strobelt & Kuehne, 2024; ICCV 2025).

    For each block :math:`l \ge s` the score :math:`s_l = f(\mathrm{head}(z_l))` is
    the target's score of the block's output :math:`z_l` read through the model's
    own head. With :math:`A_l` the attention the signal is read from (the
    block's own, or an attention-pooling head's when it reads :math:`z_l`),

    .. math::

        E_l = \frac{1}{H\,Q} \sum_{h,q} \Big(\frac{\partial s_l}{\partial A_l^{h}}
              \Big)^+_{q,\cdot}, \qquad
        \mathrm{LeGrad} = \mathrm{minmax}\Big(\sum_{l \ge s} E_l\Big)

    over the H heads and the Q query tokens (an attention pooler: its first
    query), kept at the patch tokens. The per-block sum and the min-max per
    image are the authors' (their package ``legrad-torch``); a map with no
    positive gradient anywhere is all zeros.

    How a block's output reaches the head (``readout``), by default as the
    authors do: an attention-pooling head (SigLIP's, in timm, open_clip and
    Hugging Face) reads the block's tokens itself (``"pooler"``); an open_clip
    ViT tower reads the mean of all the block's tokens through its final
    norm and projection (``"mean"``: what ``legrad-torch`` does for CLIP); every
    other model reads the block's tokens as it reads its last block's
    (``"head"``: the class token through the final norm and classifier).
    ``legrad-torch``'s SigLIP correction (zeroing where an empty prompt's map
    is high) is not applied.

    Parameters
    ----------
    start_block : int
        First block read, negative from the last (-2, the authors' default: the last two).
    readout : str or None
        How blocks reach the head: head, mean or pooler (above); None: the authors' way.

    Examples
    --------
    >>> seewhy.explain(vit, images, "legrad", start_block=-4)
    """

    requires = frozenset({Predicts, LayerReadout, Gradients})

    def __init__(self, *, start_block: int = -2, readout: str | None = None) -> None:
        if isinstance(start_block, bool) or not isinstance(start_block, (int, np.integer)):
            raise bad_argument(
                "start_block",
                "an integer (negative: from the last block)",
                start_block,
                where=self.name,
            )
        self.start_block = int(start_block)
        self.readout = (
            None if readout is None else one_of(readout, READOUTS, "readout", where=self.name)
        )

    def run(self, ctx: Context) -> RawResult:
        backend = ctx.backend
        if not isinstance(backend, LayerReadout):  # pragma: no cover - require() refused it
            raise UnsupportedModel(
                f"{self.name}: the {backend.framework} backend cannot; use gradcam"
            )
        cap = backend.layer_readout(
            ctx.inputs,
            targets=ctx.targets,
            start_block=self.start_block,
            readout=self.readout,
            score=ctx.score,
        )
        h, w = cap.grid
        summed = cap.relevance.sum(axis=0, dtype=np.float64).reshape(len(ctx.inputs), h, w)
        if ctx.progress is not None:
            ctx.progress(len(ctx.inputs))
        return RawResult(
            maps=_min_max(summed),
            logits=cap.logits,
            targets=cap.targets,
            settings={"readout": cap.readout},
        )


def _min_max(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] (the authors' normalisation); a flat map becomes zeros."""
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    scaled = np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)
    return scaled.astype(np.float32)
