"""The drawing options are spelled out in each public signature; their defaults must agree.

``Explanation.panel``/``overlay``/``heatmap``, ``viz.explanation_panel``,
``viz.explanation_parts`` and ``viz.grid`` each list the same options (cmap,
alpha, at, signed, percentile, lime, ...) so that ``help()`` and an IDE show
them; this keeps a default changed in one place from silently differing in
another.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from seewhy import viz
from seewhy.explanation import Explanation


def _defaults(function: Callable[..., Any]) -> dict[str, Any]:
    parameters = inspect.signature(function).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}


@pytest.mark.parametrize(
    ("method", "drawer"),
    [
        (Explanation.panel, viz.explanation_panel),
        (Explanation.overlay, viz.explanation_parts),
        (Explanation.heatmap, viz.explanation_parts),
        (viz.grid, viz.explanation_parts),
        (viz.explanation_panel, viz.explanation_parts),
    ],
)
def test_shared_drawing_options_have_the_same_defaults(method: Any, drawer: Any) -> None:
    mine, theirs = _defaults(method), _defaults(drawer)
    shared = sorted(set(mine) & set(theirs))
    assert {"cmap", "at"} <= set(shared)  # the comparison is not empty
    assert {n: mine[n] for n in shared} == {n: theirs[n] for n in shared}
