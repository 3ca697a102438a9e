"""Method registry: one name, one class; a second registration is an error."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .errors import MethodNotFound, SeewhyError

if TYPE_CHECKING:
    from .methods.base import Method

__all__ = ["get", "names", "register"]

_METHODS: dict[str, type[Method]] = {}
M = TypeVar("M", bound="type[Method]")


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register(name: str, *aliases: str) -> Callable[[M], M]:
    """Class decorator: make a method available by ``name`` (and aliases)."""

    def wrap(cls: M) -> M:
        for key in (name, *aliases):
            k = _key(key)
            if k in _METHODS:
                raise SeewhyError(
                    f"method name {k!r} is already registered by {_METHODS[k].__name__}"
                )
            _METHODS[k] = cls
        cls.name = _key(name)
        return cls

    return wrap


def _ensure_loaded() -> None:
    from . import methods  # noqa: F401  (registers the built-in methods)


def get(name: str) -> type[Method]:
    """The method class registered under ``name``; near matches in the error."""
    _ensure_loaded()
    k = _key(name)
    if k in _METHODS:
        return _METHODS[k]
    close = difflib.get_close_matches(k, list(_METHODS), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise MethodNotFound(f"method: unknown method {name!r}{hint} (known: {', '.join(names())})")


def names() -> list[str]:
    """Primary names of the registered methods, sorted."""
    _ensure_loaded()
    return sorted({cls.name for cls in _METHODS.values()})
