"""The seam through which a model that is not a plain image classifier reaches every method.

A vision-language model (and any other kind a recogniser claims) is
explained through the part that sees the pixels; the rest of it (a text
tower, a language model, a detector's decoding) runs inside the *target's
score*. So
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

from .errors import InvalidInput

if TYPE_CHECKING:
    from .backends import Backend
    from .preprocess import ModelSpec, Preprocess
    from .targets import Target

__all__ = [
    "RECOGNISERS",
    "Adapted",
    "AdaptedModelNote",
    "ReadsOut",
    "Recogniser",
    "Seen",
    "adapt",
    "readout",
    "seen",
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
    layer : str or tuple of str, optional
        The default layer chosen for this model (said in ``said``); a tuple
        names several layers whose maps are fused (``fuse="mean"``); None:
        the backend's usual choice.
    rows : callable, optional
        ``rows(batch, targets)`` -> (the batch, one bound target per row), or
        None to keep them: a generative model answers each picture here, or
        splits an answer into one row per token.
    layers : tuple of str, optional
        The only layers whose maps are one per picture, when the tower's own
        layers are not (tiles, or patches without a batch dimension): a map
        read elsewhere would be quietly wrong, so it is refused. None: any.
    layers_why : str
        Why only ``layers`` (said in the refusal).
    sizes : callable, optional
        ``sizes(height, width)`` -> the :class:`~seewhy.preprocess.Preprocess`
        the model's own processor amounts to for a photo of that size, when
        it sizes each photo its own (Qwen2-VL's dynamic resolution); the
        input stream feeds each photo so unless the caller passes
        ``preprocess=``. None: every photo by ``preprocess``.
    """

    model: Any
    family: str
    said: str
    preprocess: Preprocess | None
    bind: Callable[[Any], Any]
    labels: tuple[str, ...] | None = None
    layer: str | tuple[str, ...] | None = None  # a tuple: several layers, maps fused
    rows: Callable[[Any, Any], Any] | None = None
    layers: tuple[str, ...] | None = None
    layers_why: str = ""
    sizes: Callable[[int, int], Preprocess] | None = None

    def check_layer(self, layer: str | tuple[str, ...] | None, method: str) -> None:
        """Refuse, in one line, a layer whose maps are not one per picture (see ``layers``)."""
        names = layer if isinstance(layer, tuple) else (layer,)
        if self.layers is None or all(n is None or n in self.layers for n in names):
            return
        layer = next(n for n in names if n not in self.layers)
        raise InvalidInput(
            f"layer: {layer!r} of this {self.family} model {self.layers_why}, so {method} "
            f"there would not map onto the picture; use layer {' or '.join(self.layers)}"
        )


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


def _found_by(module: str, function: str) -> Recogniser:
    """A recogniser living in ``seewhy.<module>``, imported only when a model is tried.

    ``function(model, tokenizer=, processor=, prompt=)`` returns the keywords
    of an :class:`Adapted`, or None when the model is not its kind.
    """

    def recognise(
        model: Any, *, tokenizer: Any, processor: Any, prompt: str | None
    ) -> Adapted | None:
        from importlib import import_module

        claim = getattr(import_module(f"seewhy.{module}"), function)
        found = claim(model, tokenizer=tokenizer, processor=processor, prompt=prompt)
        return None if found is None else Adapted(**found)

    recognise.__name__ = recognise.__qualname__ = f"{module}.{function}"
    return recognise


#: Tried in order by :func:`adapt`; the first to claim a model adapts it. A new
#: kind of model is one line here and one module (see ARCHITECTURE.md).
RECOGNISERS: list[Recogniser] = [
    _found_by("vlm.dual_encoders", "adapt_dual_encoder"),  # CLIP, SigLIP
    _found_by("vlm.answers", "adapt_generative"),  # LLaVA, Qwen2-VL, PaliGemma, Idefics3
    _found_by("detection.yolo", "adapt_yolo"),  # ultralytics YOLO: detect, segment, classify
    _found_by("detection.segmenters", "adapt_segmenter"),  # HF segmenters, depth models
    _found_by("detection.hf_detectors", "adapt_hf_detector"),  # DETR, Deformable, RT-DETR
    _found_by("detection.open_vocabulary", "adapt_open_vocabulary"),  # OWL-ViT, OWLv2, G-DINO
    _found_by("detection.sam", "adapt_sam"),  # SAM: segment_anything, Hugging Face SamModel
]


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
            from ._kit.checks import bad_argument

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
        from .errors import UnsupportedModel

        raise UnsupportedModel(
            f"tokenizer/processor/prompt: {type(model).__name__} is not a vision-language "
            "model seewhy recognises (open_clip CLIP, Hugging Face CLIP/SigLIP, LLaVA, "
            "Qwen2-VL ...); leave them out to explain it as an image model"
        )
    return None


def _may_be_torch(model: Any) -> bool:
    """A torch module, or a predictor around one (segment_anything's ``SamPredictor``: its
    ``.model``), told without importing torch (it is loaded if the model is one)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and (
        isinstance(model, torch.nn.Module)
        or isinstance(getattr(model, "model", None), torch.nn.Module)
    )


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


#: The families whose texts can act as classes (dual encoders: a text per class, zero-shot).
_DUAL_ENCODERS = ("open_clip", "hf-clip", "hf-siglip")


@dataclass(frozen=True)
class Seen:
    """A model as every entry point sees it: explain, the metrics, the sanity check, the
    audit, :func:`seewhy.layers`, :func:`seewhy.model_spec` and :func:`seewhy.predict`.

    One place decides what a vision-language model is to them (the module that
    sees the pixels, its preprocessing, its targets bound to the rest of the
    model), so no entry point adapts a model its own way.

    Parameters
    ----------
    model : object
        What the backend runs: the user's model, or the adapted module.
    adapted : Adapted or None
        The adaptation, or None for any other model.
    """

    model: Any
    adapted: Adapted | None

    def spec(
        self,
        backend: Backend | None = None,
        *,
        preprocess: Preprocess | None = None,
        labels: Sequence[str] | None = None,
        try_sizes: bool = False,
    ) -> ModelSpec:
        """The spec of :attr:`model`: the caller's, then the adaptation's, then the usual order."""
        from .spec import resolve_spec

        if self.adapted is not None:
            preprocess = preprocess or self.adapted.preprocess
            labels = labels or self.adapted.labels
        return resolve_spec(
            self.model, backend, preprocess=preprocess, labels=labels, try_sizes=try_sizes
        )

    def targets(self, target: Any, family: str | None = None, *, who: str = "target") -> Any:
        """``target`` as the backend of :attr:`model` scores it.

        ``target`` is the user's (a Prompt, an Answer, one per image...) or what
        an Explanation recorded (``params["target"]``: JSON forms, exact answer
        tokens included) with its ``params["model_family"]`` as ``family``; the
        metrics and the sanity check score those again. Any other model's
        targets pass unchanged.
        """
        if self.adapted is None:
            if family is not None:
                raise _other_model(who, family, "no vision-language model")
            return target
        if family is not None and family != self.adapted.family:
            raise _other_model(who, family, self.adapted.family)
        if target is None:
            raise InvalidInput(
                f"{who}: {self.adapted.family} models have no classes to default to; pass the "
                "Prompt or Answer explained (or the Explanation, which records it)"
            )
        items = target if isinstance(target, list) else [target]
        done: dict[str, Any] = {}  # one bound target per distinct form: one column each
        bound = [_bound_again(self.adapted, item, done) for item in items]
        return bound if isinstance(target, list) else bound[0]

    def zero_shot(self, labels: Sequence[str] | None, *, who: str) -> ReadsOut | None:
        """A dual encoder's ``labels`` as the texts it classifies among (None: no adaptation).

        Anything else adapted has no classes to list: one line says what to use.
        """
        if self.adapted is None:
            return None
        if self.adapted.family not in _DUAL_ENCODERS:
            raise InvalidInput(
                f"{who}: this {self.adapted.family} model answers in words, not classes; "
                "seewhy.explain(model, images, prompt=...) records its answer"
            )
        if not labels:
            raise InvalidInput(
                f"{who}: this {self.adapted.family} model compares pictures with texts and has no "
                "classes; pass labels=['a cat', 'a dog', ...] to classify among those texts "
                "(zero-shot)"
            )
        from .targets import Prompt

        found: ReadsOut = self.adapted.bind(Prompt(list(labels)))
        return found


def seen(
    model: Any, *, tokenizer: Any = None, processor: Any = None, prompt: str | None = None
) -> Seen:
    """``model`` as every entry point sees it (see :class:`Seen`); :func:`adapt`'s keywords.

    Parameters
    ----------
    model : object
        The user's model, left as it is.
    tokenizer, processor, prompt : object, optional
        As for :func:`adapt`.

    Returns
    -------
    Seen
    """
    adapted = adapt(model, tokenizer=tokenizer, processor=processor, prompt=prompt)
    return Seen(model if adapted is None else adapted.model, adapted)


def _other_model(who: str, family: str, given: str) -> Exception:
    return InvalidInput(
        f"{who}: the explanation was made with a {family} vision-language model, but the model "
        f"given is {given}; pass the model that was explained (the whole model, with the "
        "tokenizer= or processor= explain took)"
    )


def _bound_again(adapted: Adapted, item: Any, done: dict[str, Any]) -> Any:
    """One target bound to ``adapted``; a recorded JSON form with its exact answer tokens."""
    import json

    if not isinstance(item, dict):
        return adapted.bind(item)
    key = json.dumps(item, sort_keys=True)
    if key not in done:
        from .targets import from_json

        done[key] = adapted.bind(from_json(item))
        if item.get("kind") == "answer" and "tokens" in item:  # as generated, not re-tokenised
            from .vlm.answers import AnswerScore

            first = done[key]
            done[key] = AnswerScore(
                first.adapter,
                str(item["prompt"]),
                tuple(int(t) for t in item["tokens"]),
                text=str(item["text"]),
                per_token=bool(item.get("per_token")),
                token=item.get("token"),
                generated=bool(item.get("generated")),
            )
    return done[key]
