"""PyTorch backend, one module per job.

``structure`` (layer lookup, the traced layer list, opaque modules), ``twin``
(the private copy of the module tree, weights shared, that every pass runs on,
so a thread training the model meanwhile never sees eval mode or seewhy's
hooks), ``passes`` (predict, capture, input gradients, layer edits, autocast
and channels-last),
``guided`` (the Guided Backprop function mode), ``weights`` (what sanity
checks list, copy and re-draw), ``loading`` (names and files to modules),
``archives`` (what in a .pt2 file could run code), ``device`` (placement,
packing for another process) and ``backend`` (the class that ties them to
one model).
"""

from __future__ import annotations

from .backend import TorchBackend

__all__ = ["TorchBackend"]
