"""Small argument checks with one error template.

Every message reads ``"<where>: <argument> expected <what>, got <value>"`` so a
user sees which argument of which call was wrong and what would be accepted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InvalidInput

__all__ = [
    "bad_argument",
    "finite_float",
    "flag",
    "one_of",
    "optional_positive_int",
    "positive_int",
    "unit_float",
]


def bad_argument(name: str, expected: str, value: Any, *, where: str = "") -> InvalidInput:
    """The one error template: which argument, what was expected, what was received."""
    prefix = f"{where}: " if where else ""
    return InvalidInput(f"{prefix}{name}: expected {expected}, got {value!r}")


def positive_int(value: Any, name: str, *, where: str = "", minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; booleans and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise bad_argument(name, expected, value, where=where)
    return int(value)


def finite_float(value: Any, name: str, *, where: str = "", minimum: float | None = None) -> float:
    """``value`` as a finite float (NaN and infinities refused), optionally >= ``minimum``."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating, np.integer))
    if ok:
        number = float(value)
        ok = math.isfinite(number) and (minimum is None or number >= minimum)
    if not ok:
        expected = "a finite number" if minimum is None else f"a finite number >= {minimum:g}"
        raise bad_argument(name, expected, value, where=where)
    return float(value)


def unit_float(
    value: Any, name: str, *, where: str = "", low: float = 0.0, high: float = 1.0
) -> float:
    """``value`` as a float in the half-open interval (low, high]."""
    number = finite_float(value, name, where=where)
    if not low < number <= high:
        raise bad_argument(name, f"a number in ({low:g}, {high:g}]", value, where=where)
    return number


def one_of(value: Any, choices: tuple[str, ...], name: str, *, where: str = "") -> str:
    """``value`` when it is one of the ``choices`` (exact, case-sensitive strings)."""
    if not isinstance(value, str) or value not in choices:
        raise bad_argument(name, f"one of {', '.join(choices)}", value, where=where)
    return value


def flag(value: Any, name: str, *, where: str = "") -> bool:
    """``value`` as a bool; only True and False (numpy's too) are accepted."""
    if not isinstance(value, (bool, np.bool_)):
        raise bad_argument(name, "True or False", value, where=where)
    return bool(value)


def optional_positive_int(value: Any, name: str, *, where: str = "") -> int | None:
    """None (a default chosen later, e.g. from the input size) or a positive integer."""
    return None if value is None else positive_int(value, name, where=where)
