"""Built-in methods; importing this package registers them."""

from __future__ import annotations

from . import cam, gradients, lime, perturbation

__all__ = ["cam", "gradients", "lime", "perturbation"]
