"""Open-vocabulary detectors (Hugging Face OWL-ViT, OWLv2, Grounding DINO): what a text
finds, and why.

:func:`adapt_open_vocabulary` claims ``OwlViTForObjectDetection``,
``Owlv2ForObjectDetection`` and ``GroundingDinoForObjectDetection`` (whose
text enters its image side: see :mod:`.grounding`). For OWL the module
explained is a mirror of the user's model (see :mod:`.hf_common`) running
its image side only: per picture,
each patch query's box in model-input pixels and the features its class head
reads. A text is encoded once (its text tower, no gradient, cached while the
weights keep their versions, as for CLIP), and the class head, the model's
own, scores the queries against it inside the target's score:

- ``Box(xyxy, text="a cat")`` scores the query whose box overlaps ``xyxy``
  most by its logit for "a cat";
- ``Prompt("a cat")`` finds, per picture, the query scoring "a cat" highest
  and explains that box (a ``Box`` with the text, drawn on its panel).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._kit.checks import bad_argument
from ..errors import InvalidInput
from ..inputs.rows import rows_of
from ..targets import Box, Prompt, Target
from .hf_common import explained, pixels_of, to_xyxy
from .hf_detectors import with_sizes
from .hf_preprocessing import detector_preprocess

__all__ = ["TextBox", "adapt_open_vocabulary", "open_vocabulary_family"]

_FAMILIES = {
    "OwlViTForObjectDetection": "owlvit",
    "Owlv2ForObjectDetection": "owlv2",
    "GroundingDinoForObjectDetection": "grounding-dino",
}
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def open_vocabulary_family(model: Any) -> str | None:
    """``"owlvit"``, ``"owlv2"`` or ``"grounding-dino"``, or None for other models."""
    for cls in type(model).__mro__:
        if cls.__module__.startswith("transformers.") and cls.__name__ in _FAMILIES:
            return _FAMILIES[cls.__name__]
    return None


def _decode(net: Any, pixels: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Each picture's patch queries: boxes (P, 4) in input pixels, class-head features (P, D);
    ``scores`` are zeros (nothing is scored before a text is), kept so the output reads as a
    detector's, one dict per picture."""
    feature_map = net.image_embedder(pixel_values=pixels)[0]
    n, h, w, d = feature_map.shape
    feats = feature_map.reshape(n, h * w, d)
    boxes = to_xyxy(net.box_predictor(feats, feature_map), int(pixels.shape[-2]),
                    int(pixels.shape[-1]))  # fmt: skip
    zeros = boxes.new_zeros(boxes.shape[:2])
    return [{"boxes": boxes[i], "feats": feats[i], "scores": zeros[i]} for i in range(n)]


class _OpenVocabulary:
    """One claimed model: its mirror, its text side (OWL: a text tower apart; Grounding DINO:
    the prompt its passes read)."""

    def __init__(self, model: Any, family: str, tokenizer: Any, processor: Any) -> None:
        self.family = family
        self.name = type(model).__name__
        self.grounded: Any = None
        self.text: Any = None
        if family == "grounding-dino":
            from .grounding import GroundedTexts, grounded_module

            self.grounded = GroundedTexts(_tokenizer(model, tokenizer, processor))
            self.module = grounded_module(model, self.grounded)
            return
        from ..vlm.text import TextSide

        self.module = explained(model, _decode)
        self.text = TextSide(getattr(model, family), "hf-clip", tokenizer=tokenizer,
                             processor=processor)  # fmt: skip
        self._queries: dict[str, np.ndarray] = {}

    def prepare(self, text: str) -> None:
        """Make ``text`` scoreable: its embedding encoded once (OWL), or read in the prompt."""
        if self.grounded is not None:
            self.grounded.include((text,))
        elif text not in self._queries:
            self._queries[text] = self.text.embeddings((text,))[0]

    def logits(self, net: Any, item: dict[str, torch.Tensor], text: str) -> torch.Tensor:
        """(P,) every query's logit for ``text`` in one picture's output, by ``net``'s head."""
        if self.grounded is not None:
            found_tokens: torch.Tensor = self.grounded.logits(item["tokens"], text)
            return found_tokens
        feats = item["feats"]
        q = torch.as_tensor(self._queries[text], device=feats.device, dtype=feats.dtype)
        found: torch.Tensor = net.class_predictor(feats[None], q[None, None])[0]
        return found[0, :, 0]

    # -- binding -----------------------------------------------------------------

    def bind(self, target: Any) -> Any:
        """``Box(..., text=)`` -> :class:`TextBox`; a Prompt -> found per picture in rows."""
        if target is None:
            raise InvalidInput(
                f"target: {self.name} finds what a text names; pass target=seewhy.targets."
                "Prompt('a cat') (--target 'prompt:a cat') or Box(xyxy, text='a cat') "
                "(--target 'box:x0,y0,x1,y1:a cat')"
            )
        if isinstance(target, (list, tuple)):
            return [self.bind(t) for t in target]
        if isinstance(target, dict) and target.get("kind") in (Box.kind, Prompt.kind):
            from ..targets import from_json

            target = from_json(target)
        if isinstance(target, str):
            target = Prompt(target)
        if isinstance(target, TextBox | _Found):
            return target
        if isinstance(target, Box):
            if target.text is None:
                raise bad_argument(
                    "target", "Box(xyxy, text='a cat') (an open-vocabulary detector has no "
                    "fixed labels)", f"Box(label={target.label})", where=self.name,
                )  # fmt: skip
            return TextBox(self, target.xyxy, target.text, add_iou=target.add_iou)
        if isinstance(target, Prompt):
            if target.against:
                raise bad_argument(
                    "Prompt", f"one text ({self.name} scores each text on its own)",
                    list(target.texts),
                )  # fmt: skip
            self.prepare(target.text)  # before any pass: one prompt throughout
            return _Found(target.text)
        raise InvalidInput(
            f"target: {self.name} takes seewhy.targets.Prompt(text) or Box(xyxy, text=...), "
            f"not {target!r}"
        )

    def rows(self, batch: Any, targets: Any) -> tuple[Any, tuple[Any, ...]] | None:
        """Each picture's Prompt settled: the box of the query scoring its text highest."""
        if not isinstance(targets, tuple) or not any(isinstance(t, _Found) for t in targets):
            return None
        from ..backends.model_lock import model_lock
        from ..backends.torch.twin import run_on_twin

        found: list[list[Target]] = []
        for i, target in enumerate(targets):
            if not isinstance(target, _Found):
                found.append([target])
                continue
            self.prepare(target.text)
            pixels = pixels_of(self.module, batch.inputs[i : i + 1])

            def best(net: Any, pixels: torch.Tensor = pixels, text: str = target.text) -> Any:
                with torch.no_grad():
                    item = net(pixels)[0]
                    q = int(self.logits(net, item, text).argmax())
                    return item["boxes"][q].float().cpu().numpy()

            with model_lock(self.module):
                box = run_on_twin(self.module, best)
            proper = bool(box[2] > box[0] and box[3] > box[1])
            found.append([TextBox(self, tuple(box.tolist()), target.text)] if proper else [])
        return rows_of(
            batch, found, what="no proper box was found for the prompt",
            how="pass target=seewhy.targets.Box(xyxy, text=...) to choose one",
        )  # fmt: skip


class TextBox(Box):
    """A ``Box`` with a text, bound to an open-vocabulary detector.

    The score is the logit, for the text, of the query whose box overlaps the
    box most (0 when none overlaps); its JSON form and caption are the Box's.
    """

    def __init__(
        self,
        owner: _OpenVocabulary,
        xyxy: Any,
        text: str,
        *,
        add_iou: bool = False,
    ) -> None:
        super().__init__(xyxy, add_iou=add_iou, text=text)
        self.owner = owner
        self.words = text
        owner.prepare(text)

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        from ..backends.torch.twin import current_model

        if not isinstance(output, (list, tuple)) or not all("boxes" in o for o in output):
            raise InvalidInput(f"Box(text={self.text!r}): expected the open-vocabulary output")
        net = current_model(self.owner.module)
        values = []
        for item in output:
            logits = self.owner.logits(net, item, self.words)
            found = {"boxes": item["boxes"], "scores": logits, "labels": None}
            values.append(self._one(found, ops))
        return ops.stack(values, axis=0)


class _Found(Target):
    """A Prompt waiting for its box: the best-scoring query's, found per picture in rows."""

    kind = "prompt"

    def __init__(self, text: str) -> None:
        self.text = text

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        raise RuntimeError("seewhy: a prompt's box was scored before it was found")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text}


def _tokenizer(model: Any, tokenizer: Any, processor: Any) -> Any:
    """The caller's tokenizer (or its processor's), else the one saved beside the model."""
    given = tokenizer if tokenizer is not None else getattr(processor, "tokenizer", None)
    if given is not None:
        return given
    folder = str(getattr(model.config, "_name_or_path", "") or "")
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError):
        raise InvalidInput(
            f"tokenizer: {type(model).__name__} does not say where its tokenizer is; pass "
            "tokenizer=AutoTokenizer.from_pretrained(...) or processor=AutoProcessor..."
        ) from None


def _vision_layer(model: Any, family: str) -> tuple[str | None, str]:
    if family == "grounding-dino":
        from .hf_common import backbone_layer

        return backbone_layer(model)
    layers: Any = getattr(getattr(model, family).vision_model.encoder, "layers", None)
    if layers is None or not len(layers):
        return None, "seewhy's usual choice"
    name = f"{family}.vision_model.encoder.layers.{len(layers) - 1}"
    return name, "the vision tower's last block, whose patch tokens the box and class heads read"


def adapt_open_vocabulary(
    model: Any, *, tokenizer: Any, processor: Any, prompt: str | None
) -> dict[str, Any] | None:
    """The fields of the seam's ``Adapted`` for OWL-ViT, OWLv2 or Grounding DINO, or None for
    other models."""
    family = open_vocabulary_family(model)
    if family is None:
        return None
    if prompt is not None:
        raise bad_argument(
            "prompt", "no prompt= for a detector; pass target=seewhy.targets.Prompt(text)", prompt
        )
    pre, sizes, how = detector_preprocess(model, processor, _usual(model, family))
    adapter = _OpenVocabulary(model, family, tokenizer, processor)
    layer, why = _vision_layer(model, family)
    where = f"default layer {layer} ({why})" if layer else f"default layer: {why}"
    said = (
        f"{type(model).__name__} ({family}): Box(xyxy, text=...) scores the query whose box "
        f"overlaps most by its logit for the text ({_TEXT_SIDE[family != 'grounding-dino']}); "
        f"Prompt(text) explains the box scoring the text highest; {where}; preprocessing {how}"
    )
    fields: dict[str, Any] = {
        "model": adapter.module,
        "family": f"hf-{family}",
        "said": said,
        "preprocess": pre,
        "bind": adapter.bind,
        "layer": layer,
        "rows": adapter.rows,
    }
    return with_sizes(fields, sizes)


_TEXT_SIDE = {
    True: "each text encoded once",
    False: "the texts bound read as one prompt, 'a . b .', its text backbone run once per prompt",
}


def _usual(model: Any, family: str) -> dict[str, Any]:
    """The family's usual processor's fields, when none is passed or saved beside the model."""
    if family == "grounding-dino":
        return {"image_processor_type": "GroundingDinoImageProcessor",
                "size": {"shortest_edge": 800, "longest_edge": 1333}, "do_pad": True,
                "resample": 2}  # fmt: skip
    side = int(model.config.vision_config.image_size)
    return {
        "image_processor_type": "OwlViTImageProcessor" if family == "owlvit" else
        "Owlv2ImageProcessor",
        "size": {"height": side, "width": side},
        "do_pad": family == "owlv2",
        "image_mean": _CLIP_MEAN,
        "image_std": _CLIP_STD,
        "resample": 3 if family == "owlvit" else 2,
    }  # fmt: skip
