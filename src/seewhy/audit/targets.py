"""What the audit explains for each image (``target_from=``): top-1, true class, or ground truth.

``predicted`` (the default) explains each image's top-1 class; ``true`` its
true class (from the folders or the list file); ``region`` the true class's
scores summed over the ground-truth mask (a segmenter:
:class:`seewhy.targets.Region`); ``box`` the detection of the true class that
best overlaps the first ground-truth box (a detector: :class:`seewhy.targets.Box`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from ..targets import Box, Region
from .objects import input_boxes

if TYPE_CHECKING:
    from ..preprocess import Preprocess
    from .worker import Decoded

__all__ = ["AUDIT_TARGETS", "check_audit_target", "image_targets"]

AUDIT_TARGETS = ("predicted", "true", "region", "box")


def check_audit_target(kind: Any, name: str = "target_from") -> str:
    """``target_from=`` of the audit (``name``: as the caller spelt it), or a one-line error."""
    if kind not in AUDIT_TARGETS:
        raise InvalidInput(f"{name}: expected one of {', '.join(AUDIT_TARGETS)}, got {kind!r}")
    return str(kind)


def image_targets(kind: str, decoded: Sequence[Decoded], pre: Preprocess) -> list[Any] | None:
    """One target per decoded image for ``kind`` (None: each image's top-1).

    An image without the truth the kind needs is refused in one line naming it.
    """
    if kind == "predicted":
        return None
    out: list[Any] = []
    for d in decoded:
        truth = d.item.true_index
        if truth is None:
            raise InvalidInput(
                f"target_from: {kind} needs each image's true class; {d.item.name} has none "
                "(class folders or a list file give them)"
            )
        if kind == "true":
            out.append(int(truth))
        elif kind == "region":
            if d.mask is None or not d.mask.any():
                raise InvalidInput(
                    f"target_from: region needs a ground-truth mask; {d.item.name} has none"
                )
            out.append(Region(int(truth), d.mask))
        else:
            boxes = input_boxes(d.item.boxes, d.size, pre)
            if not boxes:
                raise InvalidInput(
                    f"target_from: box needs a ground-truth box; {d.item.name} has none"
                )
            out.append(Box(boxes[0], int(truth)))
    return out
