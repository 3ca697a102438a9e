"""Registries: one name (and its aliases), one entry; a misspelling gets the nearest names.

:class:`Registry` is the mechanism, shared by the methods (here: ``get``,
``names``, ``register``) and the metrics (:mod:`seewhy.metrics.registry`), so
both spell names alike and refuse a typo with the same kind of line.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from .errors import MethodNotFound, SeewhyError

if TYPE_CHECKING:
    from .methods.base import Method

__all__ = ["Registry", "get", "names", "register"]

T = TypeVar("T")
M = TypeVar("M", bound="type[Method]")


class Registry(Generic[T]):
    """Entries of one kind by name, with aliases and near-match errors.

    ``key`` is how a name is spelled inside (so ``grad_cam`` and ``grad-cam``
    meet); ``not_found`` builds the error a misspelling raises from its one-line
    message; ``load`` fills the registry before the first lookup (entries that
    register themselves when their module is imported).

    Parameters
    ----------
    kind : str
        What an entry is (``"method"``, ``"metric"``), for messages.
    key : callable
        Spells a name as it is kept inside.
    not_found : callable
        Builds the error a misspelt name raises, from its one-line message.
    load : callable
        Fills the registry before the first lookup.
    """

    def __init__(
        self,
        kind: str,
        *,
        key: Callable[[str], str],
        not_found: Callable[[str], SeewhyError],
        load: Callable[[], None] = lambda: None,
    ) -> None:
        self.kind = kind
        self.key = key
        self._not_found = not_found
        self._load = load
        self._entries: dict[str, T] = {}
        self._primary: dict[str, T] = {}

    def add(self, entry: T, name: str, *aliases: str) -> str:
        """Make ``entry`` known by ``name`` and ``aliases``; returns the name as spelled inside.

        A name already taken is a programming error, raised at import time.
        """
        keys = [self.key(n) for n in (name, *aliases)]
        for k in keys:
            if k in self._entries:
                raise SeewhyError(
                    f"{self.kind} name {k!r} is already registered by {_named(self._entries[k])}"
                )
        for k in keys:
            self._entries[k] = entry
        self._primary[keys[0]] = entry
        return keys[0]

    def get(self, name: str) -> T:
        """The entry registered under ``name`` (or an alias); near matches in the error."""
        self._load()
        k = self.key(name)
        if k in self._entries:
            return self._entries[k]
        close = difflib.get_close_matches(k, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise self._not_found(
            f"{self.kind}: unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})"
        )

    def names(self) -> list[str]:
        """Primary names, sorted (aliases are accepted but not listed)."""
        self._load()
        return sorted(self._primary)

    def entries(self) -> list[T]:
        """One entry per primary name, in :meth:`names` order."""
        return [self._primary[n] for n in self.names()]


def _named(entry: object) -> str:
    return getattr(entry, "__name__", None) or getattr(entry, "name", None) or repr(entry)


def _method_key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _load_methods() -> None:
    from . import methods  # noqa: F401  (the built-in methods register on import)


_METHODS: Registry[type[Method]] = Registry(
    "method", key=_method_key, not_found=MethodNotFound, load=_load_methods
)


def register(name: str, *aliases: str) -> Callable[[M], M]:
    """Class decorator: make a method available by ``name`` (and aliases).

    Parameters
    ----------
    name : str
        The method's name in ``explain(method=)`` and ``--method``; case,
        ``_`` and ``-`` are forgiven.
    *aliases : str
        Other names for it.

    Raises
    ------
    SeewhyError
        A name is already taken by another method.
    """

    def wrap(cls: M) -> M:
        cls.name = _METHODS.add(cls, name, *aliases)
        return cls

    return wrap


def get(name: str) -> type[Method]:
    """The method class registered under ``name``; near matches in the error.

    Parameters
    ----------
    name : str
        A method's name or alias.

    Raises
    ------
    MethodNotFound
        No such method; the nearest names are in the message.
    """
    return _METHODS.get(name)


def names() -> list[str]:
    """Primary names of the registered methods, sorted."""
    return _METHODS.names()
