"""numpy's BLAS on one thread while seewhy works, the user's thread count for the user's code.

Why: after each call, OpenBLAS's worker threads keep spinning for about a
tenth of a second before they sleep. seewhy alternates the model's passes
(torch's, TensorFlow's or ONNX Runtime's own thread pools) with small numpy
math (map weights, upsampling, relevance rows), so on a CPU the next pass
shared its cores with spinning BLAS threads: a ViT-S rollout took 1.26-1.32x a
forward, 1.14x with numpy's BLAS on one thread; Grad-CAM 1.13x its floor,
1.04x. seewhy's own arrays are small, so one thread costs it nothing.

:func:`one_blas_thread` is entered by the public entry points (``explain``, the
metrics, the sanity checks), as a ``with`` in their bodies rather than a
decorator, so that warnings still point at the caller's line; a black box's
function runs inside
:func:`users_blas_threads`, with the count the user had. Counts are
process-wide, so entries from several threads share one count of how many
are inside, and the last one out restores what the first one found. Without
threadpoolctl (or without a BLAS it knows) both are no-ops.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["one_blas_thread", "users_blas_threads"]

_lock = threading.Lock()
_inside = 0  # entries now inside one_blas_thread, all threads together
_original: Any = None  # the limiter of the first entry: it restores the counts found
_limited: Any = None  # the controller of the libraries it limited
_controller: Any = None
_modules_seen = -1  # len(sys.modules) when the libraries were last read


def _blas() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries; None without one.

    Read again whenever modules were imported since (scipy loads a BLAS of its
    own beside numpy's when its linear algebra is first imported); reading
    costs about a millisecond, comparing a count nothing.
    """
    global _controller, _modules_seen
    if len(sys.modules) != _modules_seen:
        _modules_seen = len(sys.modules)
        try:
            from threadpoolctl import ThreadpoolController

            controller = ThreadpoolController().select(user_api="blas")
            _controller = controller if controller.lib_controllers else None
        except Exception:  # no threadpoolctl, or one that cannot read the libraries
            _controller = None
    return _controller


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on one thread for the duration (nested and concurrent entries share it)."""
    global _inside, _original, _limited
    with _lock:
        if _inside == 0:
            _limited = _blas()  # the libraries limited now are the ones restored at the end
            _original = None if _limited is None else _limited.limit(limits=1)
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0 and _original is not None:
                _original.restore_original_limits()
                _original = _limited = None


@contextmanager
def users_blas_threads() -> Iterator[None]:
    """Inside :func:`one_blas_thread`: the user's own BLAS thread count for the duration."""
    with _lock:
        original, limited = _original, _limited
        found = None if original is None else original.get_original_num_threads().get("blas")
    if limited is None or found is None:
        yield
        return
    limited.limit(limits=found)  # the libraries one_blas_thread limited, no others
    try:
        yield
    finally:
        with _lock:
            if _original is original:  # still inside: seewhy's math goes on on one thread
                limited.limit(limits=1)
