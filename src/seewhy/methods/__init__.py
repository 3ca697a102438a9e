"""Built-in methods; importing this package registers them."""

from __future__ import annotations

from . import attention, cam, gradients, legrad, lime, perturbation

__all__ = ["attention", "cam", "gradients", "legrad", "lime", "perturbation"]
