"""Built-in methods; importing this package registers them."""

from __future__ import annotations

from . import cam

__all__ = ["cam"]
