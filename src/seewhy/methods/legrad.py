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

from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._kit.checks import bad_argument, one_of
from ..backends.capabilities import Gradients, Predicts
from ..backends.readout import READOUTS, LayerReadout
from ..errors import InvalidInput, UnsupportedModel
from ..registry import register
from ..targets import Target
from .base import Context, Method, RawResult

__all__ = ["LeGrad", "ScoresTexts"]


@runtime_checkable
class ScoresTexts(Protocol):
    """A bound target that scores texts through a dual encoder (a bound ``Prompt``).

    LeGrad's SigLIP correction needs the map of a generic text on the same
    picture; such a target hands over that text's target, scored the same
    way by the same model (the text tower runs once per text, cached).
    """

    @property
    def sigmoid_loss(self) -> bool:
        """True for a model trained with SigLIP's sigmoid loss (it has a logit bias)."""
        ...

    def with_text(self, text: str) -> Target:
        """``text`` scored as this target scores its own."""
        ...


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
    On SigLIP the authors correct the map (``legrad-torch``'s default): the
    map of a generic text (``correction_text``, "a photo of a") shows where
    SigLIP's attention pooler gathers whatever the prompt, so the prompt's
    map is zeroed wherever that min-max scaled map exceeds
    ``correction_threshold``, before the final min-max. seewhy does the same
    for a :class:`~seewhy.targets.Prompt` on a model trained with the sigmoid
    loss (open_clip SigLIP, Hugging Face ``SiglipModel``), from the same
    forward pass; ``params["correction"]`` says whether it was applied.

    Parameters
    ----------
    start_block : int
        First block read, negative from the last (-2, the authors' default: the last two;
        a model with fewer blocks has all of them read).
    readout : str or None
        How blocks reach the head: head, mean or pooler (above); None: the authors' way.
    correction : bool or None
        The SigLIP correction: None applies it where the authors do (a Prompt on a
        SigLIP model); True asks for it on any Prompt; False never.
    correction_threshold : float
        Where the generic text's min-max map exceeds this (0 to 1), the map is zeroed.
    correction_text : str
        The generic text of the correction (the authors': "a photo of a").

    Examples
    --------
    >>> seewhy.explain(vit, images, "legrad", start_block=-4)
    """

    requires = frozenset({Predicts, LayerReadout, Gradients})

    def __init__(
        self,
        *,
        start_block: int = -2,
        readout: str | None = None,
        correction: bool | None = None,
        correction_threshold: float = 0.8,
        correction_text: str = "a photo of a",
    ) -> None:
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
        if correction is not None and not isinstance(correction, (bool, np.bool_)):
            raise bad_argument(
                "correction", "True, False or None (where the authors apply it)", correction,
                where=self.name,
            )
        self.correction = None if correction is None else bool(correction)
        threshold = correction_threshold
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float, np.integer, np.floating))
            or not 0 < threshold <= 1
        ):
            raise bad_argument(
                "correction_threshold", "a number in (0, 1]", threshold, where=self.name
            )
        self.correction_threshold = float(threshold)
        if not isinstance(correction_text, str) or not correction_text.strip():
            raise bad_argument(
                "correction_text", "a non-empty text", correction_text, where=self.name
            )
        self.correction_text = correction_text

    def run(self, ctx: Context) -> RawResult:
        backend = ctx.backend
        if not isinstance(backend, LayerReadout):  # pragma: no cover - require() refused it
            raise UnsupportedModel(
                f"{self.name}: the {backend.framework} backend cannot; use gradcam"
            )
        contrast = self._contrast(ctx.target_objects)
        cap = backend.layer_readout(
            ctx.inputs,
            targets=ctx.targets,
            start_block=self.start_block,
            readout=self.readout,
            score=ctx.score,
            contrast=contrast,
        )
        h, w = cap.grid
        shape = (len(ctx.inputs), h, w)
        summed = cap.relevance.sum(axis=0, dtype=np.float64).reshape(shape)
        if cap.contrast is not None:
            generic = _min_max(cap.contrast.sum(axis=0, dtype=np.float64).reshape(shape))
            summed[generic > self.correction_threshold] = 0.0
        if ctx.progress is not None:
            ctx.progress(len(ctx.inputs))
        return RawResult(
            maps=_min_max(summed),
            logits=cap.logits,
            targets=cap.targets,
            settings={"readout": cap.readout, "correction": contrast is not None},
        )

    def _contrast(self, objects: tuple[Any, ...] | None) -> list[Target] | None:
        """Each image's generic-text target when the correction applies, else None."""
        if self.correction is False:
            return None
        texts = [t for t in objects or () if isinstance(t, ScoresTexts)]
        if not objects or len(texts) != len(objects):
            if self.correction:
                raise InvalidInput(
                    f"{self.name}: correction=True needs a text prompt on a dual encoder "
                    "(target=seewhy.targets.Prompt(...) on CLIP or SigLIP); leave correction "
                    "unset for this target"
                )
            return None
        if self.correction is None and not all(t.sigmoid_loss for t in texts):
            return None  # the authors correct SigLIP only
        return [t.with_text(self.correction_text) for t in texts]


def _min_max(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] (the authors' normalisation); a flat map becomes zeros."""
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    scaled = np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)
    return scaled.astype(np.float32)
