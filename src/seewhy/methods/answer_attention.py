r"""Answer attention: where a vision-language model's language model looked while answering.

A generative VLM (LLaVA, Qwen2-VL ...) reads the picture as image tokens among
the prompt's text tokens; each answer token is produced by a language model
whose attention rows say how much each earlier token, image tokens included,
was read. This method reads those rows, teacher-forced on the answer, and puts
their image columns back on the photo through the same geometry as the CAMs::

    >>> seewhy.explain(vlm, "cat.jpg", "answer-attention", prompt="What is this?")
    >>> seewhy.explain(vlm, "cat.jpg", "answer-attention",
    ...                target=Answer("a cat", prompt="What is this?", per_token=True))

It needs an :class:`seewhy.targets.Answer` of a generative VLM (or ``prompt=``,
to explain the model's own answer); any other model or target is refused in
one line. Unlike the gradient methods it says where the language model
*looked*, not what *changed* the answer: the two can differ, and attention
often gathers on a few uninformative "sink" tokens.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._kit.checks import one_of
from ..backends.capabilities import Heads, Predicts
from ..errors import UnsupportedModel
from ..registry import register
from .base import Context, Method, RawResult

__all__ = ["COMBINATIONS", "AnswerAttention", "AttendsToImage"]

#: How the language model's layers are combined (see :class:`AnswerAttention`).
COMBINATIONS = ("mean", "rollout")


@runtime_checkable
class AttendsToImage(Protocol):
    """A bound answer target that can read its language model's attention to the image.

    ``token`` is the answer token the row explains (None: the whole answer);
    rows with equal ``answer_key()`` and inputs share one forward pass.
    """

    token: int | None

    def answer_key(self) -> Hashable:
        """What, besides the picture, decides the attention (the prompt and answer tokens)."""
        ...

    def answer_attention(self, x: np.ndarray, *, combine: str) -> np.ndarray:
        """(k, h, w): each of the k answer tokens' attention to the image tokens of ``x``.

        ``x`` is one prepared input (1, H, W, C); the grid is the image tokens'
        own (the CAMs' at the vision tower's default layer).
        """
        ...


@register("answer-attention")
class AnswerAttention(Method):
    r"""The answer tokens' attention to the image tokens, through a VLM's language model.

    Teacher-forced on the prompt and the answer, each decoder layer :math:`l` of
    the language model gives attention probabilities :math:`A_l^h` per head
    (computed as the eager attention computes them, whatever kernel the model
    is set to use). The rows are the positions whose outputs give the answer's
    tokens (the last prompt token, then each answer token but the last: the
    query that produced the token, as in generation); the columns are the
    image tokens, in the vision path's order, so the map has the image
    tokens' grid and lands on the photo as the CAMs do.

    ``combine="mean"`` averages over heads and layers,
    :math:`\frac{1}{LH}\sum_{l,h} A_l^h[r, \mathrm{img}]`: the raw attention
    of Abnar & Zuidema (2020, "Quantifying Attention Flow in Transformers")
    averaged over the layers, as VLM studies read the attention of the token
    that produces an answer (Zhang et al., ICLR 2025, "MLLMs Know Where to
    Look"). ``combine="rollout"`` is Abnar & Zuidema's attention rollout over
    the language model's layers, :math:`\tilde A_l = \frac12 \bar A_l +
    \frac12 I` (heads averaged) multiplied from the last layer down, only the
    answer rows carried: attention that reached the image through earlier
    text tokens counts too. A whole answer's map is the mean of its tokens'
    rows; ``per_token=True`` gives each token's row.

    Parameters
    ----------
    combine : str
        How layers combine: mean (raw attention averaged over heads and layers) or rollout.

    Examples
    --------
    >>> seewhy.explain(llava, "cat.jpg", "answer-attention", combine="rollout",
    ...                target=Answer("a cat", prompt="What is this?"))
    """

    # An Answer is a target other than a class: a model without target heads cannot have one.
    requires = frozenset({Predicts, Heads})

    def __init__(self, *, combine: str = "mean") -> None:
        self.combine = one_of(combine, COMBINATIONS, "combine", where=self.name)

    def run(self, ctx: Context) -> RawResult:
        rows = _answer_rows(ctx.target_objects, self.name)
        logits, targets = ctx.logits_and_targets(ctx.batch_size)
        read: dict[tuple[Hashable, bytes], np.ndarray] = {}
        maps = []
        for i, row in enumerate(rows):
            x = ctx.inputs[i : i + 1]
            key = (row.answer_key(), x.tobytes())  # per-token rows of one picture: one pass
            if key not in read:
                read[key] = row.answer_attention(x, combine=self.combine)
            tokens = read[key]
            maps.append(tokens.mean(axis=0) if row.token is None else tokens[row.token])
            if ctx.progress is not None:
                ctx.progress(1)
        return RawResult(np.stack(maps).astype(np.float32), logits, targets)


def _answer_rows(objects: tuple[Any, ...] | None, name: str) -> list[AttendsToImage]:
    """Each row's answer target, or the one-line refusal of a model or target without one."""
    if objects and all(isinstance(o, AttendsToImage) for o in objects):
        return list(objects)
    kind = "class" if not objects else type(objects[0]).__name__
    raise UnsupportedModel(
        f"method: {name} needs a generative vision-language model (Hugging Face LLaVA, "
        f"PaliGemma, Qwen2-VL ...) and its answer (target=seewhy.targets.Answer(text, "
        f"prompt=...) or prompt=); got a {kind} target: use gradcam, occlusion or rise "
        "(legrad for CLIP prompts) for other models"
    )
