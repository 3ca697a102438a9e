"""Methods made for vision transformers: attention rollout and generic attention.

Both read the attention matrices of every block (the backend recovers them
also when the model uses a fused kernel, see ``backends/torch/attention.py``)
and return the class token's row over the patch tokens, on the patch grid::

    >>> seewhy.explain(vit, "cat.jpg", "attention-rollout")
    >>> seewhy.explain(vit, "cat.jpg", "gae", target="tabby")  # class-specific
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .._kit.checks import bad_argument, one_of, positive_int
from ..backends.base import AttentionBackend, AttentionCapture
from ..errors import UnsupportedModel
from ..registry import register
from .base import Context, Method, RawResult

__all__ = ["AttentionRollout", "GenericAttention", "class_row"]

HEAD_FUSIONS = ("mean", "max", "min")


class _AttentionMethod(Method):
    """Base: one attention pass, then the relevance matrix's class-token row."""

    uses_layer: ClassVar[bool] = False
    reads_attention: ClassVar[bool] = True  # needs a transformer (AttentionBackend)
    needs_gradients: ClassVar[bool] = False

    def run(self, ctx: Context) -> RawResult:
        backend = ctx.backend
        if not isinstance(backend, AttentionBackend):
            raise UnsupportedModel(
                f"{self.name}: the {backend.framework} backend cannot read attention "
                "matrices; use gradcam"
            )
        cap = backend.attention(
            ctx.inputs, targets=ctx.targets, gradients=self.needs_gradients, score=ctx.score
        )
        if cap.layout.prefix < 1:
            raise UnsupportedModel(
                f"{self.name}: the model has no class token (it pools every token, like "
                "Swin), and these methods read the class token's row; use gradcam"
            )
        relevance = self.relevance(cap)
        if ctx.progress is not None:
            ctx.progress(len(ctx.inputs))
        return RawResult(maps=class_row(relevance, cap), logits=cap.logits, targets=cap.targets)

    def relevance(self, cap: AttentionCapture) -> np.ndarray:
        """(N, T, T) relevance of every token to every token after the last block."""
        raise NotImplementedError


def class_row(relevance: np.ndarray, cap: AttentionCapture) -> np.ndarray:
    """The class token's row over the patch tokens, as (N, h, w) maps."""
    prefix, (h, w) = cap.layout.prefix, cap.layout.grid or (0, 0)
    row = relevance[:, 0, prefix:]
    return np.ascontiguousarray(row.reshape(len(row), h, w), dtype=np.float32)


@register("attention-rollout", "rollout")
class AttentionRollout(_AttentionMethod):
    r"""Attention rollout (Abnar & Zuidema, 2020): attention flowed through every block.

    Per block the heads are fused (mean, or max / min), the smallest
    ``discard_ratio`` of each image's fused entries are dropped (never the
    class token's attention to itself), the residual connection is added and
    rows renormalised, :math:`\hat A = \mathrm{norm}(0.5 A + 0.5 I)`, and the
    blocks are multiplied from ``start_block`` on,
    :math:`R = \hat A_L \cdots \hat A_s`. The map is the class token's row of
    R over the patch tokens. Class-independent.

    >>> seewhy.explain(vit, images, "attention-rollout", head_fusion="max", discard_ratio=0.9)
    """

    def __init__(
        self, *, head_fusion: str = "mean", discard_ratio: float = 0.0, start_block: int = 0
    ) -> None:
        self.head_fusion = one_of(head_fusion, HEAD_FUSIONS, "head_fusion", where=self.name)
        ratio = discard_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise bad_argument("discard_ratio", "a number in [0, 1)", ratio, where=self.name)
        self.discard_ratio = float(ratio)
        self.start_block = _block_index(start_block, self.name)

    def relevance(self, cap: AttentionCapture) -> np.ndarray:
        blocks = _from_block(cap.attentions, self.start_block, self.name)
        n, _, t, _ = blocks[0].shape
        eye = np.eye(t, dtype=np.float32)
        rollout = np.broadcast_to(eye, (n, t, t)).copy()
        for attention in blocks:
            fused = getattr(attention, self.head_fusion)(axis=1)  # (N, T, T)
            if self.discard_ratio > 0:
                fused = _discard(fused, self.discard_ratio)
            a = 0.5 * fused + 0.5 * eye
            a /= a.sum(axis=-1, keepdims=True)
            rollout = a @ rollout
        return rollout


@register("generic-attention", "gae", "chefer")
class GenericAttention(_AttentionMethod):
    r"""Generic attention explainability (Chefer, Gur & Wolf, ICCV 2021), class-specific.

    R starts as the identity; each block adds its gradient-weighted
    attention, :math:`\bar A = \mathbb{E}_h[(\nabla A \odot A)^+]`,
    :math:`R \leftarrow R + \bar A R`, where :math:`\nabla A` is the
    gradient of the target's score with respect to the block's attention
    matrix. The map is the class token's row of R over the patch tokens.

    >>> seewhy.explain(vit, images, "gae", target=281)
    """

    needs_gradients = True

    def __init__(self, *, start_block: int = 0) -> None:
        self.start_block = _block_index(start_block, self.name)

    def relevance(self, cap: AttentionCapture) -> np.ndarray:
        if cap.gradients is None:  # pragma: no cover - a backend bug
            raise UnsupportedModel(f"{self.name}: the backend returned no attention gradients")
        blocks = _from_block(cap.attentions, self.start_block, self.name)
        grads = cap.gradients[len(cap.attentions) - len(blocks) :]
        n, _, t, _ = blocks[0].shape
        relevance = np.broadcast_to(np.eye(t, dtype=np.float32), (n, t, t)).copy()
        for attention, grad in zip(blocks, grads, strict=True):
            weighted = np.maximum(grad * attention, 0.0).mean(axis=1)
            relevance = relevance + weighted @ relevance
        return relevance


def _block_index(value: object, where: str) -> int:
    return positive_int(value, "start_block", where=where, minimum=0)


def _from_block(blocks: tuple[np.ndarray, ...], start: int, where: str) -> tuple[np.ndarray, ...]:
    if start >= len(blocks):
        raise bad_argument(
            "start_block", f"an integer below the model's {len(blocks)} blocks", start, where=where
        )
    return blocks[start:]


def _discard(fused: np.ndarray, ratio: float) -> np.ndarray:
    """``fused`` with each image's smallest ``ratio`` of entries at 0 (class token's own kept)."""
    n, t, _ = fused.shape
    flat = fused.reshape(n, t * t).copy()
    drop = int(t * t * ratio)
    if drop:
        lowest = np.argpartition(flat, drop - 1, axis=1)[:, :drop]
        keep_cls = flat[:, 0].copy()
        np.put_along_axis(flat, lowest, 0.0, axis=1)
        flat[:, 0] = keep_cls
    return flat.reshape(n, t, t)
