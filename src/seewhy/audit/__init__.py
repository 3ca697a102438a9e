"""Audit a whole data set: explain every image, flag the suspicious ones, report.

``seewhy.audit.audit(data, model, out=...)`` is the Python entry point;
``seewhy audit`` on the command line (``seewhy.cli.audit``) calls it. Nothing here imports a
framework or Ray until a run starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dataset import Dataset, Item, collect
    from .runner import AuditResult, audit
    from .store import Store

__all__ = [
    "AuditResult",
    "Dataset",
    "Item",
    "Store",
    "audit",
    "collect",
    "load_maps",
]

_LAZY = {
    "Dataset": "dataset",
    "Item": "dataset",
    "collect": "dataset",
    "AuditResult": "runner",
    "audit": "runner",
    "Store": "store",
}


def load_maps(out: str, method: int = 0) -> tuple[Any, Any]:
    """The maps an audit saved for one of its methods, read back from ``out``.

    Parameters
    ----------
    out
        The audit's folder.
    method
        The method's position in the audit's ``methods`` (0: the first).

    Returns
    -------
    tuple of (ndarray, ndarray)
        The item indices (as in ``results.csv``'s ``index``) and their maps,
        (N, H, W) float16 at the model input's size.
    """
    from .store import Store

    return Store(out).maps(method)


def __getattr__(name: str) -> Any:
    """Load the submodules on first use, so the CLI's start-up stays fast."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
