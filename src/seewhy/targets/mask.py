"""A prompt to a promptable segmenter (SAM): which pixels made the mask it draws there?"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from .._kit.checks import bad_argument, finite_float, one_of, positive_int
from ..errors import UnsupportedModel
from .base import Target

__all__ = ["Mask"]

#: Where a Mask's coordinates are: on the photo (mapped through the model's preprocessing per
#: picture) or on the model's input (what seewhy records, so a recorded Mask scores again).
SPACES = ("photo", "input")


def _pairs(value: Any, name: str, width: int) -> tuple[tuple[float, ...], ...]:
    """``value`` as a tuple of finite ``width``-tuples (one such tuple alone is one item)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.zeros((0, 0))
    if array.ndim == 1 and array.size == width:
        array = array[None]
    what = "(x, y) points" if width == 2 else "(x0, y0, x1, y1) boxes"
    if array.ndim != 2 or array.shape[1] != width or not len(array):
        raise bad_argument(name, f"a non-empty list of {what}", value, where="Mask")
    return tuple(tuple(finite_float(v, name, where="Mask") for v in row) for row in array)


class Mask(Target):
    """The mask a promptable segmenter (SAM, SAM 2) draws for point and box prompts.

    The model is prompted as its own predictor is; of the masks it proposes,
    the one with the highest predicted IoU (or ``multimask``) is chosen, and
    the score is the sum of that mask's logits over the pixels where it is
    on (logit > the model's threshold, 0). Which pixels are on is read from
    the same forward pass without a gradient: the on/off indicator is flat
    almost everywhere, so differentiating it adds nothing, and holding it
    fixed makes the score "how strongly the model segments this object"
    rather than a count of pixels. A mask with no pixel on scores its
    largest logit (so a map still says what pushed it up most).

    Coordinates are pixels of the photo by default (as SAM's predictor
    takes them), mapped through the model's preprocessing picture by
    picture (SAM resizes the long side to 1024 and pads the bottom-right);
    ``space="input"`` gives them on the model's input, which is what
    ``Explanation.params`` records.

    Parameters
    ----------
    points : sequence of (x, y), optional
        Point prompts.
    labels : sequence of int, optional
        1 (foreground, the default) or 0 (background) per point.
    boxes : (x0, y0, x1, y1) or a sequence of one, optional
        A box prompt (SAM takes one box per mask).
    multimask : int, optional
        Which of the model's proposed masks to explain (0, 1, 2); None: the
        one it predicts best (highest IoU).
    space : {"photo", "input"}
        Where the coordinates are.

    Examples
    --------
    >>> seewhy.explain(sam, "photo.jpg", target=Mask(points=[(320, 240)]))  # doctest: +SKIP
    >>> prompts = [Mask(points=[(50, 60)]), Mask(boxes=(10, 10, 200, 120))]
    >>> seewhy.explain(sam, "photo.jpg", target=prompts)  # one map per prompt  # doctest: +SKIP
    """

    kind = "mask"

    def __init__(
        self,
        points: Sequence[Sequence[float]] | None = None,
        labels: Sequence[int] | None = None,
        boxes: Sequence[float] | Sequence[Sequence[float]] | None = None,
        multimask: int | None = None,
        *,
        space: str = "photo",
    ) -> None:
        if points is None and boxes is None:
            raise bad_argument("points/boxes", "at least one point or a box", None, where="Mask")
        self.points = () if points is None else _pairs(points, "points", 2)
        self.labels = self._labels(labels)
        self.boxes = () if boxes is None else _pairs(boxes, "boxes", 4)
        if len(self.boxes) > 1:
            raise bad_argument("boxes", "one box per Mask (one Mask per box)", boxes, where="Mask")
        for box in self.boxes:
            if not (box[2] > box[0] and box[3] > box[1]):
                raise bad_argument("boxes", "x0 < x1 and y0 < y1", list(box), where="Mask")
        self.multimask = None if multimask is None else self._which(multimask)
        self.space = one_of(space, SPACES, "space", where="Mask")

    def _labels(self, labels: Any) -> tuple[int, ...]:
        if labels is None:
            return (1,) * len(self.points)
        values = [labels] if isinstance(labels, (int, np.integer)) else labels
        try:
            found = tuple(int(v) for v in values if not isinstance(v, bool) and v in (0, 1))
        except TypeError:
            found = ()
        if len(found) != len(self.points) or len(found) != len(list(values)):
            raise bad_argument(
                "labels",
                f"one 1 (foreground) or 0 (background) per point ({len(self.points)})",
                labels,
                where="Mask",
            )
        return found

    @staticmethod
    def _which(multimask: Any) -> int:
        index = positive_int(multimask, "multimask", where="Mask", minimum=0)
        if index > 2:
            raise bad_argument(
                "multimask", "0, 1 or 2 (SAM proposes 3 masks)", multimask, where="Mask"
            )
        return index

    def moved(self, scale: tuple[float, float], offset: tuple[float, float]) -> Mask:
        """This prompt on the model's input: ``input = (photo - offset) * scale``, per (x, y)."""
        sx, sy = scale
        ox, oy = offset
        points = [((x - ox) * sx, (y - oy) * sy) for x, y in self.points]
        boxes = [
            ((x0 - ox) * sx, (y0 - oy) * sy, (x1 - ox) * sx, (y1 - oy) * sy)
            for x0, y0, x1, y1 in self.boxes
        ]
        return Mask(
            points or None, self.labels or None, boxes or None, self.multimask, space="input"
        )

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        raise UnsupportedModel(
            "Mask: a mask prompt needs a promptable segmenter (segment_anything's Sam or "
            "SamPredictor, Hugging Face SamModel) passed as the model itself, not its image encoder"
        )

    def pass_key(self) -> Hashable:
        return (self.kind, self.points, self.labels, self.boxes, self.multimask, self.space)

    def to_json(self) -> dict[str, Any]:
        form: dict[str, Any] = {"kind": self.kind, "space": self.space}
        if self.points:
            form["points"] = [list(p) for p in self.points]
            form["labels"] = list(self.labels)
        if self.boxes:
            form["boxes"] = [list(b) for b in self.boxes]
        if self.multimask is not None:
            form["multimask"] = self.multimask
        return form

    def describe(self, label: Callable[[int], str]) -> str:
        parts = [
            ("+" if lab else "-") + f"({x:.0f},{y:.0f})"
            for (x, y), lab in zip(self.points, self.labels, strict=True)
        ]
        parts += ["box " + ",".join(f"{v:.0f}" for v in b) for b in self.boxes]
        which = "" if self.multimask is None else f" mask {self.multimask}"
        return "mask " + " ".join(parts) + which


def mask_from_json(data: Any) -> Mask:
    """A :class:`Mask` from its JSON form."""
    return Mask(
        data.get("points"),
        data.get("labels"),
        data.get("boxes"),
        data.get("multimask"),
        space=str(data.get("space", "photo")),
    )
