"""The private twin of the user's model that every torch pass runs on.

A pass needs the model in eval mode, hooks on its layers, sometimes a layer's
output edited. Done on the user's own modules, that would put another thread
training the model meanwhile into eval mode for some of its steps (BatchNorm
stops counting; dropout was off in 50 of 300 steps when measured). So a pass
runs on a twin: each
module copied shallowly, with its own ``_modules`` (the twins of its children),
its own hook dicts (starting as copies of the user's, so the user's hooks fire
as before), its own training flag (False), the very same parameters (no weight
is copied) and copies of its buffers (small, and a training thread's
BatchNorm updates the originals in place: read mid-update they are half
done, and autograd refuses a saved tensor that changed).

The twin is built for each outermost pass (about 1 ms for a ResNet-50's 151
modules), so it is always the model as it is now (a swapped layer, a flag the
user set); a buffer's copy is kept while the buffer's version says it has not
changed. A module that reaches a submodule other than through ``_modules`` (a
plain list or dict, a bound method, a ``functools.partial``, a closure) gets
the twins there too. A module that holds one in an object of its own cannot be
followed: that model is explained in place, without a twin (eval mode set on
the user's own modules for the pass), and a warning says so once. So are
TorchScript and compiled modules (their code is bound to the original objects).
No global hook watches for what the scan cannot see (a submodule reached
through a module-level global): a global hook would make ``torch.compile``
recompile the training thread's step on every pass.

Weights are shared, so an optimizer step in another thread can still land in
the middle of a pass; the pass then sees a mix of two steps, or autograd
refuses it. Parameters' versions are compared before and after: such a pass is
run again, and after :data:`ATTEMPTS` tries the error says so in one line.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import torch
from torch import nn

from ..._kit.warn import warn_user
from ...errors import BackendError
from ..model_lock import one_pass_at_a_time
from .structure import eval_mode, is_scripted

__all__ = ["ATTEMPTS", "WEIGHTS_CHANGED", "build_twin", "current_model", "on_twin", "run_on_twin"]

#: Tries of a pass whose weights another thread keeps changing, before the error.
ATTEMPTS = 3
WEIGHTS_CHANGED = (
    "model: its weights changed while seewhy was explaining it ({tries} tries; another thread "
    "training it?); explain between training steps or on a copy, or hold "
    "seewhy.backends.model_lock.model_lock(model) around optimizer.step()"
)

# The dicts a pass registers its hooks in: the twin's own, filled with the user's hooks
# (the backward and state-dict hooks stay shared: seewhy adds none).
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
)
_REBUILT = frozenset({*_HOOK_DICTS, "_modules", "_parameters", "_buffers", "training"})
# Entries of a module's __dict__ taken as they are, without a look inside.
_AS_IS = _REBUILT | {
    "_backward_pre_hooks",
    "_backward_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
    "_non_persistent_buffers_set",
}
# Values that hold no module, by exact type (isinstance on torch.Tensor runs Python code).
_PLAIN = frozenset(
    {bool, int, float, str, bytes, type(None), torch.Tensor, nn.Parameter, torch.dtype}
    | {torch.device, torch.Size}
)
_DEPTH = 3  # how deep into lists, dicts and partials a submodule is looked for
_LONGEST = 1024  # longer containers are left as they are (no module list is that long)

# model -> {id(buffer): (buffer, its version when copied, the copy)}: the buffer copies of
# its last twin, kept while the buffer is unchanged (holding the buffer keeps its id its own)
_BufferCopies = dict[int, tuple[torch.Tensor, int, torch.Tensor]]
_BUFFER_COPIES: weakref.WeakKeyDictionary[nn.Module, _BufferCopies] = weakref.WeakKeyDictionary()
# models explained in place because of a reference the twin cannot follow, already said
_WARNED: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_ACTIVE = threading.local()  # .views: {id(model): _View} of the passes this thread is in


class _OverModule(Protocol):
    model: nn.Module


_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound=_OverModule)


class _CannotTwin(Exception):
    """A model the twin cannot stand for; ``said`` is the warning, empty where it goes
    without saying (TorchScript, torch.compile)."""

    def __init__(self, said: str = "") -> None:
        super().__init__(said)
        self.said = said


class _View:
    """What one outermost pass runs: ``model`` is the twin, or the user's model in place."""

    def __init__(self, model: nn.Module, in_place: bool) -> None:
        self.model = model
        self.in_place = in_place
        self.parameters: list[torch.Tensor] = []

    def weights_version(self) -> int:
        """The parameters' in-place versions, summed: any optimizer step raises it."""
        try:
            return sum(p._version for p in self.parameters)
        except RuntimeError:  # an inference tensor among them
            return sum(_version(p) for p in self.parameters)


def _version(tensor: torch.Tensor) -> int:
    """``tensor._version``; -1 for an inference tensor, which keeps none (and which
    nothing outside ``torch.inference_mode`` can change in place)."""
    try:
        return tensor._version
    except RuntimeError:
        return -1


def _remap(value: Any, twins: dict[int, nn.Module], depth: int = 0) -> Any:
    """``value`` with every reference to an original module turned to its twin.

    A container or function is rebuilt only when something in it changed; an
    object of another kind that holds one of the model's modules raises
    :class:`_CannotTwin`.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, nn.Module):
        return twins.get(id(value), value)
    if kind is types.MethodType:
        owner = twins.get(id(value.__self__))
        if owner is None:
            _refuse_holder(value.__self__, twins)
            return value
        return types.MethodType(value.__func__, owner)
    if depth >= _DEPTH:
        return value
    if kind is types.FunctionType:
        return _remap_function(value, twins, depth)
    if kind in (list, tuple, set, frozenset) and len(value) <= _LONGEST:
        for item in value:  # most are numbers (a kernel size): no copy, no call
            if type(item) not in _PLAIN:
                break
        else:
            return value
        items = [_remap(v, twins, depth + 1) for v in value]
        same = all(a is b for a, b in zip(items, value, strict=True))
        return value if same else kind(items)
    if kind is dict and len(value) <= _LONGEST:
        pairs = {k: _remap(v, twins, depth + 1) for k, v in value.items()}
        return value if all(pairs[k] is v for k, v in value.items()) else pairs
    if kind is functools.partial:
        func = _remap(value.func, twins, depth + 1)
        args = _remap(value.args, twins, depth + 1)
        keywords = _remap(value.keywords, twins, depth + 1)
        if func is value.func and args is value.args and keywords is value.keywords:
            return value
        return functools.partial(func, *args, **keywords)
    _refuse_holder(value, twins)
    return value


def _remap_function(func: Any, twins: dict[int, nn.Module], depth: int) -> Any:
    """A closure or function with defaults that holds modules, remade over their twins."""
    cells = func.__closure__ or ()
    held = [_contents(cell) for cell in cells]
    mapped = [v if v is _EMPTY else _remap(v, twins, depth + 1) for v in held]
    defaults = _remap(func.__defaults__, twins, depth + 1)
    if defaults is func.__defaults__ and all(a is b for a, b in zip(mapped, held, strict=True)):
        return func
    closure = tuple(types.CellType() if v is _EMPTY else types.CellType(v) for v in mapped)
    made = types.FunctionType(
        func.__code__, func.__globals__, func.__name__, defaults, closure or None
    )
    made.__kwdefaults__ = func.__kwdefaults__
    made.__qualname__ = func.__qualname__
    made.__dict__.update(func.__dict__)
    return made


_EMPTY = object()  # a closure cell not yet filled


def _contents(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return _EMPTY


def _refuse_holder(value: Any, twins: dict[int, nn.Module]) -> None:
    """:class:`_CannotTwin` when ``value``, an object of its own kind, holds one of the
    model's modules in its attributes: its code would call the user's module."""
    attributes = getattr(value, "__dict__", None)
    if not isinstance(attributes, dict) or isinstance(value, (type, types.ModuleType)):
        return
    if isinstance(value, torch.fx.Graph):  # its owning module is for code generation only
        return
    for name, held in attributes.items():
        if isinstance(held, nn.Module) and id(held) in twins:
            raise _CannotTwin(
                f"its {type(value).__name__} holds the {type(held).__name__} {name!r} outside "
                "the module tree"
            )


def _buffer_copy(
    buffer: torch.Tensor | None, before: _BufferCopies, now: _BufferCopies
) -> torch.Tensor | None:
    """The twin's copy of ``buffer``: the last twin's while the buffer is unchanged."""
    if buffer is None:
        return None
    key, version = id(buffer), _version(buffer)
    kept = now.get(key) or before.get(key)
    if kept is None or kept[0] is not buffer or kept[1] != version or version < 0:
        with torch.inference_mode(False):  # a copy autograd may save, also when made inside
            kept = (buffer, version, buffer.detach().clone())
    now[key] = kept
    return kept[2]


def _can_twin(module: nn.Module) -> bool:
    return not is_scripted(module) and type(module).__name__ != "OptimizedModule"


def build_twin(model: nn.Module) -> _View:
    """The twin of ``model`` as it is now; ``_CannotTwin`` when a module cannot have one."""
    twins: dict[int, nn.Module] = {}
    pairs: list[tuple[nn.Module, nn.Module]] = []
    stack = [model]
    while stack:  # first every module's twin, so references anywhere can point at them
        module = stack.pop()
        if id(module) in twins:
            continue
        if not _can_twin(module):
            raise _CannotTwin()
        twin = object.__new__(type(module))
        twins[id(module)] = twin
        pairs.append((module, twin))
        stack.extend(c for c in module._modules.values() if c is not None)
    view = _View(twins[id(model)], in_place=False)
    before = _BUFFER_COPIES.get(model, {})
    now: _BufferCopies = {}
    for module, twin in pairs:
        source = module.__dict__
        state = twin.__dict__
        state.update(source)  # one C call: a thread setting attributes meanwhile cannot
        for key, value in state.items():  # break the walk (it runs over the copy)
            if type(value) not in _PLAIN and key not in _AS_IS:
                new = _remap(value, twins)
                if new is not value:
                    state[key] = new
        for key in _HOOK_DICTS:
            hooks = source.get(key)
            if hooks is not None:
                state[key] = type(hooks)(hooks)
        state["_modules"] = {
            name: None if child is None else twins[id(child)]
            for name, child in module._modules.items()
        }
        state["_parameters"] = dict(module._parameters)
        state["_buffers"] = {
            name: _buffer_copy(b, before, now) for name, b in module._buffers.items()
        }
        state["training"] = False
        view.parameters.extend(p for p in module._parameters.values() if p is not None)
    _BUFFER_COPIES[model] = now
    return view


def _in_place(model: nn.Module) -> _View:
    view = _View(model, in_place=True)
    view.parameters = list(model.parameters())
    return view


def current_model(model: nn.Module) -> nn.Module:
    """The module the running pass over ``model`` feeds: its twin, or ``model`` in place."""
    views: dict[int, _View] = getattr(_ACTIVE, "views", {})
    view = views.get(id(model))
    if view is None:  # pragma: no cover - a pass method without @on_twin
        raise RuntimeError("seewhy: a torch pass ran outside on_twin")
    return view.model


@contextlib.contextmanager
def _entered(model: nn.Module, view: _View) -> Iterator[None]:
    """``view`` active for this thread; in place, the model in eval mode meanwhile."""
    views: dict[int, _View] = _ACTIVE.__dict__.setdefault("views", {})
    views[id(model)] = view
    try:
        with eval_mode(model) if view.in_place else contextlib.nullcontext():
            yield
    finally:
        del views[id(model)]


def _open(model: nn.Module) -> _View:
    """The model's twin, or the model itself where it cannot have one (said once)."""
    try:
        return build_twin(model)
    except _CannotTwin as refusal:
        if refusal.said and model not in _WARNED:
            _WARNED.add(model)
            warn_user(
                f"seewhy explains this {type(model).__name__} in place: {refusal.said}, so a "
                "thread training the model meanwhile would see it in eval mode"
            )
        return _in_place(model)


def _refused_by_autograd(exc: RuntimeError) -> bool:
    """Autograd's refusal of a saved tensor that changed in place after the forward."""
    return "modified by an inplace operation" in str(exc)


def run_on_twin(model: nn.Module, call: Callable[[nn.Module], _R]) -> _R:
    """``call(net)`` with ``net`` the twin of ``model`` (or ``model`` in place), active for
    this thread so that :func:`current_model` finds it (see the module doc).

    A pass inside another pass (a capture traces the layers first) uses the
    outer one's view and leaves the checks to it. ``call`` may run more than
    once: it must start afresh each time.
    """
    views: dict[int, _View] = getattr(_ACTIVE, "views", {})
    outer = views.get(id(model))
    if outer is not None:
        return call(outer.model)
    tries = 0
    while True:
        view = _open(model)
        before = view.weights_version()
        try:
            with _entered(model, view):
                result = call(view.model)
            if view.weights_version() == before:
                return result
        except RuntimeError as exc:
            if not (_refused_by_autograd(exc) and view.weights_version() != before):
                raise
        tries += 1  # the weights changed during the pass
        if tries >= ATTEMPTS:
            raise BackendError(WEIGHTS_CHANGED.format(tries=tries)) from None


def on_twin(
    method: Callable[Concatenate[_S, _P], _R],
) -> Callable[Concatenate[_S, _P], _R]:
    """A torch backend pass: the model's lock, run on its twin, tried again when another
    thread changed the weights meanwhile. ``self.model`` is the user's model; the pass
    feeds ``current_model(self.model)``."""

    def on(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return run_on_twin(self.model, lambda net: method(self, *args, **kwargs))

    functools.update_wrapper(on, method)
    return one_pass_at_a_time(on)
