"""A text prompt scored by a dual encoder (CLIP, SigLIP): where in the picture is "a red car"?"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from .._kit.checks import bad_argument
from ..errors import UnsupportedModel
from .base import Target

__all__ = ["Prompt"]


def _texts(value: Any, name: str) -> tuple[str, ...]:
    """One text or a non-empty list of them, each non-blank, as a tuple."""
    items = [value] if isinstance(value, str) else value
    if (
        isinstance(items, (bytes, dict))
        or not isinstance(items, Sequence)
        or not items
        or not all(isinstance(t, str) and t.strip() for t in items)
    ):
        raise bad_argument(
            name, "a non-empty text or a list of non-empty texts", value, where="Prompt"
        )
    return tuple(items)


class Prompt(Target):
    """The model's own image-text logit for ``text``; among ``against``: its softmax.

    For dual encoders (open_clip ``CLIP``/``CustomTextCLIP``, Hugging Face
    ``CLIPModel``, ``SiglipModel`` and their kin). The score is what the model
    computes for an image and a text, ``logit_scale.exp() * cosine`` (plus
    SigLIP's ``logit_bias``). With ``against`` (or a list of texts, the first
    explained) the score is the first text's softmax probability among all
    of them, as zero-shot classification does, and the predictions list the
    texts as classes. The text tower runs once per text, not once per pass.

    Parameters
    ----------
    text : str or sequence of str
        What to find in the picture; a list: the first, against the others.
    against : sequence of str, optional
        The other texts it competes with.
    tokenizer : object, optional
        The text tower's tokenizer, when the model does not say which it is
        (an open_clip tokenizer, a Hugging Face tokenizer or processor). Not
        part of the JSON form.

    Examples
    --------
    >>> seewhy.explain(clip, "photo.jpg", target=Prompt("a red car"))  # doctest: +SKIP
    >>> zero_shot = Prompt("a cat", against=["a dog", "a car"])
    >>> seewhy.explain(clip, "photo.jpg", target=zero_shot)  # doctest: +SKIP
    """

    kind = "prompt"

    def __init__(
        self,
        text: str | Sequence[str],
        *,
        against: Sequence[str] | None = None,
        tokenizer: Any = None,
    ) -> None:
        texts = _texts(text, "text")
        others = () if against is None else _texts(against, "against")
        self.text = texts[0]
        self.against = tuple(dict.fromkeys(t for t in (*texts[1:], *others) if t != texts[0]))
        self.tokenizer = tokenizer

    @property
    def texts(self) -> tuple[str, ...]:
        """The explained text first, then the ones it competes with (no repeats)."""
        return (self.text, *self.against)

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        raise UnsupportedModel(
            f"Prompt({self.text!r}): a text prompt needs a dual encoder (open_clip CLIP, "
            "Hugging Face CLIPModel or SiglipModel) passed as the model itself, not its image "
            "tower; for an embedding model use seewhy.targets.Similarity(text_embedding)"
        )

    def pass_key(self) -> Hashable:
        return (self.kind, self.texts, id(self.tokenizer))

    def to_json(self) -> dict[str, Any]:
        form: dict[str, Any] = {"kind": self.kind, "text": self.text}
        if self.against:
            form["against"] = list(self.against)
        return form

    def describe(self, label: Callable[[int], str]) -> str:
        return self.text
