"""The seam through which a vision-language model reaches every method.

A VLM is explained through the part that sees the pixels; the rest of it
(a text tower, a language model) runs inside the *target's score*. So
:func:`adapt` turns the user's model into an :class:`Adapted`: the module
the usual backend explains (pixels in, an output the bound targets score),
what seewhy says about it, the preprocessing the model declares, and
``bind``, which turns the user's ``target=`` (a Prompt, an Answer, ...)
into ordinary :class:`seewhy.targets.Target` objects scoring that output.
Every method then works unchanged.

Recognisers are tried in order (:data:`RECOGNISERS`); none claiming the
model means it is explained exactly as before. Nothing here imports a
framework: a recogniser checks the model's class module first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from ..preprocess import Preprocess
    from ..targets import Target

__all__ = [
    "RECOGNISERS",
    "Adapted",
    "AdaptedModelNote",
    "ReadsOut",
    "Recogniser",
    "adapt",
    "readout",
]


class AdaptedModelNote(UserWarning):
    """What seewhy explains of a vision-language model, and what it chose for it."""


@dataclass(frozen=True)
class Adapted:
    """A vision-language model as the backends see it.

    Parameters
    ----------
    model : torch.nn.Module
        What the backend explains: (N, C, H, W) pixels in, an output the
        bound targets score. It holds the user's own modules (no copy of a
        weight), so layer names stay the user's where possible.
    family : str
        ``"open_clip"``, ``"hf-clip"``, ``"hf-siglip"``, ``"llava"``...: in
        params and messages.
    said : str
        The one line seewhy says: which part is explained, what it guessed.
    preprocess : Preprocess or None
        Read from the model or its processor; None: seewhy's usual hints.
    bind : callable
        The user's ``target=`` -> what :class:`seewhy.Explainer` takes
        (targets scoring ``model``'s output, class indices, None).
    labels : tuple of str, optional
        Class names, when the model has fixed ones.
    layer : str, optional
        The default layer chosen for this model (said in ``said``); None:
        the backend's usual choice.
    rows : callable, optional
        ``rows(batch, targets)`` -> (the batch, one bound target per row), or
        None to keep them: a generative model answers each picture here, or
        splits an answer into one row per token.
    """

    model: Any
    family: str
    said: str
    preprocess: Preprocess | None
    bind: Callable[[Any], Any]
    labels: tuple[str, ...] | None = None
    layer: str | None = None
    rows: Callable[[Any, Any], Any] | None = None


class Recogniser(Protocol):
    """Claims a model (an :class:`Adapted`) or passes (None)."""

    def __call__(
        self, model: Any, *, tokenizer: Any, processor: Any, prompt: str | None
    ) -> Adapted | None: ...


@runtime_checkable
class ReadsOut(Protocol):
    """A bound target whose texts act as classes (a Prompt among several).

    ``classes`` names the classes; ``readout`` turns the model's output, as
    numpy, into their scores, which the predictions list.
    """

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names, in the order of :meth:`readout`'s columns."""
        ...

    def readout(self, outputs: np.ndarray) -> np.ndarray:
        """(N, K) class scores from the (N, D) outputs."""
        ...


def _dual_encoder(
    model: Any, *, tokenizer: Any, processor: Any, prompt: str | None
) -> Adapted | None:
    from .dual_encoders import adapt_dual_encoder

    found = adapt_dual_encoder(model, tokenizer=tokenizer, processor=processor, prompt=prompt)
    return None if found is None else Adapted(**found)


def _generative(
    model: Any, *, tokenizer: Any, processor: Any, prompt: str | None
) -> Adapted | None:
    from .answers import adapt_generative

    found = adapt_generative(model, tokenizer=tokenizer, processor=processor, prompt=prompt)
    return None if found is None else Adapted(**found)


#: Tried in order by :func:`adapt`; the first to claim a model adapts it.
RECOGNISERS: list[Recogniser] = [_dual_encoder]
RECOGNISERS.append(_generative)  # generative VLMs: LLaVA, Qwen2-VL (answers.py)


def adapt(
    model: Any, *, tokenizer: Any = None, processor: Any = None, prompt: str | None = None
) -> Adapted | None:
    """The model as its image-seeing part, or None when it is not a vision-language model.

    Parameters
    ----------
    model : object
        The user's model, left as it is.
    tokenizer, processor : object, optional
        The model's own, when seewhy cannot find them beside the model.
    prompt : str, optional
        The text prompt of a generative vision-language model.

    Returns
    -------
    Adapted or None
    """
    if not _may_be_torch(model):
        if tokenizer is not None or processor is not None or prompt is not None:
            from .._kit.checks import bad_argument

            raise bad_argument(
                "tokenizer/processor/prompt",
                "a PyTorch vision-language model (open_clip, Hugging Face CLIP, SigLIP, LLaVA, "
                "Qwen2-VL ...) to go with them",
                type(model).__name__,
            )
        return None
    for recognise in RECOGNISERS:
        found = recognise(model, tokenizer=tokenizer, processor=processor, prompt=prompt)
        if found is not None:
            return found
    if tokenizer is not None or processor is not None or prompt is not None:
        from ..errors import UnsupportedModel

        raise UnsupportedModel(
            f"tokenizer/processor/prompt: {type(model).__name__} is not a vision-language "
            "model seewhy recognises (open_clip CLIP, Hugging Face CLIP/SigLIP, LLaVA, "
            "Qwen2-VL ...); leave them out to explain it as an image model"
        )
    return None


def _may_be_torch(model: Any) -> bool:
    """A torch module, told without importing torch (it is loaded if the model is one)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def readout(
    objects: Sequence[Target], outputs: np.ndarray
) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """The class scores and names of targets whose texts act as classes, else None.

    Only when every image's target reads out the same classes (one set of
    prompts for all): the predictions then list the prompts.
    """
    if not objects or not all(isinstance(t, ReadsOut) for t in objects):
        return None
    first: Any = objects[0]
    if any(t.classes != first.classes for t in objects):  # type: ignore[attr-defined]
        return None
    return first.readout(outputs), first.classes
