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
decorator, so that warnings still point at the caller's line. Every model
pass (``one_pass_at_a_time``, a predict-only backend's ``predict``) runs inside
:func:`users_blas_threads`, with the counts the user had: a framework may
share numpy's BLAS (conda builds of PyTorch link the same MKL or OpenBLAS),
and a black box's function is the user's own code. So only seewhy's math
between the passes runs on one thread. Counts are process-wide: entries from
several threads share one count of each, and the last one out restores what
the first one found. Only BLAS libraries of numpy and scipy are touched.
Without threadpoolctl (or without a BLAS it knows) all of this is a no-op.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["one_blas_thread", "users_blas_threads"]

_lock = threading.Lock()
_inside = 0  # seewhy calls now inside one_blas_thread, all threads together
_users = 0  # of which now running the model or the user's code (users_blas_threads)
_limited: Any = None  # the controller of the libraries limited, from the first entry on
_original: Any = None  # its first limiter: it knows, and restores, the counts found
_one = False  # whether they are on one thread now
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

            blas = ThreadpoolController().select(user_api="blas")
            ours = [lib.filepath for lib in blas.lib_controllers if _numpy_or_scipy(lib.filepath)]
            _controller = blas.select(filepath=ours) if ours else None
        except Exception:  # no threadpoolctl, or one that cannot read the libraries
            _controller = None
    return _controller


def _numpy_or_scipy(path: str) -> bool:
    """A BLAS that numpy or scipy ship (``numpy.libs``, ``scipy_openblas64``, ...) or link.

    Only theirs: a framework's own BLAS (PyTorch links OpenBLAS on some
    platforms) runs the model's passes and keeps the user's thread count.
    """
    parts = Path(path).parts
    return any(part.startswith(("numpy", "scipy")) for part in parts) or not any(
        part.startswith(("torch", "tensorflow", "jax", "onnxruntime", "keras")) for part in parts
    )


def _settle() -> None:
    """One thread while seewhy's own math runs, the user's counts otherwise (under _lock)."""
    global _one
    want = _inside > 0 and _users == 0 and _limited is not None
    if want and not _one:
        _limited.limit(limits=1)
        _one = True
    elif not want and _one:
        _original.restore_original_limits()
        _one = False


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on one thread for the duration (nested and concurrent entries share it)."""
    global _inside, _original, _limited, _one
    with _lock:
        if _inside == 0:
            _limited = _blas()  # the libraries limited now are the ones restored at the end
            _original = None if _limited is None else _limited.limit(limits=1)
            _one = _original is not None
        _inside += 1
        _settle()
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            _settle()
            if _inside == 0:
                _original = _limited = None


@contextmanager
def users_blas_threads() -> Iterator[None]:
    """The user's own counts for the duration: a model pass, a black box's function."""
    global _users
    with _lock:
        _users += 1
        _settle()
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            _settle()
