"""``Answer``: a vision-language model's answer to a prompt, as a target."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from .._kit.checks import bad_argument, flag
from ..errors import UnsupportedModel
from .base import Target


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad_argument(name, "a non-empty text", value, where="Answer")
    return value


class Answer(Target):
    """The log-probability a vision-language model gives ``text`` as its answer to ``prompt``.

    The score is teacher-forced: the model reads the chat-templated prompt
    with the image, then the answer's tokens, and the score is the sum of
    the answer tokens' log-probabilities. So a map says which part of the
    picture made the model say *this* answer. Served for Hugging Face LLaVA,
    LLaVA-NeXT, PaliGemma, Qwen2-VL / Qwen2.5-VL and Idefics3 / SmolVLM models
    (:mod:`seewhy.vlm`); any other model refuses it in one line. Models that
    cut a picture into tiles (LLaVA-NeXT, Idefics3) are read at layer
    ``tiles``: one map per picture, each tile's part where the tile lies.
    Every gradient, CAM and perturbation method explains it;
    ``answer-attention`` shows where the language model looked instead
    (:class:`seewhy.methods.answer_attention.AnswerAttention`).

    Parameters
    ----------
    text : str
        The answer explained (tokenised as the model's tokenizer does, after
        the prompt).
    prompt : str
        The question or instruction the answer replies to.
    per_token : bool
        One map per answer token (each token's own log-probability, in rows
        captioned with the token) instead of one for the whole answer.
    """

    kind = "answer"

    def __init__(self, text: str, *, prompt: str, per_token: bool = False) -> None:
        self.text = _text(text, "text")
        self.prompt = _text(prompt, "prompt")
        self.per_token = flag(per_token, "per_token", where="Answer")

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        raise UnsupportedModel(
            "Answer: this target needs a vision-language model (Hugging Face LLaVA, LLaVA-NeXT, "
            "PaliGemma, Qwen2-VL, Idefics3); pass one as the model, with processor= when its "
            "folder has none"
        )

    def pass_key(self) -> Hashable:
        return (self.kind, self.text, self.prompt, self.per_token)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "prompt": self.prompt,
            "per_token": self.per_token,
        }

    def describe(self, label: Callable[[int], str]) -> str:
        return f"answer: {self.text}"
