"""A dual encoder's text side: its tokenizer, its text tower, once per text.

Text embeddings do not depend on the image, so each text is tokenised and
encoded once (no gradient, the text tower in eval mode for the call, every
module's flag put back), and kept for every later pass and call while the
model's parameters keep their versions (a training step between two calls of
one Explainer encodes the texts again).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import torch

from ..backends.model_lock import model_lock
from ..backends.torch.structure import eval_mode
from ..errors import InvalidInput

__all__ = ["TextSide"]

#: open_clip's own BPE vocabulary's size: its SimpleTokenizer fits a text tower of this many.
_OPEN_CLIP_VOCABULARY = 49408


class TextSide:
    """Tokenizer, text tower, scale and bias of one dual encoder, with the texts' embeddings.

    Parameters
    ----------
    model : torch.nn.Module
        The whole dual encoder (never changed).
    family : str
        ``"open_clip"``, ``"hf-clip"`` or ``"hf-siglip"``.
    tokenizer, processor : object, optional
        The caller's; a processor's ``tokenizer`` is used.
    """

    def __init__(self, model: Any, family: str, *, tokenizer: Any, processor: Any) -> None:
        self.model = model
        self.family = family
        self.model_name = type(model).__name__
        given = tokenizer if tokenizer is not None else processor
        self.tokenizer = getattr(given, "tokenizer", given)  # a processor's own tokenizer
        self._found: Any = None
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self._weights: int | None = None  # the parameters' versions the cache was made with
        self._parameters = tuple(model.parameters())  # walking the modules each call costs more
        self.encoded = 0  # text-tower calls so far (one per batch of new texts)

    def scale_bias(self) -> tuple[float, float | None]:
        """The model's ``logit_scale.exp()`` and ``logit_bias`` (None without one), as now."""
        with torch.no_grad():
            scale = float(self.model.logit_scale.detach().float().exp())
            bias = getattr(self.model, "logit_bias", None)
            return scale, None if bias is None else float(bias.detach().float().reshape(-1)[0])

    def embeddings(self, texts: tuple[str, ...], tokenizer: Any = None) -> np.ndarray:
        """(K, D) unit-length embeddings of ``texts``, encoding only those not seen before."""
        chosen = tokenizer if tokenizer is not None else self._tokenizer()
        chosen = getattr(chosen, "tokenizer", chosen)
        weights = _versions(self._parameters)
        if weights != self._weights:
            self._cache.clear()
            self._weights = weights
        new = [t for t in dict.fromkeys(texts) if (t, id(chosen)) not in self._cache]
        if new:
            for text, row in zip(new, self._encode(new, chosen), strict=True):
                self._cache[(text, id(chosen))] = row
        return np.stack([self._cache[(t, id(chosen))] for t in texts])

    def _encode(self, texts: list[str], tokenizer: Any) -> np.ndarray:
        device = next(self.model.parameters()).device
        with model_lock(self.model), eval_mode(self.model), torch.no_grad():
            if self.family == "open_clip":
                tokens = tokenizer(texts)
                ids = tokens["input_ids"] if not isinstance(tokens, torch.Tensor) else tokens
                features = self.model.encode_text(torch.as_tensor(ids).to(device))
            else:
                features = self.model.get_text_features(**self._hf_tokens(texts, tokenizer, device))
                features = getattr(features, "pooler_output", features)
        self.encoded += 1
        values = features.float().cpu().numpy()
        norms = np.linalg.norm(values, axis=1, keepdims=True)
        return (values / np.maximum(norms, 1e-12)).astype(np.float32)

    def _hf_tokens(self, texts: list[str], tokenizer: Any, device: Any) -> dict[str, Any]:
        """Hugging Face tokens: SigLIP was trained on texts padded to the full length."""
        config = getattr(self.model.config, "text_config", None)
        longest = getattr(config, "max_position_embeddings", None)
        padding = "max_length" if self.family == "hf-siglip" else True
        found = tokenizer(
            texts, padding=padding, truncation=True, max_length=longest, return_tensors="pt"
        )
        kept = {"input_ids": found["input_ids"].to(device)}
        if self.family != "hf-siglip" and "attention_mask" in found:
            kept["attention_mask"] = found["attention_mask"].to(device)
        return kept

    def _tokenizer(self) -> Any:
        """The caller's tokenizer, else the one the model says it uses; else one line."""
        if self.tokenizer is not None:
            return self.tokenizer
        if self._found is None:
            self._found = self._own_tokenizer()
        return self._found

    def _own_tokenizer(self) -> Any:
        if self.family == "open_clip":
            text = getattr(self.model, "text", None)
            built_in = text is None or type(text).__name__ == "TextTransformer"
            vocabulary = getattr(text if text is not None else self.model, "vocab_size", None)
            if built_in and vocabulary == _OPEN_CLIP_VOCABULARY:
                return _open_clip_tokenizer(getattr(self.model, "context_length", 77))
            raise InvalidInput(
                f"Prompt: {self.model_name}'s text tower does not use open_clip's own "
                "vocabulary; pass tokenizer=open_clip.get_tokenizer(MODEL_NAME)"
            )
        folder = str(getattr(getattr(self.model, "config", None), "_name_or_path", "") or "")
        if folder and os.path.isdir(folder):
            from transformers import AutoTokenizer

            try:
                return AutoTokenizer.from_pretrained(folder, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise InvalidInput(
                    f"Prompt: no tokenizer could be read from {folder} ({exc}); pass tokenizer= "
                    "or processor="
                ) from None
        raise InvalidInput(
            f"Prompt: {self.model_name} does not say where its tokenizer is; pass "
            "tokenizer=AutoTokenizer.from_pretrained(...) or processor=AutoProcessor..."
        )


@functools.lru_cache(maxsize=4)
def _open_clip_tokenizer(context_length: int) -> Any:
    """open_clip's own BPE tokenizer, built once per context length: reading its
    vocabulary costs ~0.15 s, more than a small model's whole explanation."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


def _versions(parameters: tuple[torch.Tensor, ...]) -> int:
    """The parameters' in-place versions, summed: an optimizer step or a load_state_dict
    (which copies into the same tensors) raises it."""
    total = 0
    for p in parameters:
        try:
            total += p._version
        except RuntimeError:  # an inference tensor keeps no version (and cannot change in place)
            total -= 1
    return total
