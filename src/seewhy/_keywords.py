"""Keyword checks shared by every entry point that forwards keywords to a method.

A misspelt keyword is refused in one line with the nearest spelling, or with
the methods that do take it, whichever entry point (``explain``, the audit,
the training callbacks, the command line's ``--set``) it came through.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import registry
from .errors import InvalidInput
from .methods.base import Method, unknown_keyword

__all__ = ["check_keywords", "own_keywords"]


@functools.cache
def own_keywords(function: Callable[..., Any]) -> tuple[str, ...]:
    """The named parameters of ``function`` (not ``self``, not ``**params``).

    Read once per function: every ``explain`` call asks for its own and the
    Explainer's, and a signature does not change.
    """
    parameters = inspect.signature(function).parameters.values()
    return tuple(p.name for p in parameters if p.name != "self" and p.kind is not p.VAR_KEYWORD)


def check_keywords(
    where: str,
    params: Mapping[str, Any],
    own: Sequence[str],
    method: type[Method] | Sequence[type[Method]],
    notes: Mapping[str, str] | None = None,
) -> None:
    """Refuse a keyword that is neither ``where``'s own nor a setting of ``method``.

    ``method`` may be several (the audit's): a keyword then needs only one of
    them to take it. The error is the caller's (``where``), with the nearest
    spelling among both (or among ``notes``, keywords of another call), or the
    other methods that take the keyword.
    """
    chosen = [method] if isinstance(method, type) else list(method)
    settings = list(dict.fromkeys(name for m in chosen for name in m.param_names()))
    for key in params:
        if key not in settings and key not in own:
            names = {m.name for m in chosen}
            others = {
                name: registry.get(name).param_names()
                for name in registry.names()
                if name not in names
            }
            raise InvalidInput(
                unknown_keyword(
                    where,
                    key,
                    [*own, *settings],
                    noun="keyword",
                    others=others,
                    owner=" or ".join(m.name for m in chosen),
                    notes=notes,
                )
            )
