"""``--target``'s text forms: ``labels:A,B``, ``output:N``, ``box:...``, ``region:...``.

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
from seewhy.targets import Box, MultiLabel, Output, Region, Target

__all__ = ["parse_target", "read_mask"]

#: The forms and how each is written, for the error lines.
_FORMS = {
    "output": "output:N",
    "labels": "labels:A,B",
    "box": "box:x0,y0,x1,y1[:label]",
    "region": "region:CLASS:mask.png",
}


def parse_target(text: str, labels: Sequence[str] | None = None) -> Target | str:
    """A target from ``--target``'s text, or ``text`` itself when it names a class.

    Class names are looked up in ``labels`` (the model's); box corners are in
    the model input's pixels; a mask file's pixels above half its brightest
    are True.
    """
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    if not rest or kind not in _FORMS:
        return text

    def index(name: str) -> int:
        return class_index(name, labels)

    if kind == "output":
        return Output(_int_text(rest, _FORMS[kind]))
    if kind == "labels":
        return MultiLabel([index(part) for part in rest.split(",") if part.strip()])
    if kind == "box":
        corners, _, label = rest.partition(":")
        numbers = [_float_text(v, _FORMS[kind]) for v in corners.split(",")]
        return Box(numbers, index(label) if label.strip() else None)
    name, _, path = rest.partition(":")
    if not name or not path:
        raise InvalidInput(f"--target: expected {_FORMS[kind]}, got {text!r}")
    return Region(index(name), read_mask(path))


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
