"""Built-in methods; importing this package registers them."""

from __future__ import annotations

from . import answer_attention, attention, cam, gradients, legrad, lime, perturbation

__all__ = [
    "answer_attention",
    "attention",
    "cam",
    "gradients",
    "legrad",
    "lime",
    "perturbation",
]
