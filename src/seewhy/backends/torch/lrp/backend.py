"""The torch backend's LRP pass: one forward on the twin with the rules on, one backward."""

from __future__ import annotations

import numpy as np
import torch

from ...._kit.scores import Score, check_score
from ....errors import BackendError
from ...relevance import RelevanceCapture, RuleSet
from ..attn_lrp import attn_lrp_relevance
from ..passes import TorchPasses
from ..structure import scored_call
from ..twin import on_twin
from .propagate import rules_on

__all__ = ["TorchRelevance"]


class TorchRelevance(TorchPasses):
    """The ``Relevance`` capability of :class:`~seewhy.backends.torch.TorchBackend` (a mixin)."""

    @on_twin
    def relevance(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        rules: RuleSet,
        score: Score = "logit",
    ) -> RelevanceCapture:
        """See :class:`~seewhy.backends.relevance.Relevance`: the rules live on the twin only."""
        check_score(score)
        if rules.kinds:  # transformer rules: AttnLRP's pass (``..attn_lrp``)
            return attn_lrp_relevance(self, x, targets=targets, rules=rules, score=score)
        inputs = self._to_tensor(x).requires_grad_(True)
        with torch.enable_grad():
            with rules_on(self._net, rules) as record:
                logits = self._scores(scored_call(self._net, inputs))
            t = self._targets(targets, logits)
            chosen = self._target_scores(logits, t, score).detach()
            start = torch.zeros_like(logits)
            start.scatter_(1, t[:, None], chosen[:, None].to(start.dtype))
            if not logits.requires_grad:
                raise BackendError(
                    "lrp: the model's scores do not depend on its input through autograd "
                    "(is its forward run under torch.no_grad?)"
                )
            (relevance,) = torch.autograd.grad(logits, inputs, start, allow_unused=True)
        if relevance is None:
            relevance = torch.zeros_like(inputs)
        return RelevanceCapture(
            logits=logits.detach().float().cpu().numpy(),
            targets=t.cpu().numpy(),
            relevance=relevance.permute(0, 2, 3, 1).float().cpu().numpy(),
            start=chosen.double().cpu().numpy(),
            rules=dict(record.rules),
            merged=tuple(record.merged),
            unruled=tuple(record.unruled),
        )
