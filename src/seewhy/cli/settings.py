"""``--set NAME=VALUE``: a method's own setting from the command line, typed by the method.

A method's settings are its ``__init__``'s keyword-only parameters; the
text after ``=`` becomes the type that parameter declares (int, float,
bool, text, a ``Literal`` choice, a tuple written ``8,8``, ``none`` where
None is allowed, a JSON object for a mapping) and then meets the method's
own checks, by building the method once. So a wrong name or value is one
line before any model loads, and a new setting needs no change here.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from seewhy.errors import InvalidInput

if TYPE_CHECKING:
    import seewhy

__all__ = ["add_set_option", "describe", "method_settings", "setting_types", "settings_for_all"]

_NONE = ("none", "null")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def add_set_option(p: Any) -> None:
    """``--set NAME=VALUE``, repeatable; read back by :func:`method_settings`."""
    p.add_argument(
        "--set",
        action="append",
        dest="settings",
        metavar="NAME=VALUE",
        help="a setting of the method(s), e.g. --set samples=200; repeatable; a tuple is "
        "written 8,8 (see `seewhy methods NAME` for a method's settings)",
    )


def _pair(text: str) -> tuple[str, str]:
    """``"samples=200"`` -> ("samples", "200"); checked here, so the error is one line."""
    name, equals, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if not equals or not name:
        raise InvalidInput(f"--set: expected NAME=VALUE, got {text!r}")
    return name, value.strip()


def method_settings(args: argparse.Namespace, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each chosen method's ``--set`` settings, typed from its signature and checked by it.

    A setting goes to every chosen method that takes it; one that none takes
    is refused in one line (the nearest spelling, or the methods that take it).
    """
    import seewhy

    classes = {m: seewhy.registry.get(m) for m in methods}
    chosen: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for name, text in map(_pair, getattr(args, "settings", None) or ()):
        takers = [m for m, cls in classes.items() if name in cls.param_names()]
        if not takers:
            _refuse(name, list(classes.values()))
        for m in takers:
            chosen[m][name] = _typed(classes[m], name, text)
    for m, settings in chosen.items():
        classes[m](**settings)  # the method's own checks, in its own one line
    return chosen


def settings_for_all(per_method: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One mapping of every method's settings (for the audit, which hands each method its own)."""
    merged: dict[str, Any] = {}
    for settings in per_method.values():
        for name, value in settings.items():
            merged.setdefault(name, value)
    return merged


def _refuse(name: str, classes: Sequence[type[seewhy.Method]]) -> typing.NoReturn:
    """One line for a setting no chosen method takes: its nearest spelling, or who takes it."""
    from seewhy._keywords import check_keywords

    known = sorted({n for cls in classes for n in cls.param_names()})
    check_keywords("--set", {name: None}, known, classes[0])
    raise InvalidInput(f"--set: {name!r} is not a setting of {classes[0].name}")  # not reached


@functools.cache
def setting_types(method: type[seewhy.Method]) -> dict[str, Any]:
    """Each setting's declared type (the signature's annotations, resolved)."""
    hints = typing.get_type_hints(method.__init__)
    return {name: hints.get(name, Any) for name in method.param_names()}


def _typed(method: type[seewhy.Method], name: str, text: str) -> Any:
    hint = setting_types(method)[name]
    try:
        return _parse(hint, text)
    except ValueError:
        raise InvalidInput(
            f"--set: {name} of {method.name}: expected {describe(hint)}, got {text!r}"
        ) from None


def _parse(hint: Any, text: str) -> Any:
    """``text`` as a value of ``hint``; ValueError when it is none of what ``hint`` allows."""
    if hint is Any:
        return _anything(text)
    origin, members = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for member in sorted(members, key=_preference):
            try:
                return _parse(member, text)
            except ValueError:
                continue
        raise ValueError(text)
    if hint is type(None):
        if text.lower() in _NONE:
            return None
        raise ValueError(text)
    if origin is Literal:
        return _choice(members, text)
    if origin is tuple:
        return _tuple(members, text)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return _mapping(text)
    return _SCALARS.get(hint, _unsupported)(text)


def _preference(member: Any) -> int:
    """Union members tried narrowest first: none, yes/no, whole numbers, numbers, ..., text last."""
    order = [type(None), bool, int, float]
    if member in order:
        return order.index(member)
    return 9 if member is str else 5


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise ValueError(text)


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


def _tuple(members: tuple[Any, ...], text: str) -> tuple[Any, ...]:
    parts = [part.strip() for part in text.replace("x", ",").split(",")]
    kinds = [members[0]] * len(parts) if len(members) == 2 and members[1] is ... else members
    if len(parts) != len(kinds):
        raise ValueError(text)
    return tuple(_parse(kind, part) for kind, part in zip(kinds, parts, strict=True))


def _mapping(text: str) -> dict[str, Any]:
    value = json.loads(text)  # json's error is a ValueError
    if not isinstance(value, dict):
        raise ValueError(text)
    return value


def _anything(text: str) -> Any:
    """A setting typed ``Any`` (a fill, a baseline): none, a number, numbers a,b,c, or a name."""
    for parse in (_parse_none, int, _float, _numbers):
        try:
            return parse(text)
        except ValueError:
            continue
    return text


def _parse_none(text: str) -> None:
    return _parse(type(None), text)


def _numbers(text: str) -> tuple[float, ...]:
    if "," not in text:
        raise ValueError(text)
    return tuple(_float(part) for part in text.split(","))


def _choice(choices: tuple[Any, ...], text: str) -> Any:
    for value in choices:
        if str(value) == text:
            return value
    raise ValueError(text)


def _unsupported(text: str) -> Any:
    raise ValueError(text)  # an array, a function: Python only


_SCALARS: dict[Any, Any] = {bool: _bool, int: int, float: _float, str: str}

#: How each type is written on the command line, for the error line and `seewhy methods`.
_WORDS: dict[Any, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a text",
    type(None): "none",
    Any: "none, a number, numbers a,b,c or a name",
}


def describe(hint: Any) -> str:
    """What a setting of type ``hint`` takes, in words (``int | None``: "an integer or none")."""
    origin, members = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        said = [s for s in (describe(m) for m in sorted(members, key=_preference)) if s]
        return " or ".join(said) if len(said) < 3 else ", ".join(said[:-1]) + " or " + said[-1]
    if origin is Literal:
        return "one of " + ", ".join(str(v) for v in members)
    if origin is tuple:
        count = "some" if members[-1] is ... else str(len(members))
        return f"{count} {_PLURALS.get(members[0], 'values')} a,b"
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return "a JSON object"
    return _WORDS.get(hint, "")


_PLURALS: dict[Any, str] = {int: "integers", float: "numbers", str: "texts"}
