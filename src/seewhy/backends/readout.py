"""The ``LayerReadout`` capability: the target's score read at every block's output.

LeGrad (:mod:`seewhy.methods.legrad`) asks how the target's score, read through
the model's own head at the output of one block, changes with that block's
attention. A backend serving it runs the blocks, hands each chosen block's
output to the head as if it were the last, and returns per block the
attention-gradient signal reduced to one value per patch; only a framework
that can re-route a forward (PyTorch) offers it, so
:func:`~seewhy.backends.requirements.require` refuses the others in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from .._kit.scores import Score

if TYPE_CHECKING:
    from ..targets import Target

__all__ = ["READOUTS", "LayerReadout", "ReadoutCapture"]

#: How a block's output reaches the head: ``"head"`` as the last block's does,
#: ``"mean"`` every token replaced by the mean of all tokens (the LeGrad authors'
#: code for CLIP towers), ``"pooler"`` through an attention-pooling head.
READOUTS = ("head", "mean", "pooler")


@dataclass(frozen=True)
class ReadoutCapture:
    """One LeGrad pass: the logits and each chosen block's patch relevance.

    ``relevance[k]`` is block ``layers[k]``'s (N, h * w) map: the ReLU of the
    gradient of that block's readout score with respect to the attention the
    signal is read from (the block's own, or the pooling head's), averaged over
    heads and query tokens, at the patch tokens in row-major grid order.
    ``contrast`` is the same for the contrast targets, when they were asked for.
    """

    logits: np.ndarray  # (N, K) float32
    targets: np.ndarray  # (N,) int64
    layers: tuple[str, ...]  # the blocks read, in forward order
    relevance: np.ndarray  # (blocks, N, h * w) float32
    grid: tuple[int, int]  # (h, w) patch grid
    readout: str  # one of READOUTS: what was done
    contrast: np.ndarray | None = None  # (blocks, N, h * w): the contrast targets' relevance


@runtime_checkable
class LayerReadout(Protocol):
    """The target's score read through the model's head at every block (LeGrad)."""

    def layer_readout(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        start_block: int,
        readout: str | None,
        score: Score = "logit",
        contrast: Sequence[Target] | None = None,
    ) -> ReadoutCapture:
        """One forward and one backward: each block's readout score and its attention signal.

        Parameters
        ----------
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.
        targets : numpy.ndarray or None
            (N,) the column scored per image; None: each image's top-1.
        start_block : int
            The first block read; negative counts from the last (-1: the last only).
        readout : str or None
            One of :data:`READOUTS`; None: the LeGrad authors' choice for the model.
        score : str
            ``"logit"`` or ``"probability"``: what the gradients are of.
        contrast : sequence of Target, optional
            One target per image scoring the same output (LeGrad's SigLIP correction:
            a generic text); its relevance comes back too, from the same forward.

        Returns
        -------
        ReadoutCapture
            The logits, targets and each block's (N, h * w) relevance (and the contrast's).
        """
        ...
