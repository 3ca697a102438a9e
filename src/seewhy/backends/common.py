"""What every backend does the same way: layer choice and its error messages.

Backends find their layers in their own framework; turning the found layers
and a requested name into a choice, or into a helpful one-line error, is
written once here. So are the framework-free parts of the layer-edit passes
(the scale check, the chunking, the shared-prefix policy), the packed form
of a model sent to another process, and the "install this extra" error.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Self, TypeVar

import numpy as np

from ..errors import BackendError, InvalidInput, LayerNotFound
from .base import Framework, LayerInfo, select_default_layer
from .heads import DEFAULT_HEAD, Head
from .layouts import LayoutChoice
from .model_lock import one_pass_at_a_time

__all__ = [
    "PackedModel",
    "Views",
    "WeightsThroughModule",
    "default_layer",
    "edit_each_image",
    "edit_scales",
    "missing_layer",
    "no_feature_map",
    "one_line",
    "require_module",
    "shared_prefix_logits",
    "suggest_layers",
]

_Image = TypeVar("_Image")


def suggest_layers(layer: str, infos: Sequence[LayerInfo]) -> str:
    """Up to five usable layers to suggest for a wrong ``layer``: near matches, else the last."""
    names = [info.name for info in infos]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.3)
    return ", ".join(close or names[-5:]) or "(none)"


def default_layer(infos: Sequence[LayerInfo]) -> str:
    """The default layer's name, or the error that says why there is none."""
    chosen = select_default_layer(list(infos))
    if chosen is None:
        raise LayerNotFound(
            "layer: the model has no layer with a 4-D output (N, C, h, w) of more "
            "than one position; a CAM needs a convolutional feature map"
        )
    return chosen.name


def no_feature_map(layer: str, infos: Sequence[LayerInfo]) -> LayerNotFound:
    """The error for a layer that exists but gives no usable feature map."""
    return LayerNotFound(
        f"layer: {layer!r} exists but gives no 4-D feature map for this input "
        f"(a CAM needs (N, C, h, w)); try one of: {suggest_layers(layer, infos)}"
    )


def missing_layer(
    layer: str, all_names: Sequence[str], infos: Sequence[LayerInfo], close: Sequence[str] = ()
) -> LayerNotFound:
    """The error for a name the model does not have, with the nearest names it does have."""
    near = list(close) or difflib.get_close_matches(layer, list(all_names), n=5, cutoff=0.4)
    hint = ", ".join(near) if near else suggest_layers(layer, infos)
    return LayerNotFound(f"layer: the model has no layer {layer!r}; did you mean: {hint}?")


# --------------------------------------------------------------------------- layer edits
# Ablation-CAM runs each image E times with one layer's output scaled per channel.
# The "shared prefix" policy: the network before the layer runs once per image and
# chunk of edits, and the edited copies continue from the layer (batch 1 becomes E
# there, broadcasting any skip connection that began earlier).


def edit_scales(
    scales: Any, count: int, channels: int | None = None, *, layer: str = ""
) -> np.ndarray:
    """``scales`` as (N, E, C) float32; an (E, C) array applies to every one of ``count`` images.

    ``channels``, when the backend knows the layer's channel count, is checked too.
    """
    s = np.asarray(scales, dtype=np.float32)
    if s.ndim == 2:
        s = np.broadcast_to(s, (count, *s.shape))
    if s.ndim == 3 and len(s) == count and (channels is None or s.shape[2] == channels):
        return s
    wanted = f"N = {count}" if channels is None else f"N = {count} and C = {channels} channels"
    of = f" of {layer!r}" if channels is not None and layer else ""
    raise InvalidInput(f"scales: expected (N, E, C) or (E, C) with {wanted}{of}, got {s.shape}")


def edit_each_image(
    images: Iterable[_Image],
    scales: np.ndarray,
    batch_size: int | None,
    run: Callable[[_Image, np.ndarray], np.ndarray],
) -> np.ndarray | None:
    """Logits (N, E, K): ``run(image, chunk)`` for each image and chunk of its edits.

    ``images`` gives each image in the backend's own form (made lazily, one at a
    time); ``scales`` is (N, E, C) from :func:`edit_scales`. The edits of one
    image go in chunks of ``batch_size`` (all at once by default), so the part
    of the network before the layer runs once per image and chunk. None when
    there is nothing to run (no image or no edit): the backend shapes the
    empty result.
    """
    edits = scales.shape[1]
    if len(scales) == 0 or edits == 0:
        return None
    step = max(1, batch_size or edits)
    rows = []
    for i, image in enumerate(images):
        chunks = [run(image, scales[i, start : start + step]) for start in range(0, edits, step)]
        rows.append(np.concatenate(chunks))
    return np.stack(rows)


def shared_prefix_logits(
    known: dict[Any, bool],
    key: Any,
    count: int,
    shared: Callable[[], np.ndarray],
    repeated: Callable[[], np.ndarray],
    refusals: tuple[type[BaseException], ...] = (Exception,),
) -> np.ndarray:
    """Logits of ``count`` edits of one image, by the shared prefix where the model allows it.

    ``shared()`` runs the image alone and edits it at the layer; ``repeated()``
    runs it repeated ``count`` times, which is always correct. ``known[key]``
    remembers what the model does: once the shared prefix gave ``count`` rows
    (for more than one edit) an error of one of ``refusals`` is the model's own
    and is raised; once it raised or gave another number of rows, the repeated
    form is used from then on.
    """
    works = known.get(key)
    if works is not False:
        try:
            logits: np.ndarray | None = shared()
        except refusals:
            if works:  # it worked before: this is the model's own error
                raise
            logits = None
        if logits is not None and len(logits) == count:
            if count > 1:
                known[key] = True
            return logits
        known[key] = False
    return repeated()


# --------------------------------------------------------------------------- other processes


class PackedModel:
    """A model as bytes its framework wrote, for another process (``Backend.pack``).

    ``framework`` names the backend whose ``unpack`` reads ``blob`` back; see
    :func:`seewhy.backends.unpack_model`.
    """

    def __init__(self, framework: Framework, blob: bytes) -> None:
        self.framework = framework
        self.blob = blob


# torch's weights-only refusal: a paragraph of advice, then the line that says what was refused.
_WEIGHTS_ONLY_ADVICE = "Weights only load failed"
_WEIGHTS_ONLY_PREFIX = "WeightsUnpickler error:"
_ONE_LINE_LIMIT = 240


def one_line(exc: BaseException) -> str:
    """A framework's exception as one short line, for an error message of our own.

    Torch and Keras put several paragraphs in some messages (advice on
    ``weights_only``, full layer configs); seewhy's errors are one line, so
    only the line that says what went wrong is kept (for torch's weights-only
    refusal, the line after its advice), cut to a readable length.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith(_WEIGHTS_ONLY_ADVICE):
        lines = lines[1:]
    text = lines[0] if lines else type(exc).__name__
    text = text.removeprefix(_WEIGHTS_ONLY_PREFIX).strip() or type(exc).__name__
    if len(text) > _ONE_LINE_LIMIT:
        text = text[: _ONE_LINE_LIMIT - 3].rstrip() + "..."
    return text


def require_module(module: str, extra: str, *, importer: Callable[[], Any] | None = None) -> Any:
    """``module`` imported (by ``importer`` when given), or a one-line error naming the pip
    extra that installs it."""
    import importlib

    try:
        return importer() if importer is not None else importlib.import_module(module)
    except ImportError as exc:
        raise BackendError(
            f"{module} is not installed; install it with: pip install 'seewhy[{extra}]'"
        ) from exc


class WeightsThroughModule:
    """The sanity checks' members of the protocol, through a framework's ``weights`` module.

    Every framework package has a ``weights`` module with the same three
    functions (list, copy, re-draw weights); a backend names its module in
    ``weights_module`` and gets these members, each holding the model's lock.
    """

    weights_module: ClassVar[Any]
    model: Any

    @one_pass_at_a_time
    def parameter_layers(self, x: np.ndarray | None = None) -> list[tuple[str, str]]:
        layers: list[tuple[str, str]] = self.weights_module.parameter_layers(self.model, x)
        return layers

    @one_pass_at_a_time
    def copy_model(self) -> Any:
        return self.weights_module.copy_model(self.model)

    @one_pass_at_a_time
    def randomize_layers(
        self, names: Sequence[str], resample: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        self.weights_module.randomize_layers(self.model, names, resample)


class Views:
    """A backend whose passes score a :class:`~seewhy.backends.heads.Head` and read the
    explained layer in a chosen layout (a mixin).

    ``with_head`` and ``with_layout`` give a shallow copy scoring another head
    or reading another layout; the model, its caches and its lock are shared,
    so a view costs nothing to make, and the backend it came from is unchanged.
    """

    _head: Head = DEFAULT_HEAD  # what the passes score (a view from with_head changes it)
    layout_choice: LayoutChoice = None  # the user's layout= for the explained layer

    def with_head(self, head: Head) -> Self:
        """This backend scoring ``head`` (an output, a sigmoid, target columns); model shared."""
        view = copy.copy(self)
        view._head = head
        return view

    def with_layout(self, choice: LayoutChoice) -> Self:
        """This backend reading the explained layer's output as ``choice``; model shared."""
        view = copy.copy(self)
        view.layout_choice = choice
        return view
