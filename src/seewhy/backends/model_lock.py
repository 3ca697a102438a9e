"""One lock per model, so that two threads explaining one model never corrupt it.

A Keras pass changes the model for its duration (hooks on layers, the guided
rule in place of ReLUs); a torch model explained in place (TorchScript,
``torch.compile``, a module the twin cannot follow: ``torch/twin.py``) goes
to eval mode and back. Two such passes over one model in two threads would
fire each other's hooks and put back each other's flags (Grad-CAM
calls failed, saliency maps went wrong, BatchNorm statistics moved). So every
pass holds the model's lock. A torch pass on its twin changes nothing of the
user's model, and still holds the lock: one pass at a time keeps the twin's
buffer copies and the caches consistent, and a training thread that holds the
lock around ``optimizer.step()`` never lands a step inside a pass (each pass
then sees one set of weights; see ``torch/twin.py`` for what happens without).

The lock is keyed weakly on the model object: every backend instance over
the same model shares it, and it never keeps the model alive. It is
reentrant, because one pass may start another (a capture first traces the
layers). Passes over different models still run side by side.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from .._kit.blas import users_blas_threads

__all__ = ["model_lock", "one_pass_at_a_time"]

_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_REGISTRY = threading.Lock()  # guards _LOCKS itself
_UNREFERENCEABLE = threading.RLock()  # shared by models that cannot be weakly referenced

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _HasModel(Protocol):
    @property
    def model(self) -> Any: ...


_S = TypeVar("_S", bound=_HasModel)


def model_lock(model: Any) -> threading.RLock:
    """The reentrant lock of ``model``: the same object for every caller while it lives."""
    with _REGISTRY:
        try:
            lock = _LOCKS.get(model)
            if lock is None:
                lock = _LOCKS[model] = threading.RLock()
        except TypeError:  # not hashable or not weakly referenceable: one lock for all such
            return _UNREFERENCEABLE
    return lock


def one_pass_at_a_time(
    method: Callable[Concatenate[_S, _P], _R],
) -> Callable[Concatenate[_S, _P], _R]:
    """A backend method that runs holding the lock of ``self.model``, with the user's BLAS
    thread counts (see ``_kit/blas.py``)."""

    def locked(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with model_lock(self.model), users_blas_threads():  # the model's own thread counts
            return method(self, *args, **kwargs)

    functools.update_wrapper(locked, method)  # its name and docstring
    return locked
