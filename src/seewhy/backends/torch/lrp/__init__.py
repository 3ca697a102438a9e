"""Layer-wise relevance propagation on the torch backend (the ``Relevance`` capability).

``rules.py``: each rule's math, as autograd functions whose backward returns
relevance; ``propagate.py``: the rules put on a forward of the model's twin and
taken off after; ``backend.py``: the pass the backend offers.
"""

from __future__ import annotations

from .backend import TorchRelevance

__all__ = ["TorchRelevance"]
