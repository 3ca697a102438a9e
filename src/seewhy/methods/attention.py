"""Methods made for vision transformers: attention rollout and generic attention.

Both read the attention matrices of every block (the backend recovers them
also when the model uses a fused kernel, see ``backends/torch/attention.py``)
and return the row of the token the head reads (the class token; the mean of the
patch tokens for a head that averages them, both for DINOv2's, the class and
distillation tokens for DeiT's) over the patch tokens, on the patch grid::

    >>> seewhy.explain(vit, "cat.jpg", "attention-rollout")
    >>> seewhy.explain(vit, "cat.jpg", "gae", target="tabby")  # class-specific
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._kit.checks import bad_argument, one_of, positive_int
from ..backends.base import AttentionCapture
from ..backends.capabilities import Attention, Gradients, Predicts
from ..errors import UnsupportedModel
from ..registry import register
from .base import Context, Method, RawResult

__all__ = ["AttentionRollout", "GenericAttention"]

HEAD_FUSIONS = ("mean", "max", "min")


class _AttentionMethod(Method):
    """Base: one attention pass with the heads fused, then the class token's relevance row.

    Only the class token's row of the relevance matrix is kept, so each block
    costs a vector-matrix product (O(T^2)), never a matrix product (O(T^3)).
    """

    requires = frozenset({Predicts, Attention})
    start_block: int

    def run(self, ctx: Context) -> RawResult:
        backend = ctx.backend
        if not isinstance(backend, Attention):
            raise UnsupportedModel(
                f"{self.name}: the {backend.framework} backend cannot read attention "
                "matrices; use gradcam"
            )
        cap = backend.attention(
            ctx.inputs,
            targets=ctx.targets,
            gradients=self.needs_gradients,
            fuse=self.fuse,
            score=ctx.score,
        )
        if any(token >= cap.layout.prefix for token, _ in cap.readout):
            raise UnsupportedModel(
                f"{self.name}: the model has no class token and its head does not say it "
                "averages the patch tokens, so there is no row to read; use gradcam"
            )
        blocks = _from_block(cap.fused, self.start_block, self.name)
        start = _readout_row(len(ctx.inputs), blocks[0].shape[-1], cap)
        row = self.class_relevance([np.asarray(b, dtype=np.float32) for b in blocks], start)
        if ctx.progress is not None:
            ctx.progress(len(ctx.inputs))
        return RawResult(maps=_on_grid(row, cap), logits=cap.logits, targets=cap.targets)

    def fuse(self, attention: Any, gradient: Any) -> Any:
        """One block's (N, heads, T, T) attention (and gradient) -> (N, T, T); see BlockFusion."""
        raise NotImplementedError

    def class_relevance(self, blocks: list[np.ndarray], start: np.ndarray) -> np.ndarray:
        """(N, T): ``start``'s row (N, 1, T) of the relevance after the last block."""
        raise NotImplementedError


def _readout_row(n: int, t: int, cap: AttentionCapture) -> np.ndarray:
    """(N, 1, T): the tokens the head reads, weighted: e_0 for a class-token head, the
    mean over the patch tokens for an averaging one, both halves for DINOv2's."""
    row = np.zeros((n, 1, t), dtype=np.float32)
    for token, weight in cap.readout:
        row[:, 0, token] += weight
    prefix = cap.layout.prefix
    if cap.patches:
        row[:, 0, prefix:] += cap.patches / (t - prefix)
    return row


def _on_grid(row: np.ndarray, cap: AttentionCapture) -> np.ndarray:
    """The class token's row over the patch tokens, as (N, h, w) maps."""
    prefix, (h, w) = cap.layout.prefix, cap.layout.grid or (0, 0)
    patches = row[:, prefix:]
    return np.ascontiguousarray(patches.reshape(len(row), h, w), dtype=np.float32)


@register("attention-rollout", "rollout")
class AttentionRollout(_AttentionMethod):
    r"""Attention rollout (Abnar & Zuidema, 2020): attention flowed through every block.

    Per block the heads are fused (mean, or max / min), the smallest
    ``discard_ratio`` of each image's fused entries are dropped (never the
    class token's attention to itself), the residual connection is added and
    rows renormalised, :math:`\hat A = \mathrm{norm}(0.5 A + 0.5 I)`, and the
    blocks are multiplied from ``start_block`` on,
    :math:`R = \hat A_L \cdots \hat A_s`. The map is the class token's row of
    R over the patch tokens, :math:`e_0^T \hat A_L \cdots \hat A_s`, computed
    from the last block back as :math:`r \leftarrow r \hat A_l`. Class-independent.

    Parameters
    ----------
    head_fusion : str
        How a block's heads become one matrix: mean, max or min.
    discard_ratio : float
        Share of each image's smallest fused entries dropped per block.
    start_block : int
        The first block multiplied in (0: every block).

    Examples
    --------
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

    def fuse(self, attention: Any, gradient: Any) -> Any:
        fused = getattr(attention, self.head_fusion)(1)
        return (
            fused[0] if isinstance(fused, tuple) else fused
        )  # torch's max / min: (values, indices)

    def class_relevance(self, blocks: list[np.ndarray], start: np.ndarray) -> np.ndarray:
        t = blocks[0].shape[-1]
        eye = np.eye(t, dtype=np.float32)
        row = start
        for fused in reversed(blocks):
            if self.discard_ratio > 0:
                fused = _discard(fused, self.discard_ratio)
            a = 0.5 * fused + 0.5 * eye
            a /= a.sum(axis=-1, keepdims=True)
            row = row @ a
        return row[:, 0]


@register("generic-attention", "gae", "chefer")
class GenericAttention(_AttentionMethod):
    r"""Generic attention explainability (Chefer, Gur & Wolf, ICCV 2021), class-specific.

    R starts as the identity; each block adds its gradient-weighted
    attention, :math:`\bar A = \mathbb{E}_h[(\nabla A \odot A)^+]`,
    :math:`R \leftarrow R + \bar A R`, where :math:`\nabla A` is the
    gradient of the target's score with respect to the block's attention
    matrix. So :math:`R = (I + \bar A_L) \cdots (I + \bar A_s)`, and the map,
    the class token's row of R over the patch tokens, is computed from the
    last block back as :math:`r \leftarrow r + r \bar A_l`, starting at :math:`e_0`.

    Parameters
    ----------
    start_block : int
        The first block whose attention counts (0: every block).

    Examples
    --------
    >>> seewhy.explain(vit, images, "gae", target=281)
    """

    requires = frozenset({Predicts, Attention, Gradients})

    def __init__(self, *, start_block: int = 0) -> None:
        self.start_block = _block_index(start_block, self.name)

    def fuse(self, attention: Any, gradient: Any) -> Any:
        return (gradient * attention).clip(min=0).mean(1)

    def class_relevance(self, blocks: list[np.ndarray], start: np.ndarray) -> np.ndarray:
        row = start
        for weighted in reversed(blocks):
            row = row + row @ weighted
        return row[:, 0]


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
