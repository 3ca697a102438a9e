"""``--target``'s text forms: ``labels:A,B``, ``output:N``, ``box:...``, ``region:...``,
``prompt:TEXT`` and ``prompt:A|B|C`` (dual encoders: CLIP, SigLIP), ``point:x,y`` and
``mask-box:x0,y0,x1,y1`` (SAM).

The notation is the command line's; a Python caller builds the target
itself (:mod:`seewhy.targets`). Anything else (a class index or name) is
returned as it is, for ``explain`` to look up.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seewhy._target_plan import class_index
from seewhy.errors import InvalidInput
from seewhy.targets import Box, Mask, MultiLabel, Output, Prompt, Region, Target

__all__ = ["PROMPT_SEPARATOR", "TEXT_FORMS", "parse_target", "read_mask"]

#: The forms and how each is written, for the error lines.
_FORMS = {
    "output": "output:N",
    "labels": "labels:A,B",
    "box": "box:x0,y0,x1,y1[:label]",
    "region": "region:CLASS:mask.png",
    "prompt": "prompt:TEXT or prompt:A|B|C",
    "point": "point:x,y[;x,y...] (a - before x,y: background)",
    "mask-box": "mask-box:x0,y0,x1,y1",
}

#: Forms whose text is the model's to read (a prompt), never a class name to look up.
TEXT_FORMS = ("prompt",)

#: Between the texts of a zero-shot prompt: ``prompt:a cat|a dog|a car``.
PROMPT_SEPARATOR = "|"


def parse_target(text: str, labels: Sequence[str] | None = None) -> Target | str:
    """A target from ``--target``'s text, or ``text`` itself when it names a class.

    Class names are looked up in ``labels`` (the model's); box corners are in
    the model input's pixels, and a box's text on a model without labels is
    what an open-vocabulary detector looks for (``box:0,0,50,50:a cat``); a
    mask file's pixels above half its brightest are True. ``prompt:A|B|C`` is
    :class:`~seewhy.targets.Prompt` ``(A, against=[B, C])``: the first text's
    softmax share among them, as
    zero-shot classification scores it (the predictions rank all of them).
    """
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    if kind not in _FORMS or (not rest and kind not in TEXT_FORMS):
        return text

    def index(name: str) -> int:
        return class_index(name, labels)

    if kind == "prompt":
        return _prompt(rest, text)
    if kind in ("point", "mask-box"):
        return _mask(kind, rest)
    if kind == "output":
        return Output(_int_text(rest, _FORMS[kind]))
    if kind == "labels":
        return MultiLabel([index(part) for part in rest.split(",") if part.strip()])
    if kind == "box":
        corners, _, label = rest.partition(":")
        numbers = [_float_text(v, _FORMS[kind]) for v in corners.split(",")]
        if label.strip() and labels is None and not label.strip().lstrip("-").isdigit():
            return Box(numbers, text=label.strip())  # an open-vocabulary detector's text
        return Box(numbers, index(label) if label.strip() else None)
    name, _, path = rest.partition(":")
    if not name or not path:
        raise InvalidInput(f"--target: expected {_FORMS[kind]}, got {text!r}")
    return Region(index(name), read_mask(path))


def _prompt(rest: str, text: str) -> Prompt:
    """``a red car`` -> Prompt("a red car"); ``a|b`` -> Prompt("a", against=["b"])."""
    texts = [part.strip() for part in rest.split(PROMPT_SEPARATOR)]
    if not all(texts):
        raise InvalidInput(
            f"--target: expected {_FORMS['prompt']} with no empty text between the "
            f"{PROMPT_SEPARATOR!r}s, got {text!r}"
        )
    repeated = sorted({t for t in texts if texts.count(t) > 1})
    if repeated:
        raise InvalidInput(
            f"--target: {repeated[0]!r} is given twice in {text!r}; name each text once"
        )
    return Prompt(texts[0], against=texts[1:] or None)


def _mask(kind: str, rest: str) -> Mask:
    """``point:x,y;x,y`` -> Mask(points=...) (``-x,y``: a background point); ``mask-box:...``
    -> Mask(boxes=...); photo pixels, as SAM's own predictor takes them."""
    if kind == "mask-box":
        return Mask(boxes=[_float_text(v, _FORMS[kind]) for v in rest.split(",")])
    points, labels = [], []
    for part in rest.split(";"):
        background = part.strip().startswith("-")
        numbers = [_float_text(v, _FORMS[kind]) for v in part.strip().lstrip("-").split(",")]
        if len(numbers) != 2:
            raise InvalidInput(f"--target: expected {_FORMS[kind]}, got {rest!r}")
        points.append((numbers[0], numbers[1]))
        labels.append(0 if background else 1)
    return Mask(points=points, labels=labels)


def read_mask(path: str | Path) -> np.ndarray:
    """A boolean mask from an image file: pixels above half the brightest value are True."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            values = np.asarray(image.convert("L"), dtype=np.float32)
    except (OSError, UnidentifiedImageError) as error:
        raise InvalidInput(f"mask: cannot read {str(path)!r} as an image ({error})") from None
    return values > (values.max() / 2 if values.max() > 0 else 0.5)


def _int_text(text: str, form: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidInput(f"--target: expected {form}, got {text!r}") from None


def _float_text(text: str, form: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise InvalidInput(f"--target: expected {form}, got {text!r}") from None
