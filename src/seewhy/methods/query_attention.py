r"""Query attention: where a DETR-style detector's decoder query looked for its box.

A DETR-style detector answers with a set of decoder queries, each reading
the image through cross-attention to the encoder's feature grid. The
attention of the query behind a detection, from the last decoder layer and
averaged over heads, is the map the DETR paper draws (Carion et al., 2020,
"End-to-End Object Detection with Transformers", Fig. 6)::

    >>> seewhy.explain(detr, "street.jpg", "query-attention")  # each detection
    >>> seewhy.explain(detr, "street.jpg", "query-attention", target=Box(xyxy, 3))

It needs a Hugging Face DETR, Conditional DETR, Deformable DETR, RT-DETR (v1)
or Grounding DINO model; any other is refused in one line. Deformable attention reads a
few sampling points per head and level instead of the whole grid: their
weights are splatted where they sample, on the finest level's grid. As with
any attention map, it says where the query *looked*, not what *changed* its
score (Grad-CAM at the backbone says that).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..backends.capabilities import Heads, Predicts
from ..errors import UnsupportedModel
from ..registry import register
from .base import Context, Method, RawResult

__all__ = ["DecoderQueries", "QueryAttention"]


@runtime_checkable
class DecoderQueries(Protocol):
    """An explained detector whose decoder queries' cross-attention seewhy can read."""

    def query_attention(self, x: np.ndarray, box: Any) -> np.ndarray:
        """(h, w) the last decoder layer's cross-attention of the query ``box`` matches,
        averaged over heads, for one prepared input ``x`` (1, H, W, C)."""
        ...


@register("query-attention")
class QueryAttention(Method):
    r"""The matched decoder query's cross-attention over the image, from the last layer.

    For a ``Box`` target the query is the one its score reads (the query of
    its label whose box overlaps most); the map is that query's row of the
    last decoder layer's cross-attention probabilities :math:`A^h`,
    :math:`\frac{1}{H}\sum_h A^h[q, :]`, on the encoder's (h, w) grid. For
    deformable attention each head :math:`h`, level :math:`l` and point
    :math:`p` samples at :math:`s_{hlp}` with weight :math:`a_{hlp}`; the map
    is :math:`\frac{1}{H}\sum_{hlp} a_{hlp}\,k(s_{hlp})`, :math:`k` spreading
    a point bilinearly onto the four cells of the finest level around it.
    No overlapping query: an all-zero map (the Box scores 0 there too).

    Examples
    --------
    >>> seewhy.explain(detr, "street.jpg", "query-attention")  # doctest: +SKIP
    """

    # A Box is a target other than a class: a model without target heads cannot have one.
    requires = frozenset({Predicts, Heads})

    def __init__(self) -> None:
        pass

    def run(self, ctx: Context) -> RawResult:
        model = ctx.backend.model
        if not isinstance(model, DecoderQueries):
            raise UnsupportedModel(
                f"method: {self.name} needs a detector with decoder queries (Hugging Face DETR, "
                f"Conditional DETR, Deformable DETR, RT-DETR, Grounding DINO); "
                f"{type(model).__name__} has none: "
                "use gradcam, occlusion or rise"
            )
        objects = ctx.target_objects or ()
        if len(objects) != len(ctx.inputs) or not all(_is_box(o) for o in objects):
            raise UnsupportedModel(
                f"method: {self.name} explains a detection: pass target=seewhy.targets.Box("
                "xyxy, label), or no target to explain each detection"
            )
        logits, targets = ctx.logits_and_targets(ctx.batch_size)
        maps = []
        for i, box in enumerate(objects):
            maps.append(model.query_attention(ctx.inputs[i : i + 1], box))
            if ctx.progress is not None:
                ctx.progress(1)
        return RawResult(np.stack(maps).astype(np.float32), logits, targets)


def _is_box(target: Any) -> bool:
    from ..targets import Box

    return isinstance(target, Box)
