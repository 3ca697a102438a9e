"""What both training callbacks do at a logging point: explain fixed images, save the panels.

The Keras and Lightning callbacks differ in their hooks and loggers; the
explaining and the PNG files are the same, so they are written once here.
Framework-free: the model is whatever ``seewhy.explain`` takes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .explanation import Explanation

__all__ = ["LoggedPanels", "PanelSettings", "explain_and_save"]


class PanelSettings:
    """The settings both callbacks keep: what to explain, how to draw it, where to write it.

    A mixin (no ``__init__`` of its own, so it sits beside Keras' and
    Lightning's callback classes): a callback calls :meth:`keep_settings` once.
    """

    images: Any
    method: str
    log_dir: Path
    cmap: str | None
    panel_options: dict[str, Any]
    explain_settings: dict[str, Any]  # (``params`` is Keras' own attribute: the fit settings)
    written: list[Path]

    def keep_settings(
        self,
        images: Any,
        method: str,
        log_dir: str | Path,
        cmap: str | None,
        panel_options: Mapping[str, Any] | None,
        settings: dict[str, Any],
    ) -> None:
        """Keep the settings; ``settings`` (``seewhy.explain``'s keywords) are checked now.

        A misspelt setting or method then stops the callback where it is made,
        not at the first logging point, after an epoch of training.
        """
        _check_explain_settings(method, settings)
        self.images = images
        self.method = method
        self.log_dir = Path(log_dir)
        self.cmap = cmap
        self.panel_options = dict(panel_options or {})  # Explanation.panel's other settings
        self.explain_settings = settings
        self.written = []  # every PNG written so far, in order

    # What the callbacks kept as attributes of their own before their keywords became
    # ``**settings``: read from there, so code that reads them still works.
    @property
    def target(self) -> Any:
        """The ``target=`` given (None: each image's top-1 class)."""
        return self.explain_settings.get("target")

    @property
    def layer(self) -> str | None:
        """The ``layer=`` given (None: the default layer)."""
        return self.explain_settings.get("layer")

    @property
    def preprocess(self) -> Any:
        """The ``preprocess=`` given (None: the model's own)."""
        return self.explain_settings.get("preprocess")

    @property
    def labels(self) -> Any:
        """The ``labels=`` given (None: the model's own)."""
        return self.explain_settings.get("labels")

    @property
    def score(self) -> Any:
        """The ``score=`` given (``"logit"`` by default)."""
        return self.explain_settings.get("score", "logit")

    @property
    def method_params(self) -> dict[str, Any]:
        """The method's own settings among ``explain_settings``."""
        from . import registry

        names = registry.get(self.method).param_names()
        return {k: v for k, v in self.explain_settings.items() if k in names}


def _check_explain_settings(method: str, settings: Mapping[str, Any]) -> None:
    """Refuse in one line, with the nearest spelling, a keyword ``seewhy.explain`` would refuse."""
    from . import registry
    from ._keywords import check_keywords, own_keywords
    from .api import explain

    own = [k for k in own_keywords(explain) if k not in ("model", "images", "method")]
    others = {k: v for k, v in settings.items() if k not in own}  # the method's, or misspelt
    check_keywords("ExplainCallback", others, own, registry.get(method))


@dataclass(frozen=True)
class LoggedPanels:
    """One logging point's result: the explanation, its panels as arrays and their files."""

    explanation: Explanation
    method: str  # the method's name, safe in file names and logger tags
    panels: list[np.ndarray]  # (H, W, 3) uint8, one per image
    paths: list[Path]


def explain_and_save(model: Any, settings: PanelSettings, stem: str) -> LoggedPanels:
    """Explain ``settings.images`` with ``model``, write ``seewhy_{method}_{stem}_imgNN.png``.

    The files written are added to ``settings.written``.
    """
    from .api import explain

    explanation = explain(model, settings.images, settings.method, **settings.explain_settings)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    method = re.sub(r"[^A-Za-z0-9_.-]+", "_", explanation.method)
    panels: list[np.ndarray] = []
    paths: list[Path] = []
    for i in range(len(explanation)):
        panel = explanation.panel(i, cmap=settings.cmap, **settings.panel_options).convert("RGB")
        path = settings.log_dir / f"seewhy_{method}_{stem}_img{i:02d}.png"
        panel.save(path)
        paths.append(path)
        panels.append(np.asarray(panel))
    settings.written.extend(paths)
    return LoggedPanels(explanation, method, panels, paths)
