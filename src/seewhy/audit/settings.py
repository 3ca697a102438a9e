"""What each method's :class:`~seewhy.Explainer` gets in an audit, checked before anything runs.

One path for every setting: ``audit(..., **settings)`` takes any keyword of
``Explainer`` (read from its signature by :func:`seewhy.api.explainer_keywords`,
so an option added there reaches the audit with no change here) and any
setting of the chosen methods. A method setting goes only to the chosen
methods that take it; one that none takes, or a misspelling, is refused in one
line. :class:`Settings` is plain data: it travels to Ray actors and
subprocesses by pickle, and :meth:`Settings.recorded` is its part of the
resume fingerprint.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from seewhy import registry
from seewhy._keywords import check_keywords
from seewhy._kit.checks import positive_int
from seewhy.errors import InvalidInput
from seewhy.explainer import Explainer, explainer_keywords
from seewhy.explanation import json_safe

from .targets import AuditTarget, check_audit_target

__all__ = ["Settings", "audit_settings"]

#: Explainer keywords the audit's manifest records under their own names (the
#: first audits' fingerprint); the preprocessing is recorded as the model's spec.
_OWN_RECORD = ("layer", "top_k", "head", "preprocess")


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs besides the model; plain data, so it pickles.

    ``explainer`` holds the caller's :class:`~seewhy.Explainer` keywords (every
    method gets them), ``method_settings`` each method's own settings.
    """

    methods: tuple[str, ...] = ("gradcam",)
    batch_size: int = 32  # images per batch: per shard, and per pass of the model
    object_threshold: float = 0.5
    border_threshold: float = 0.5
    cmap: str = "viridis"
    alpha: float = 0.5
    target: AuditTarget = "predicted"  # what each image is explained for: see .targets
    explainer: Mapping[str, Any] = field(default_factory=dict)
    method_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def keywords(self, method: str) -> dict[str, Any]:
        """``Explainer(model, method, **keywords)`` for one of :attr:`methods`."""
        own = self.method_settings.get(method, {})
        return {"batch_size": self.batch_size, **self.explainer, **own}

    def option(self, name: str) -> Any:
        """An Explainer keyword as the workers use it: the caller's, else Explainer's default."""
        return self.explainer[name] if name in self.explainer else _explainer_default(name)

    def recorded(self) -> dict[str, Any]:
        """The manifest's part of these settings: what makes two audits the same audit.

        A key appears only when set, so an audit made before it existed keeps
        its fingerprint and still resumes.
        """
        record: dict[str, Any] = {"layer": self.option("layer"), "top_k": self.option("top_k")}
        if self.option("head") is not None:
            record["head"] = self.option("head")
        if self.target != "predicted":
            record["target"] = self.target
        own = {k: v for k, v in self.explainer.items() if k not in _OWN_RECORD}
        others = _not_default(own, {k: _explainer_default(k) for k in own})
        if others:
            record["explainer"] = json_safe(others)
        chosen = {
            m: _not_default(s, registry.get(m).defaults()) for m, s in self.method_settings.items()
        }
        chosen = {m: s for m, s in chosen.items() if s}
        if chosen:
            record["method_settings"] = json_safe(chosen)
        return record


@functools.cache
def _explainer_default(name: str) -> Any:
    return inspect.signature(Explainer.__init__).parameters[name].default


def _not_default(given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` less the defaults spelt out (``score="logit"``), which are not worth recording.

    Leaving them out keeps the fingerprint of an audit that names a default
    the same as one that does not, so either resumes the other.
    """
    return {
        k: v
        for k, v in given.items()
        if not (_plain(v) and _plain(defaults[k]) and v == defaults[k])
    }


def _plain(value: Any) -> bool:
    """A value ``==`` compares safely: numbers, words, None, and tuples of them (not arrays)."""
    if isinstance(value, tuple):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def audit_settings(
    methods: Sequence[str] | str,
    batch_size: int,
    thresholds: tuple[float, float],
    target: Any,
    given: Mapping[str, Any],
    *,
    own: Sequence[str],
) -> Settings:
    """The checked :class:`Settings`; ``given`` are the caller's ``**settings``.

    ``own`` are the audit's own keywords, for the nearest spelling of a
    misspelt one. Each method is built once here, so a bad value of its
    settings is refused in the method's own line before the model loads.
    """
    names = _method_names(methods)
    batch_size = positive_int(batch_size, "batch_size")
    for name, value in zip(("object_threshold", "border_threshold"), thresholds, strict=True):
        if not 0.0 <= value <= 1.0:
            raise InvalidInput(f"{name}: expected a fraction in [0, 1], got {value}")
    explainer, per_method = _split(given, names, own)
    return Settings(
        methods=names,
        batch_size=batch_size,
        object_threshold=float(thresholds[0]),
        border_threshold=float(thresholds[1]),
        target=check_audit_target(target),
        explainer=explainer,
        method_settings=per_method,
    )


def _method_names(methods: Sequence[str] | str) -> tuple[str, ...]:
    """The methods' registered names, each once, in the caller's order (aliases meet)."""
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise InvalidInput("methods: expected at least one method name, got none")
    return tuple(dict.fromkeys(registry.get(m).name for m in names))


def _split(
    given: Mapping[str, Any], names: Sequence[str], own: Sequence[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the Explainer keywords, each method's settings) of ``given``, or a one-line refusal."""
    classes = [registry.get(m) for m in names]
    shared = explainer_keywords()
    check_keywords("audit", given, [*own, *shared], classes)
    explainer = {k: v for k, v in given.items() if k in shared}
    per_method = {
        cls.name: {k: v for k, v in given.items() if k not in shared and k in cls.param_names()}
        for cls in classes
    }
    for cls in classes:
        cls(**per_method[cls.name])  # the method's own one-line refusal of a bad value
    return explainer, per_method
