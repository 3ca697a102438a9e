"""What the graph of a ``torch.export`` (.pt2) archive calls, read before it is loaded.

An exported program is a graph of operator calls kept as JSON, not a pickle,
but its nodes name what they call by a dotted path, and ``torch.export.load``
resolves any path that starts with ``torch`` by ``getattr``. Two things in such
a graph reach beyond tensors: an operator that takes a file name
(``aten::save`` writes a pickle to any path, the way into a shell profile;
``aten::from_file`` maps any file in), and an operator-valued argument, which
may name any object reachable from ``torch`` (``torch.serialization.os.system``)
for an operator that calls its argument. So every node must call an operator
overload (``torch.ops.NS.OP.OVERLOAD``), a higher-order operator
(``torch.ops.higher_order.OP``) or a symbolic-shape function (``_operator.*``,
``math.*``, ``torch.sym_*``); no operator may take a file name; and an
operator-valued argument must itself be an operator overload.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["unsafe_graph"]

_OVERLOAD = re.compile(r"torch\.ops\.([A-Za-z_]\w*)\.(\w+)\.(\w+)")
_HIGHER_ORDER = re.compile(r"torch\.ops\.higher_order\.\w+")
# Shape arithmetic an export may record; the names torch's deserializer accepts outside ops.
_SYMBOLIC = re.compile(
    r"_operator\.(eq|ne|le|ge|lt|gt|neg|pos|and_|or_|not_|add|mul|sub|floordiv|mod|pow|truediv|getitem)"
    r"|math\.(ceil|floor|trunc|sqrt)|torch\._?sym_(int|float|max|min|not|ite|sqrt|sum)"
)
_FILE_ARGUMENT = re.compile(r"file|path|dir", re.IGNORECASE)


def unsafe_graph(data: bytes) -> str | None:
    """Why the serialized graph in ``data`` could reach beyond tensors, else None.

    Text that is not JSON is left to ``torch.export.load``, which refuses it.
    """
    try:
        program = json.loads(data)
    except ValueError:
        return None
    for target, is_argument in _calls(program):
        if is_argument and not _OVERLOAD.fullmatch(target):
            return f"passes {target!r} as an operator argument"
        if not any(p.fullmatch(target) for p in (_OVERLOAD, _HIGHER_ORDER, _SYMBOLIC)):
            return f"calls {target!r}, which is not an operator"
        if _takes_a_file(target):
            return f"calls {target!r}, which reads or writes files"
    return None


def _calls(node: Any) -> Iterator[tuple[str, bool]]:
    """(dotted path, whether it is an operator-valued argument) of everything the graph calls."""
    if isinstance(node, dict):
        target, inputs = node.get("target"), node.get("inputs")
        if isinstance(target, str) and isinstance(inputs, list):
            yield target, False
        operator = node.get("as_operator")
        if isinstance(operator, str):
            yield operator, True
        for value in node.values():
            yield from _calls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _calls(value)


def _takes_a_file(target: str) -> bool:
    """Whether the operator overload ``target`` has a string argument that names a file."""
    match = _OVERLOAD.fullmatch(target)
    if match is None:
        return False
    namespace, name, _ = match.groups()
    schemas = torch._C._jit_get_schemas_for_operator(f"{namespace}::{name}")
    return any(
        _FILE_ARGUMENT.search(argument.name) and "str" in str(argument.type)
        for schema in schemas
        for argument in schema.arguments
    )
