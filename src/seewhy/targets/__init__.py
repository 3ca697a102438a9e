"""What is scored: a class, sigmoid labels, an output unit, an embedding, a region, a box, a prompt.

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

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._kit.checks import bad_argument
from .._kit.mask_codes import from_run_lengths
from ..errors import InvalidInput
from .answer import Answer
from .base import Target
from .mask import Mask, mask_from_json
from .outputs import Class, Custom, MultiLabel, Output, Similarity
from .prompt import Prompt
from .spatial import Box, Region

__all__ = [
    "Answer",
    "Box",
    "Class",
    "Custom",
    "Mask",
    "MultiLabel",
    "Output",
    "Prompt",
    "Region",
    "Similarity",
    "Target",
    "from_json",
    "parse",
]


def from_json(data: Any) -> Target:
    """A target from its JSON form (a dict, or its text); callables cannot come back.

    Parameters
    ----------
    data : dict or str
        What :meth:`Target.to_json` gave, or that as JSON text.

    Returns
    -------
    Target

    Raises
    ------
    InvalidInput
        An unknown kind, a missing field, or a callable's form.
    """
    if isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, dict) or "kind" not in data:
        raise bad_argument("target", "a target's JSON form (a dict with 'kind')", data)
    kind = data["kind"]
    load = _FROM_JSON.get(kind) if isinstance(kind, str) else None
    if load is None:
        if kind == Custom.kind:
            raise InvalidInput(
                f"target: a callable ({data.get('name')}) cannot be loaded from JSON; pass it again"
            )
        raise bad_argument("target", f"a kind of {', '.join(_FROM_JSON)}", kind)
    try:
        return load(data)
    except KeyError as missing:
        raise InvalidInput(f"target: the {kind!r} JSON form lacks {missing}") from None


#: Each class's JSON ``kind`` and how :func:`from_json` builds it back (a callable cannot).
_FROM_JSON: dict[str, Callable[[Mapping[str, Any]], Target]] = {
    Class.kind: lambda d: Class(d["index"]),
    MultiLabel.kind: lambda d: MultiLabel(d["indices"]),
    Output.kind: lambda d: Output(d["index"]),
    Similarity.kind: lambda d: Similarity(d["vector"]),
    Region.kind: lambda d: Region(d["class_index"], from_run_lengths(d["shape"], d["runs"])),
    Prompt.kind: lambda d: Prompt(d["text"], against=d.get("against")),
    Answer.kind: lambda d: Answer(
        d["text"], prompt=d["prompt"], per_token=bool(d.get("per_token"))
    ),
    Box.kind: lambda d: Box(
        d["xyxy"], d.get("label"), add_iou=bool(d.get("add_iou", False)), text=d.get("text")
    ),
    Mask.kind: mask_from_json,
}


def parse(text: str, labels: Sequence[str] | None = None) -> Target | str:
    """Deprecated: the command line's ``--target`` text forms, kept one release.

    The notation belongs to the command line
    (:func:`seewhy.cli.target_text.parse_target`); in Python, build the
    target: ``Box(...)``, ``Region(...)``, ``Output(n)``, ``MultiLabel([...])``.
    This alias is the one import of the command line from here, and goes
    with it in the next release.

    Parameters
    ----------
    text : str
        A ``--target`` value: a class index or name, ``box:x0,y0,x1,y1``, ...
    labels : sequence of str, optional
        Class names, to read a class given by name.
    """
    from .._kit.warn import warn_once
    from ..cli.target_text import parse_target

    warn_once(
        "seewhy.targets.parse is deprecated and will be removed in the next release; build "
        "the target (Box, Region, Output, MultiLabel) or use seewhy.cli.target_text.parse_target"
    )
    return parse_target(text, labels)
