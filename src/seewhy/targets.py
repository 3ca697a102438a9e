"""What is scored: a class, sigmoid labels, an output unit, an embedding, a region, a box.

A target is a score function written once, here, without a framework: it
reads the model's output through ``ops``, a small namespace with
``keras.ops``' names (``sum``, ``take``, ``softmax``, ``sigmoid``, ...). The
Keras backend passes ``keras.ops`` itself; the PyTorch backend a few lines
that call torch (:mod:`seewhy.backends.torch.targets`). So every method
(CAMs, gradients, perturbations, LIME) explains every kind of target::

    >>> from seewhy.targets import Region, Box, Similarity
    >>> seewhy.explain(segmenter, image, target=Region(15, person_mask))
    >>> seewhy.explain(detector, image, target=Box((10, 20, 120, 200), label=1))
    >>> seewhy.explain(embedder, image, "scorecam", target=Similarity(reference))

Any callable ``f(output) -> (N,) scores`` written with the model's own ops
(torch, ``keras.ops``) is a target too. ``target=`` takes one target for
every image or one per image; an int or a class name means :class:`Class`.
Each target has a JSON form (:meth:`Target.to_json`) that :func:`from_json`
loads back, which is what ``Explanation.params["target"]`` and the CLI's
JSON hold.
"""

from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar

import numpy as np

from ._kit.checks import bad_argument, finite_float, positive_int
from ._kit.mask_codes import from_run_lengths, nearest_cells, run_lengths
from .errors import InvalidInput

__all__ = [
    "Box",
    "Class",
    "Custom",
    "MultiLabel",
    "Output",
    "Region",
    "Similarity",
    "Target",
    "from_json",
    "parse",
]


class Target(ABC):
    """One score per image, computed from the model's (selected) output.

    ``probability`` asks for the probability rather than the logit (only
    class-like targets have one; :attr:`has_probability` says which);
    ``sigmoid`` says the head's labels are independent (sigmoid) rather than
    exclusive (softmax).
    """

    kind: ClassVar[str] = ""
    has_probability: ClassVar[bool] = False
    needs_detections: ClassVar[bool] = False  # scores a detector's boxes, not a tensor
    _tensors: tuple[Any, ...] = ()  # arrays() as a compiled pass's inputs (see bound)

    @abstractmethod
    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        """(N,) scores, a tensor of ``ops``' framework, from the batch's output."""

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The JSON form :func:`from_json` loads back."""

    def describe(self, label: Callable[[int], str]) -> str:
        """A short caption (``label`` names a class index)."""
        return self.kind

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The target's data (a mask, a vector) as float32 arrays.

        A compiled pass (Keras) takes them as inputs rather than constants, so
        one compiled pass serves every target with the same :meth:`pass_key`.
        """
        return ()

    def pass_key(self) -> Hashable:
        """What a compiled pass scoring this target depends on, besides :meth:`arrays`.

        The default is the target itself, by identity (a pass per target).
        """
        return ("object", id(self))

    def bound(self, tensors: Sequence[Any]) -> Target:
        """This target scoring with ``tensors`` (its :meth:`arrays` as a pass's inputs)."""
        if not tensors:
            return self
        twin = copy.copy(self)
        twin._tensors = tuple(tensors)
        return twin

    def _data(self, ops: Any, i: int) -> Any:
        """Array ``i`` of :meth:`arrays`: the pass's input when bound, else a constant."""
        return self._tensors[i] if self._tensors else ops.convert_to_tensor(self.arrays()[i])

    def class_index(self) -> int:
        """The class the target is about, or -1 when it has none (Output, Similarity)."""
        return -1

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.to_json())})"


def _index(value: Any, name: str, where: str) -> int:
    return positive_int(value, name, where=where, minimum=0)


def class_scores(output: Any, ops: Any) -> Any:
    """(N, K) class logits; a one-logit output z as its two classes, (-z, +z).

    A binary classifier with one output (``Dense(1, "sigmoid")``, a
    ``Linear(..., 1)``) has two classes: class 1 scores +z (probability
    sigmoid(z)) and class 0 scores -z (probability 1 - sigmoid(z)), Keras'
    binary convention. So ``target=0`` explains the negative class, and the
    top class (the default target) is the predicted one.
    """
    _check_rank(output, 2, "class scores (N, classes)")
    if int(output.shape[1]) == 1:
        return ops.concatenate([-output, output], axis=1)
    return output


def _class_values(output: Any, ops: Any, probability: bool, sigmoid: bool) -> Any:
    """(N, K) class scores: logits, or probabilities of a softmax or sigmoid head."""
    values = class_scores(output, ops)
    if not probability:
        return values
    if sigmoid or int(output.shape[1]) == 1:  # a one-logit head's classes are sigmoids
        return ops.sigmoid(values)
    return ops.softmax(values, axis=1)


def _width(output: Any) -> int:
    """Values per image of ``output`` (its batch size may be unknown while a pass is traced)."""
    return int(np.prod([int(d) for d in output.shape[1:]]))


def _check_rank(output: Any, rank: int, what: str) -> None:
    shape = tuple(getattr(output, "shape", ()))
    if len(shape) != rank:
        raise InvalidInput(f"target: expected a model output of {what}, got shape {shape}")


class Class(Target):
    """Class ``index``: its logit (or probability), what an int target means."""

    kind = "class"
    has_probability = True

    def __init__(self, index: int) -> None:
        self.index = _index(index, "index", "Class")

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        values = _class_values(output, ops, probability, sigmoid)
        return ops.take(values, self.index, axis=1)

    def pass_key(self) -> Hashable:
        return (self.kind, self.index)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "index": self.index}

    def describe(self, label: Callable[[int], str]) -> str:
        return label(self.index)

    def class_index(self) -> int:
        return self.index


class MultiLabel(Target):
    """Several labels of a sigmoid (multi-label) head: the sum of their logits or probabilities."""

    kind = "multilabel"
    has_probability = True

    def __init__(self, indices: Sequence[int]) -> None:
        if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence) or not indices:
            raise bad_argument(
                "indices", "a non-empty list of class indices", indices, where="MultiLabel"
            )
        self.indices = tuple(_index(i, "indices", "MultiLabel") for i in indices)

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        values = _class_values(output, ops, probability, True)
        picked = ops.take(values, ops.convert_to_tensor(np.asarray(self.indices)), axis=1)
        return ops.sum(picked, axis=1)

    def pass_key(self) -> Hashable:
        return (self.kind, self.indices)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "indices": list(self.indices)}

    def describe(self, label: Callable[[int], str]) -> str:
        return " + ".join(label(i) for i in self.indices)

    def class_index(self) -> int:
        return self.indices[0]


class Output(Target):
    """The raw, signed value of output unit ``index`` (regression); the output is flattened."""

    kind = "output"

    def __init__(self, index: int = 0) -> None:
        self.index = _index(index, "index", "Output")

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        flat = ops.reshape(output, (-1, _width(output)))
        if self.index >= int(flat.shape[1]):
            raise InvalidInput(
                f"Output: index {self.index} is outside the model's {int(flat.shape[1])} outputs"
            )
        return ops.take(flat, self.index, axis=1)

    def pass_key(self) -> Hashable:
        return (self.kind, self.index)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "index": self.index}

    def describe(self, label: Callable[[int], str]) -> str:
        return f"output {self.index}"


class Similarity(Target):
    """Cosine similarity of the model's output (an embedding, flattened) to ``vector``."""

    kind = "similarity"

    def __init__(self, vector: Any) -> None:
        values = np.asarray(vector, dtype=np.float32).reshape(-1)
        if values.size == 0 or not np.isfinite(values).all() or not np.any(values):
            raise bad_argument("vector", "a non-zero finite vector", vector, where="Similarity")
        self.vector = values

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        flat = ops.reshape(ops.cast(output, "float32"), (-1, _width(output)))
        if int(flat.shape[1]) != self.vector.size:
            raise InvalidInput(
                f"Similarity: the vector has {self.vector.size} values, the model's output "
                f"{int(flat.shape[1])}"
            )
        unit = self._data(ops, 0)
        dot = ops.sum(flat * unit[None, :], axis=1)
        norm = ops.sqrt(ops.sum(flat * flat, axis=1))
        return dot / ops.maximum(norm, 1e-12)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return ((self.vector / np.linalg.norm(self.vector)).astype(np.float32),)

    def pass_key(self) -> Hashable:
        return (self.kind, self.vector.size)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "vector": [float(v) for v in self.vector]}

    def describe(self, label: Callable[[int], str]) -> str:
        return "similarity"


class Region(Target):
    """Semantic segmentation: class ``class_index``'s scores summed over ``mask``.

    ``mask`` is a boolean (H, W) map at the output's or the input's size (it
    is resized to the output's, nearest neighbour). The model's output is
    (N, classes, h, w); ``score="probability"`` sums the per-pixel softmax.
    """

    kind = "region"
    has_probability = True

    def __init__(self, class_index: int, mask: Any) -> None:
        self.index = _index(class_index, "class_index", "Region")
        values = np.asarray(mask)
        if values.ndim != 2 or values.size == 0:
            shape = values.shape
            raise bad_argument("mask", "a 2-D (H, W) boolean map", f"shape {shape}", where="Region")
        self.mask = values.astype(bool)
        if not self.mask.any():
            raise InvalidInput(
                "Region: mask is empty (no pixel is True); mark the region to explain"
            )

    def mask_at(self, size: tuple[int, int]) -> np.ndarray:
        """The mask as float32 at ``size`` (nearest neighbour, pixel centres)."""
        rows, cols = nearest_cells(self.mask.shape, size)
        return self.mask[rows][:, cols].astype(np.float32)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.mask.astype(np.float32), np.array([self.index], np.int64))

    def pass_key(self) -> Hashable:
        return (self.kind, self.mask.shape)  # the class is data too: any mix shares a pass

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        _check_rank(output, 4, "per-pixel class scores (N, classes, h, w)")
        self.check_classes(int(output.shape[1]))  # when the pass is traced
        values = ops.softmax(output, axis=1) if probability else output
        plane = ops.take(values, self._data(ops, 1), axis=1)  # (N, 1, h, w)
        size = (int(output.shape[2]), int(output.shape[3]))
        mask = self._data(ops, 0)
        if size != self.mask.shape:  # resized inside the pass: the mask stays an input
            rows, cols = nearest_cells(self.mask.shape, size)
            mask = ops.take(
                ops.take(mask, ops.convert_to_tensor(rows), axis=0),
                ops.convert_to_tensor(cols),
                axis=1,
            )
        return ops.sum(plane * mask[None, None], axis=(1, 2, 3))

    def check_classes(self, classes: int) -> None:
        """Refuse a class past the output's ``classes`` (per-pixel channels), in one line."""
        if self.index >= classes:
            raise InvalidInput(
                f"Region: class {self.index} is outside the model's 0..{classes - 1}"
            )

    def to_json(self) -> dict[str, Any]:
        rows, cols = np.nonzero(self.mask)
        return {
            "kind": self.kind,
            "class_index": self.index,
            "shape": list(self.mask.shape),
            "pixels": int(self.mask.sum()),
            "runs": run_lengths(self.mask),
            "bbox": [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1],
        }

    def describe(self, label: Callable[[int], str]) -> str:
        return f"region of {label(self.index)}"

    def class_index(self) -> int:
        return self.index


class Box(Target):
    """Detection: the score of the predicted box of ``label`` that overlaps ``xyxy`` most.

    For torchvision detectors (Faster R-CNN, RetinaNet, FCOS, SSD), whose
    output is one dict of ``boxes``/``labels``/``scores`` per image. No box
    of the label overlapping: the score is 0 (nothing to explain there).
    ``add_iou=True`` adds that box's IoU to its score, as pytorch-grad-cam's
    ``FasterRCNNBoxScoreTarget`` does. ``label=None`` takes any label.
    """

    kind = "box"
    needs_detections = True

    def __init__(
        self, xyxy: Sequence[float], label: int | None = None, *, add_iou: bool = False
    ) -> None:
        if isinstance(xyxy, (str, bytes)) or len(list(np.asarray(xyxy).reshape(-1))) != 4:
            raise bad_argument("xyxy", "4 numbers x0, y0, x1, y1", xyxy, where="Box")
        box = tuple(finite_float(v, "xyxy", where="Box") for v in np.asarray(xyxy).reshape(-1))
        if not (box[2] > box[0] and box[3] > box[1]):
            raise bad_argument("xyxy", "x0 < x1 and y0 < y1", xyxy, where="Box")
        self.xyxy = box
        self.label = None if label is None else _index(label, "label", "Box")
        self.add_iou = bool(add_iou)

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        if not isinstance(output, (list, tuple)) or not all(isinstance(o, dict) for o in output):
            raise InvalidInput(
                "Box: the model's output is not a detector's (one dict of boxes, labels and "
                "scores per image); Box targets are for torchvision detection models"
            )
        return ops.stack([self._one(o, ops) for o in output], axis=0)

    def _one(self, detections: dict[str, Any], ops: Any) -> Any:
        boxes, scores = detections["boxes"], detections["scores"]
        x0, y0, x1, y1 = self.xyxy
        ix = ops.maximum(ops.minimum(boxes[:, 2], x1) - ops.maximum(boxes[:, 0], x0), 0.0)
        iy = ops.maximum(ops.minimum(boxes[:, 3], y1) - ops.maximum(boxes[:, 1], y0), 0.0)
        inter = ix * iy
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        iou = inter / ops.maximum(areas + (x1 - x0) * (y1 - y0) - inter, 1e-12)
        if self.label is not None:
            same = detections["labels"] == self.label
            iou = ops.where(same, iou, ops.zeros_like(iou))
        if int(iou.shape[0]) == 0 or not bool(ops.max(iou) > 0):
            return ops.sum(scores * 0.0)  # no overlapping box: 0, still on the graph
        best = int(ops.argmax(iou))
        value = scores[best]
        return value + iou[best] if self.add_iou else value

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "xyxy": list(self.xyxy), "label": self.label}
        if self.add_iou:
            out["add_iou"] = True
        return out

    def describe(self, label: Callable[[int], str]) -> str:
        corners = ",".join(f"{v:g}" for v in self.xyxy)
        return f"box {corners}" if self.label is None else f"{label(self.label)} [{corners}]"

    def class_index(self) -> int:
        return -1 if self.label is None else self.label


class Custom(Target):
    """A callable ``f(output) -> (N,) scores`` in the model's own framework's ops."""

    kind = "callable"

    def __init__(self, function: Callable[[Any], Any]) -> None:
        if not callable(function):
            raise bad_argument("target", "a callable f(output) -> scores", function)
        self.function = function

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        values = self.function(output)
        shape = tuple(getattr(values, "shape", ()))
        count = len(output) if isinstance(output, (list, tuple)) else output.shape[0]
        if len(shape) != 1 or (None not in (count, shape[0]) and shape[0] != count):
            raise InvalidInput(
                f"target: the callable {self.name} returned shape {shape}; expected one score "
                f"per image ({count},)"
            )
        return values

    def pass_key(self) -> Hashable:
        return (self.kind, id(self.function))  # a pass's key keeps its function alive

    @property
    def name(self) -> str:
        module = getattr(self.function, "__module__", None)
        name = getattr(self.function, "__qualname__", None) or type(self.function).__qualname__
        return f"{module}.{name}" if module else name

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name}

    def describe(self, label: Callable[[int], str]) -> str:
        return getattr(self.function, "__name__", "callable")


def from_json(data: Any) -> Target:
    """A target from its JSON form (a dict, or its text); callables cannot come back."""
    if isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, dict) or "kind" not in data:
        raise bad_argument("target", "a target's JSON form (a dict with 'kind')", data)
    kind = data["kind"]
    try:
        if kind == "class":
            return Class(data["index"])
        if kind == "multilabel":
            return MultiLabel(data["indices"])
        if kind == "output":
            return Output(data["index"])
        if kind == "similarity":
            return Similarity(data["vector"])
        if kind == "region":
            return Region(data["class_index"], from_run_lengths(data["shape"], data["runs"]))
        if kind == "box":
            return Box(data["xyxy"], data.get("label"), add_iou=bool(data.get("add_iou", False)))
    except KeyError as missing:
        raise InvalidInput(f"target: the {kind!r} JSON form lacks {missing}") from None
    if kind == "callable":
        raise InvalidInput(
            f"target: a callable ({data.get('name')}) cannot be loaded from JSON; pass it again"
        )
    raise bad_argument(
        "target", "a kind of class, multilabel, output, similarity, region, box", kind
    )


def parse(text: str, labels: Sequence[str] | None = None) -> Target | str:
    """A target from the CLI's text: ``box:x0,y0,x1,y1[:label]``, ``region:CLASS:mask.png``,
    ``output:N``, ``labels:A,B`` (MultiLabel), or a class index or name (returned as it is).

    Class names are looked up in ``labels`` (the model's); box corners are in
    the model input's pixels; a mask file's pixels above half its brightest are True.
    """
    from ._target_text import parse_text

    return parse_text(text, labels)
