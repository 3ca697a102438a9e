"""The text side of a generative VLM: its processor, the prompt's tokens, greedy answers.

The prompt's tokens are the processor's own: the chat template applied to
one user turn (the image, then the prompt) with the generation prompt (a
model without one, PaliGemma: the image token then the prompt, which its
processor lays out itself), then the processor run on that text and a
blank picture of the explained input's size, so the image tokens are
expanded exactly as the model expects (LLaVA, PaliGemma: one per patch;
Qwen2-VL: one per merged patch, with its grid and token types). Worked
out once per prompt and input size, without gradients.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInput, UnsupportedModel

__all__ = ["MAX_NEW_TOKENS", "PromptTokens", "answer_ids", "find_processor", "prompt_tokens"]

#: The most tokens a greedy answer (no Answer given) may have.
MAX_NEW_TOKENS = 32


def find_processor(model: Any, processor: Any, tokenizer: Any, *, chat: bool = True) -> Any:
    """The model's processor: the one passed, else the one saved in the model's own folder.

    Never downloads. ``tokenizer=`` replaces the processor's tokenizer. ``chat``:
    the model's prompts need the processor's chat template.
    """
    if processor is None:
        folder = getattr(model.config, "_name_or_path", "") or ""
        processor = _local_processor(folder) if folder else None
    if processor is None or getattr(processor, "image_processor", None) is None:
        raise InvalidInput(
            f"processor: {type(model).__name__} needs its processor (chat template, image "
            "processor, tokenizer); pass processor=AutoProcessor.from_pretrained(folder) "
            "(--model FOLDER reads it from the folder)"
        )
    if tokenizer is not None:
        processor.tokenizer = tokenizer
    if chat and not getattr(processor, "chat_template", None):
        raise InvalidInput(
            "processor: it has no chat template; set processor.chat_template (the model "
            "card gives it) so the prompt is laid out as the model was trained"
        )
    return processor


@functools.lru_cache(maxsize=4)
def _local_processor(folder: str) -> Any:
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(folder, local_files_only=True)  # type: ignore[no-untyped-call]
    except (OSError, ValueError, TypeError):
        return None


@dataclass(frozen=True)
class PromptTokens:
    """One prompt's model inputs for one input size: ids (1, L) and what goes with them."""

    ids: torch.Tensor  # (1, L) int64, image tokens expanded
    extra: dict[str, torch.Tensor]  # attention_mask, mm_token_type_ids, image_grid_thw ...


def prompt_tokens(
    processor: Any, prompt: str, size: tuple[int, int], *, chat: bool = True
) -> PromptTokens:
    """The processor's inputs for ``prompt`` and a picture of ``size`` (H, W); pixels dropped.

    ``chat``: through the chat template; else the image token, then the prompt.
    """
    return _prompt_tokens(processor, prompt, size, chat)


@functools.lru_cache(maxsize=32)
def _prompt_tokens(processor: Any, prompt: str, size: tuple[int, int], chat: bool) -> PromptTokens:
    if chat:
        turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    else:
        text = f"{processor.image_token}{prompt}"
    blank = np.zeros((*size, 3), np.uint8)
    made = processor(text=[text], images=[blank], return_tensors="pt")
    extra = {
        key: value
        for key, value in made.items()
        if key not in ("input_ids", "pixel_values", "labels") and isinstance(value, torch.Tensor)
    }
    return PromptTokens(made["input_ids"], extra)


def answer_ids(processor: Any, text: str) -> tuple[int, ...]:
    """The answer's tokens as they follow the prompt (no special tokens added).

    Kept per tokenizer and text: tokenising took ~0.3 ms of every explained
    answer, and ``tokenizer=`` may swap the processor's tokenizer (hence the key).
    """
    return _answer_ids(processor.tokenizer, text)


@functools.lru_cache(maxsize=64)
def _answer_ids(tokenizer: Any, text: str) -> tuple[int, ...]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise InvalidInput(f"Answer: the tokenizer makes no token of {text!r}")
    return tuple(int(i) for i in ids)


def token_text(processor: Any, token: int) -> str:
    """How one token reads, for captions."""
    return str(processor.tokenizer.decode([token])).strip() or repr(token)


def greedy_answer(
    vlm: Any, processor: Any, tokens: PromptTokens, pixels: dict[str, torch.Tensor]
) -> tuple[int, ...]:
    """The model's own greedy answer (``generate``, at most :data:`MAX_NEW_TOKENS`), as ids.

    Runs on the model's twin, so no state (a rope cache, the training flag)
    is left on the user's model; the end-of-sequence and padding tokens are
    dropped.
    """
    from ..backends.torch.twin import run_on_twin

    inputs = {
        "input_ids": tokens.ids.to(pixels["pixel_values"].device),
        **_on(tokens.extra, pixels),
    }

    def generate(net: Any) -> Any:
        with torch.no_grad():
            return net.generate(
                **inputs,
                **pixels,
                do_sample=False,
                max_new_tokens=MAX_NEW_TOKENS,
                suppress_tokens=_image_tokens(vlm),  # a placeholder is never an answer
            )

    made = run_on_twin(vlm, generate)
    new = [int(t) for t in made[0, tokens.ids.shape[1] :]]
    stops = _stop_ids(vlm, processor)
    while new and new[-1] in stops:
        new.pop()
    if not new:
        raise UnsupportedModel(
            "Answer: the model's greedy answer is empty; pass target=seewhy.targets.Answer(text, "
            "prompt=...) (--answer TEXT) to explain an answer of your own"
        )
    return tuple(new)


def _on(extra: dict[str, torch.Tensor], pixels: dict[str, torch.Tensor]) -> dict[str, Any]:
    device = pixels["pixel_values"].device
    return {k: v.to(device) for k, v in extra.items() if k not in pixels}


def _image_tokens(vlm: Any) -> list[int]:
    names = ("image_token_id", "image_token_index", "video_token_id")
    return [int(v) for v in (getattr(vlm.config, n, None) for n in names) if isinstance(v, int)]


def _stop_ids(vlm: Any, processor: Any) -> set[int]:
    found: set[int] = set()
    for source in (getattr(vlm, "generation_config", None), processor.tokenizer):
        for name in ("eos_token_id", "pad_token_id"):
            value = getattr(source, name, None)
            if isinstance(value, int):
                found.add(value)
            elif isinstance(value, (list, tuple)):
                found.update(int(v) for v in value)
    return found
