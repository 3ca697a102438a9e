"""Grounding DINO (Hugging Face): open-vocabulary detection whose text enters the image side.

Unlike OWL-ViT, Grounding DINO fuses the text into its encoder and decoder,
so every pass runs with the prompt: the texts of the targets bound, joined
as the model reads them ("a cat . a dog ."). Only the text backbone (BERT)
does not see the image: its output is worked out once per prompt (no
gradient) and reused. Each query's score for a text is its largest logit
over that text's tokens, as the model's post-processing reads it; a
``Box(xyxy, text=)`` scores the best-overlapping query's, a ``Prompt`` finds
the query scoring its text highest and explains that box.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .hf_common import explained, to_xyxy

__all__ = ["GroundedTexts", "grounded_module"]


class _Cache:
    """The text backbone's outputs by prompt tokens (shared by the module's twins)."""

    def __init__(self) -> None:
        self.kept: dict[tuple[Any, ...], torch.Tensor] = {}


class _CachedText(nn.Module):
    """The user's text backbone, run once per prompt without gradients, its output reused."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.__dict__["cache"] = _Cache()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: Any = None,
        token_type_ids: Any = None,
        position_ids: Any = None,
        **kwargs: Any,
    ) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        parts = (input_ids, attention_mask, token_type_ids, position_ids)
        key = tuple(
            None if p is None else (p[:1].cpu().numpy().tobytes(), tuple(p.shape[1:]))
            for p in parts
        )
        cache: _Cache = self.__dict__["cache"]
        if key not in cache.kept:
            with torch.no_grad():
                first = [None if p is None else p[:1] for p in parts]
                cache.kept[key] = self.backbone(*first, return_dict=True).last_hidden_state
        found = cache.kept[key]
        return BaseModelOutput(last_hidden_state=found.expand(len(input_ids), *found.shape[1:]))


class GroundedTexts:
    """The prompt a Grounding DINO reads: texts joined with " . ", each text's token span."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.texts: tuple[str, ...] = ()
        self.spans: dict[str, tuple[int, int]] = {}
        self.ids = self._tokens()  # no text yet: the separator alone (a pass before binding)

    def include(self, texts: tuple[str, ...]) -> None:
        """Read ``texts`` too from now on (the prompt grows; each text keeps one span)."""
        new = tuple(t for t in texts if t not in self.texts)
        if new:
            self.texts = self.texts + new
            self.ids = self._tokens()

    def _tokens(self) -> torch.Tensor:
        """(1, L) the prompt's token ids: [CLS] text . text . [SEP]; each text's span noted."""
        ids: list[int] = []
        if self.tokenizer.cls_token_id is not None:
            ids.append(int(self.tokenizer.cls_token_id))
        dot = self.tokenizer(".", add_special_tokens=False)["input_ids"]
        for text in self.texts:
            piece = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            self.spans[text] = (len(ids), len(ids) + len(piece))
            ids.extend([*piece, *dot])
        if not self.texts:
            ids.extend(dot)
        if self.tokenizer.sep_token_id is not None:
            ids.append(int(self.tokenizer.sep_token_id))
        return torch.tensor([ids], dtype=torch.long)

    def logits(self, token_logits: torch.Tensor, text: str) -> torch.Tensor:
        """(Q,) each query's largest logit over ``text``'s tokens."""
        start, stop = self.spans[text]
        return token_logits[:, start:stop].max(dim=-1).values


def grounded_module(model: Any, texts: GroundedTexts) -> nn.Module:
    """The explained mirror of ``model``: its text backbone cached, reading ``texts``' prompt."""
    from ..vlm.towers import _mirror
    from .decoder_attention import query_attention

    inner = _mirror(model.model, text_backbone=_CachedText(model.model.text_backbone))
    module = explained(_mirror(model, model=inner), _decode, query_attention)
    module.__dict__["seewhy_prompt"] = texts
    return module


def _decode(net: Any, pixels: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    texts: GroundedTexts = net.__dict__["seewhy_prompt"]
    n = len(pixels)
    ids = texts.ids.to(pixels.device).expand(n, -1)
    out = super(type(net), net).forward(
        pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids)
    )
    boxes = to_xyxy(out.pred_boxes, int(pixels.shape[-2]), int(pixels.shape[-1]))
    zeros = boxes.new_zeros(boxes.shape[:2])
    return [{"boxes": boxes[i], "tokens": out.logits[i], "scores": zeros[i]} for i in range(n)]
