"""Dual encoders (CLIP, SigLIP): the image tower explained, the text tower in the score.

:func:`adapt_dual_encoder` claims open_clip ``CLIP``/``CustomTextCLIP`` and
Hugging Face models with ``get_image_features``, ``get_text_features`` and
``logit_scale`` (``CLIPModel``, ``SiglipModel``...). Each
:class:`~seewhy.targets.Prompt` is bound to a :class:`PromptScore`: the text
embeddings, worked out once per text (cached on the :class:`TextSide`, no
gradient), and the model's own scale and bias, so a pass costs the image
tower and one small matrix product.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch

from .._kit.checks import bad_argument
from ..errors import InvalidInput, UnsupportedModel
from ..targets import Class, Prompt, Target, from_json
from .preprocessing import dual_encoder_preprocess
from .text import TextSide
from .towers import hf_tower, open_clip_tower

__all__ = ["PromptScore", "adapt_dual_encoder", "family_of"]


def family_of(model: Any) -> str | None:
    """``"open_clip"``, ``"hf-clip"``, ``"hf-siglip"``, or None for any other model."""
    module = type(model).__module__
    if module.startswith("open_clip") and all(
        hasattr(model, a) for a in ("visual", "encode_text", "logit_scale")
    ):
        return "open_clip"
    if module.startswith("transformers") and all(
        hasattr(model, a)
        for a in ("get_image_features", "get_text_features", "logit_scale", "vision_model")
    ):
        siglip = getattr(model, "logit_bias", None) is not None
        return "hf-siglip" if siglip else "hf-clip"
    return None


def adapt_dual_encoder(
    model: Any, *, tokenizer: Any, processor: Any, prompt: str | None
) -> dict[str, Any] | None:
    """The fields of the seam's ``Adapted`` for a dual encoder (a dict, so this module needs
    no import of the seam's), or None for other models."""
    family = family_of(model)
    if family is None:
        return None
    if prompt is not None:
        raise bad_argument(
            "prompt",
            "no prompt= for a dual encoder (it answers nothing); pass "
            "target=seewhy.targets.Prompt(text) (--target 'prompt:TEXT')",
            prompt,
        )
    kind = str(getattr(getattr(model, "config", None), "model_type", ""))
    if kind.startswith("siglip2"):
        raise UnsupportedModel(
            f"model: {type(model).__name__} (SigLIP 2) cuts each picture into a variable "
            "number of patches, which seewhy does not map back onto the photo yet; SigLIP "
            "(SiglipModel) and open_clip's SigLIP 2 towers (fixed size) are supported"
        )
    tower = open_clip_tower(model) if family == "open_clip" else hf_tower(model, "siglip" in family)
    pre, pre_said = dual_encoder_preprocess(model, family, processor)
    text = TextSide(model, family, tokenizer=tokenizer, processor=processor)
    where = tower.layer or "seewhy's usual default layer"
    bias = " + logit_bias" if text.scale_bias()[1] is not None else ""
    said = (
        f"{type(model).__name__} ({family}): explaining its image tower against text prompts "
        f"(score: logit_scale * cosine{bias}, each text encoded once); default layer {where} "
        f"({tower.why}); preprocessing {pre_said}"
    )
    return {
        "model": tower.module,
        "family": family,
        "said": said,
        "preprocess": pre,
        "bind": Binder(text).bind,
        "layer": tower.layer,
    }


class PromptScore(Target):
    """A :class:`~seewhy.targets.Prompt` bound to a dual encoder's text embeddings.

    The score of an image embedding ``v``: ``scale * cos(v, t_0) (+ bias)``, or
    with several texts the softmax of those logits at the first. Its JSON form
    and caption are the Prompt's.
    """

    kind = "prompt"

    def __init__(
        self,
        prompt: Prompt,
        texts: np.ndarray,
        scale: float,
        bias: float | None,
        *,
        text: TextSide | None = None,
    ):
        self.prompt = prompt
        self.embeddings = texts  # (K, D) unit rows, the explained text first
        self.scale = scale
        self.bias = bias
        self._text = text  # the dual encoder's text side, for other texts (with_text)
        self._others: dict[str, PromptScore] = {}
        self._placed: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    @property
    def sigmoid_loss(self) -> bool:
        """True for SigLIP (trained with the sigmoid loss: it has a logit bias)."""
        return self.bias is not None

    def with_text(self, text: str) -> PromptScore:
        """``text`` scored by the same model with this prompt's tokenizer (LeGrad's
        correction asks for a generic text); encoded once, as every text is."""
        if self._text is None:
            raise UnsupportedModel(f"Prompt({self.prompt.text!r}) was bound without its model")
        if text not in self._others:
            other = Prompt(text, tokenizer=self.prompt.tokenizer)
            found = self._text.embeddings(other.texts, other.tokenizer)
            self._others[text] = PromptScore(other, found, self.scale, self.bias, text=self._text)
        return self._others[text]

    @property
    def classes(self) -> tuple[str, ...]:
        """The texts, the explained one first (they act as classes in the predictions)."""
        return self.prompt.texts

    def _logits(self, output: torch.Tensor) -> torch.Tensor:
        v = output.reshape(len(output), -1).float()
        key = (v.device, v.dtype)
        if key not in self._placed:
            self._placed[key] = torch.as_tensor(self.embeddings, device=v.device, dtype=v.dtype)
        unit = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
        logits = self.scale * (unit @ self._placed[key].T)
        return logits if self.bias is None else logits + self.bias

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        if not isinstance(output, torch.Tensor) or output.ndim < 2:
            raise InvalidInput(
                f"Prompt: expected the image tower's embedding (N, D), got {type(output).__name__}"
            )
        logits = self._logits(output)
        if logits.shape[1] == 1:
            return logits[:, 0]
        return torch.softmax(logits, dim=1)[:, 0]

    def readout(self, outputs: np.ndarray) -> np.ndarray:
        """(N, K) logits of every text, from the image embeddings (numpy)."""
        with torch.no_grad():
            return self._logits(torch.as_tensor(outputs)).numpy()

    def pass_key(self) -> Hashable:
        return ("prompt-bound", id(self))

    def to_json(self) -> dict[str, Any]:
        return self.prompt.to_json()

    def describe(self, label: Callable[[int], str]) -> str:
        return self.prompt.text

    def class_index(self) -> int:
        return 0  # the explained text, first among the texts acting as classes


class Binder:
    """The user's ``target=`` for a dual encoder -> targets scoring its image embedding."""

    def __init__(self, text: TextSide) -> None:
        self.text = text

    def bind(self, target: Any) -> Any:
        """Prompts (and texts) become :class:`PromptScore`; other targets pass as they are."""
        if target is None:
            raise InvalidInput(
                f"target: {self.text.model_name} compares pictures with texts and has no classes; "
                "pass target=seewhy.targets.Prompt('a photo of a cat') (--target 'prompt:a photo "
                "of a cat'), or Prompt(['a cat', 'a dog']) for zero-shot classes"
            )
        done: dict[int, PromptScore] = {}
        if isinstance(target, (list, tuple)):
            return [self._one(t, done) for t in target]
        return self._one(target, done)

    def _one(self, item: Any, done: dict[int, PromptScore]) -> Any:
        if isinstance(item, dict) and item.get("kind") == Prompt.kind:
            item = from_json(item)
        if isinstance(item, str):
            item = Prompt(item)
        if isinstance(item, Prompt):
            if id(item) not in done:
                done[id(item)] = PromptScore(
                    item,
                    self.text.embeddings(item.texts, item.tokenizer),
                    *self.text.scale_bias(),
                    text=self.text,
                )
            return done[id(item)]
        if isinstance(item, (Class, int, np.integer)) and not isinstance(item, bool):
            raise InvalidInput(
                f"target: {self.text.model_name} has no classes, so {item!r} names none; pass "
                "seewhy.targets.Prompt(text), or Prompt([...texts]) to treat texts as classes"
            )
        return item
