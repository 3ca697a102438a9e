"""From what the user passes as ``target=`` (and ``output=``, ``head=``) to what the passes score.

Class targets keep the fast path they always had: (N,) class indices into
the logits. Any other target (or a sigmoid head, declared or found on the
model) goes through a :class:`Head`: the backend scores each distinct target on
every row of its output, one column per target, followed by the class
logits when the output has them, and each image's "class" becomes its
target's column. So every
method, which only picks a column per image, explains every kind of target
at the cost of the passes it always makes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from ._kit.checks import bad_argument, one_of
from .backends.capabilities import Backend, Heads
from .backends.heads import DEFAULT_HEAD, Head, output_position
from .errors import InvalidInput, UnsupportedModel
from .targets import Class, Custom, Target, from_json

__all__ = [
    "DEFAULT_HEAD",
    "HEADS",
    "Head",
    "Plan",
    "TargetArg",
    "class_index",
    "output_position",
    "plan_targets",
    "resolve_targets",
]

HEADS = ("softmax", "sigmoid")

#: What ``target=`` takes: a class (index or name), a :mod:`seewhy.targets` target, a callable
#: on the model's output, a target's JSON form, or one of those per image.
TargetArg = (
    int
    | str
    | Target
    | Callable[[Any], Any]
    | Mapping[str, Any]
    | Sequence[Any]
    | np.ndarray
    | None
)
B = TypeVar("B", bound=Backend)
#: Class indices beyond this cannot be stored (int64) and no model has that many classes.
_LARGEST_CLASS = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Plan:
    """The backend view to run, the indices each image is scored at, and the score kind."""

    backend: Backend
    targets: np.ndarray | None  # (N,) int64 columns; None: each image's top-1 class
    score: str  # what the methods apply ("logit" once columns hold probabilities)
    objects: tuple[Target, ...] | None  # each image's target when they are not plain classes
    sigmoid: bool  # the head's labels are independent (predictions are sigmoids)
    columns: int = 0  # target columns before the class logits in the view's scores


def class_index(target: object, labels: Sequence[str] | None) -> int:
    """One class: an index (an int, numpy's too; never a bool or float) or a label."""
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if target < 0:
            raise InvalidInput(f"target: class index must be >= 0, got {target}")
        if target > _LARGEST_CLASS:
            raise InvalidInput(f"target: class index {target} is too large for any model")
        return int(target)
    if isinstance(target, Class):
        return target.index
    if isinstance(target, str):
        text = target.strip()
        if text.lstrip("-").isdigit():
            return class_index(int(text), labels)
        if labels is None:
            raise InvalidInput(f"target: {target!r} is a class name, but the model has no labels")
        lowered = [label.lower() for label in labels]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        close = difflib.get_close_matches(text.lower(), lowered, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(labels[lowered.index(c)]) for c in close)}?"
        raise InvalidInput(f"target: no class named {target!r}{hint if close else ''}")
    raise bad_argument("target", "a class index (int) or name (str)", target)


def _one(value: object) -> bool:
    """True when ``value`` is one target (not a list of per-image ones)."""
    return isinstance(value, (int, float, str, Target, dict, np.integer)) or callable(value)


def resolve_targets(
    target: Any, count: int, labels: Sequence[str] | None
) -> np.ndarray | tuple[Target, ...] | None:
    """(count,) class indices when every target is a class, else one Target per image."""
    if target is None:
        return None
    from .inputs.arrays import is_array_like, to_numpy

    value: Any = target
    if isinstance(value, np.generic):  # np.int64(3), np.bool_(True): as Python's
        value = value.item()
    elif not isinstance(value, (str, Sequence, Target, dict)) and is_array_like(value):
        values = to_numpy(value, name="target")
        value = values.item() if values.ndim == 0 else values.tolist()
    if _one(value):
        items = [value] * count
    elif isinstance(value, Sequence):
        items = list(value)
        if len(items) != count:
            raise InvalidInput(f"target: expected one class per image ({count}), got {len(items)}")
    else:
        raise bad_argument(
            "target", "a class index or name, a seewhy.targets target, or one per image", value
        )
    objects = [_as_target(item, labels) for item in items]
    if all(isinstance(t, int) for t in objects):
        return np.array(objects, dtype=np.int64)
    return tuple(Class(t) if isinstance(t, int) else t for t in objects)


def _as_target(item: Any, labels: Sequence[str] | None) -> int | Target:
    if isinstance(item, Class):
        return item.index
    if isinstance(item, Target):
        return item
    if isinstance(item, dict):
        loaded = from_json(item)
        return loaded.index if isinstance(loaded, Class) else loaded
    if callable(item) and not isinstance(item, (int, str)):
        return Custom(item)
    return class_index(item, labels)


def check_head(head: Any) -> str | None:
    """``head=``: None (detected from the model), "softmax" or "sigmoid"."""
    return None if head is None else one_of(head, HEADS, "head")


def check_output(output: Any) -> int | str | None:
    """``output=``: None, an output's index (int >= 0), or its key or name (str)."""
    if output is None or isinstance(output, str):
        return output
    if isinstance(output, (int, np.integer)) and not isinstance(output, bool) and output >= 0:
        return int(output)
    raise bad_argument("output", "an output's index (int >= 0) or its key or name (str)", output)


def plan_targets(
    backend: Backend,
    resolved: np.ndarray | tuple[Target, ...] | None,
    *,
    score: str,
    output: int | str | None = None,
    head: str | None = None,
    sigmoid_detected: bool = False,
    strict: bool = True,
) -> Plan:
    """The backend view and per-image columns for the resolved targets.

    Class indices on the default head keep the backend as it is (the fast
    path). ``sigmoid_detected``: the backend found a sigmoid head itself.
    ``strict=False`` (the metrics) lets a target without a probability keep
    its own value when ``score`` is "probability".
    """
    sigmoid = head == "sigmoid" or (head is None and sigmoid_detected)
    probability = score == "probability"
    if isinstance(resolved, tuple):
        for t in resolved:
            if strict and probability and not t.has_probability:
                raise InvalidInput(
                    f"score: 'probability' does not apply to a {t.kind} target (it scores a raw "
                    "value); leave score as 'logit'"
                )
        distinct: list[Target] = []
        for t in resolved:
            if not any(t is d for d in distinct):
                distinct.append(t)
        view = _view(backend, Head(output, sigmoid, tuple(distinct), probability))
        columns = [next(j for j, d in enumerate(distinct) if d is t) for t in resolved]
        return Plan(view, np.array(columns, np.int64), "logit", resolved, sigmoid, len(distinct))
    chosen = Head(output, sigmoid, None, False)  # a found sigmoid too: its probabilities
    view = backend if chosen.plain else _view(backend, chosen)
    return Plan(view, resolved, score, None, sigmoid)


def _view(backend: B, head: Head) -> B:
    """``backend`` scoring ``head``, or the one line saying which models can."""
    if not isinstance(backend, Heads):
        raise UnsupportedModel(
            f"target: output=, head= and targets other than classes need a PyTorch or Keras "
            f"model; this is a {backend.framework} model"
        )
    return backend.with_head(head)


def settle(raw: Any, plan: Plan) -> Any:
    """A method's result on a view as one on the plain model: class logits, class indices.

    Each image's own target score goes to ``extras["target_score"]``.
    """
    if plan.objects is None:
        return raw
    m = plan.columns
    rows = np.arange(len(raw.logits))
    own = raw.logits[rows, np.asarray(raw.targets, np.int64)].astype(np.float32)
    classes = np.array([t.class_index() for t in plan.objects], np.int64)
    return replace(
        raw,
        logits=np.ascontiguousarray(raw.logits[:, m:]),
        targets=classes,
        extras={**raw.extras, "target_score": own},
    )


def sigmoid_output(backend: Backend, x: np.ndarray, output: int | str | None = None) -> bool:
    """Whether the chosen output's class scores are sigmoids, found on the model itself.

    A final sigmoid (skipped: its logits are scored) or one logit (a binary
    classifier, two classes -z and +z); PyTorch and Keras backends find them.
    """
    if not isinstance(backend, Heads):
        return False
    view = backend if output is None else backend.with_head(Head(output))
    return bool(view.sigmoid_output(x))


def record(objects: Sequence[Target]) -> Any:
    """The targets' JSON form for ``Explanation.params["target"]``: one, or one per image."""
    forms = [t.to_json() for t in objects]
    return forms[0] if all(f == forms[0] for f in forms) else forms


def pick(
    resolved: np.ndarray | tuple[Target, ...] | None, rows: np.ndarray
) -> np.ndarray | tuple[Target, ...] | None:
    """The targets of the images at ``rows``."""
    if resolved is None or isinstance(resolved, np.ndarray):
        return None if resolved is None else resolved[rows]
    return tuple(resolved[int(i)] for i in rows)


def captions(classes: np.ndarray, objects: Sequence[Target], label: Any) -> tuple[str, ...]:
    """Each image's target caption: its class's label, or what its target describes."""
    if objects:
        return tuple(t.describe(label) for t in objects)
    return tuple(label(int(t)) for t in classes)


#: Detections scoring at least this are explained, each as its own row, when no target is given.
DETECTION_THRESHOLD = 0.5


def detection_rows(
    backend: Backend, batch: Any, resolved: Any
) -> tuple[Any, tuple[Target, ...]] | None:
    """For a detector and no target: the batch with one row per detection, and its Box targets.

    None for any other model or when targets were given. An image with no
    detection above :data:`DETECTION_THRESHOLD` gets no row (one warning
    names them); none at all is a one-line error saying how to choose.
    """
    if resolved is not None or not isinstance(backend, Heads):
        return None
    found = backend.detections(batch.inputs)
    if found is None:
        return None

    from .inputs.rows import rows_of
    from .targets import Box

    boxes: list[list[Target]] = [
        [
            Box(box.tolist(), int(label))
            for box, label, score in zip(item["boxes"], item["labels"], item["scores"], strict=True)
            if score >= DETECTION_THRESHOLD and box[2] > box[0] and box[3] > box[1]
        ]
        for item in found
    ]
    return rows_of(
        batch,
        boxes,
        what=f"the detector found nothing scoring >= {DETECTION_THRESHOLD}",
        how="pass target=seewhy.targets.Box(xyxy, label) (--target box:x0,y0,x1,y1[:label]) "
        "to explain a region",
    )


def recorded(
    objects: Sequence[Target], output: int | str | None, head: str | None, sigmoid: bool
) -> dict[str, Any]:
    """What ``Explanation.params`` adds when more than a class was scored: target, output, head."""
    chosen: dict[str, Any] = {"target": record(objects)} if objects else {}
    if output is not None:
        chosen["output"] = output
    if head is not None or sigmoid:
        chosen["head"] = "sigmoid" if sigmoid else head
    return chosen
