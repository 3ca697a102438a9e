"""Numbers JSON can hold: a NaN or an infinity becomes ``null``.

JSON has no NaN, so a strict writer raises on one and a lax one writes a
token that browsers' ``JSON.parse`` refuses. A model that gives NaN scores
for one image must not stop the report, so every record passes through here
before it is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["finite_json"]


def finite_json(data: Any) -> Any:
    """``data`` with every non-finite float (numpy's too) replaced by ``None``."""
    if isinstance(data, bool) or data is None or isinstance(data, (str, int)):
        return data
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, Mapping):
        return {key: finite_json(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(value) for value in data]
    if getattr(data, "ndim", None) == 0 and hasattr(data, "item"):  # numpy scalars
        return finite_json(data.item())
    return data
