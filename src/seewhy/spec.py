"""What a model takes: size, channels, value range, crop and labels.

Worked out, in order, from what the user passes, then what the model says
about itself (each backend's ``hints()``), and only then a default (224 px
RGB with ImageNet's mean and std). A model's own ``seewhy_spec`` (the
bundled models, the ``torchvision:``/``timm:``/``keras:`` loaders) is taken
as it is. Where a default stands in for something the model did not say,
:class:`~seewhy.errors.InputGuessWarning` says so once, in one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ._kit.checks import bad_argument
from ._kit.warn import warn_user
from .backends import Backend, backend_for
from .backends.capabilities import Hints
from .backends.hints import ModelHints, input_rejected
from .errors import InputGuessWarning, UnsupportedModel
from .preprocess import IMAGENET, ModelSpec, Preprocess

__all__ = [
    "GREY",
    "ModelHints",
    "default_preprocess",
    "guess_note",
    "input_rejected",
    "preprocess_from_record",
    "resolve_spec",
    "spec_record",
    "warn_guessed",
]

#: A grey model's default: ImageNet's mean and std averaged over the three channels.
GREY = Preprocess(mean=(0.449,), std=(0.226,))


def default_preprocess(
    size: tuple[int, int] | None, channels: int | None, value_range: tuple[float, float] | None
) -> Preprocess:
    """ImageNet's normalisation (grey: its average), or the plain range a model rescales from.

    Parameters
    ----------
    size : tuple of (int, int) or None
        The (H, W) the model takes; None keeps the default's.
    channels : int or None
        1 for a grey model (:data:`GREY`); anything else is taken as RGB.
    value_range : tuple of (float, float) or None
        The range a model that normalises by itself wants its pixels in
        (``(0, 255)``); None: ImageNet's mean and std on [0, 1] pixels.

    Returns
    -------
    Preprocess
        The preprocessing that stands in for what the model did not say.
    """
    base = GREY if channels == 1 else IMAGENET
    count = base.channels
    if value_range is not None:
        low, high = value_range
        base = Preprocess(mean=(0.0,) * count, std=(1.0,) * count, scale=(high - low) / 255.0)
        if low:
            base = replace(base, mean=(-low,) * count)
    return replace(base, size=size) if size is not None else base


def _check_labels(labels: object) -> tuple[str, ...]:
    names = tuple(labels) if isinstance(labels, Iterable) and not isinstance(labels, str) else None
    if names is None or not all(isinstance(n, str) for n in names):
        raise bad_argument("labels", "a sequence of class names (str)", type(labels).__name__)
    return names


def resolve_spec(
    model: Any,
    backend: Backend | None = None,
    *,
    preprocess: Preprocess | None = None,
    labels: Sequence[str] | None = None,
    warn: bool = False,
    try_sizes: bool = False,
) -> ModelSpec:
    """The spec ``model`` is explained with: the caller's, then the model's, then defaults.

    ``backend`` (the model's, when the caller has one) is asked for ``hints()``
    only when the model carries no ``seewhy_spec`` and the caller did not
    give a whole preprocessing. ``warn=True`` warns once about what was guessed;
    ``try_sizes=True`` lets a backend run the model on a few sizes when nothing
    else says it (the explaining calls; a spec looked up alone runs nothing).

    Parameters
    ----------
    model : object
        The model, as :func:`seewhy.explain` takes it.
    backend : Backend, optional
        The model's backend, when the caller has made it already.
    preprocess : Preprocess, optional
        The caller's preprocessing; it wins over anything the model says.
    labels : sequence of str, optional
        The caller's class names; they win over the model's.
    warn : bool
        Warn once (:class:`~seewhy.errors.InputGuessWarning`) about what was guessed.
    try_sizes : bool
        Let the backend run the model on a few sizes to find its own.

    Returns
    -------
    ModelSpec
        The spec, with where each part came from and what was guessed.

    Raises
    ------
    InvalidInput
        A ``preprocess`` that is not a :class:`Preprocess`, or labels that are
        not strings.
    UnsupportedModel
        A model whose preprocessing seewhy cannot follow, with no ``preprocess``.
    """
    if preprocess is not None and not isinstance(preprocess, Preprocess):
        raise bad_argument("preprocess", "a seewhy.Preprocess or None", type(preprocess).__name__)
    names = None if labels is None else _check_labels(labels)
    own = getattr(model, "seewhy_spec", None)
    if isinstance(own, ModelSpec):
        spec = own
        if preprocess is not None:
            spec = replace(
                spec, preprocess=preprocess, guessed=(), assumed="", source="preprocess="
            )
    else:
        spec = _from_hints(model, backend, preprocess, try_sizes)
    if names is not None:
        spec = replace(spec, labels=names)
    if warn:
        note = guess_note(spec)
        if note is not None:
            warn_user(note, InputGuessWarning)
    return spec


def _from_hints(
    model: Any, backend: Backend | None, preprocess: Preprocess | None, try_sizes: bool
) -> ModelSpec:
    try:
        hints = _hints_of(model, backend, sizes=try_sizes and preprocess is None)
    except UnsupportedModel:  # a preprocessing seewhy cannot follow: the caller's stands
        if preprocess is None:
            raise
        hints = ModelHints()
    own_name = getattr(model, "name", None)  # Keras models have one
    name = own_name if isinstance(own_name, str) and own_name else hints.name
    name = name or type(model).__name__
    if preprocess is not None:
        return ModelSpec(
            name=name, preprocess=preprocess, labels=hints.labels, source="preprocess="
        )
    if hints.preprocess is not None:
        assumed: tuple[str, ...] = ("preprocessing",) if hints.assumed else ()
        return ModelSpec(
            name, hints.preprocess, hints.labels, hints.source, assumed, assumed=hints.assumed
        )
    guessed = [
        part
        for part, known in (
            ("size", hints.size is not None),
            ("channels", hints.channels is not None),
            ("value range", hints.value_range is not None),
        )
        if not known
    ]
    pre = default_preprocess(hints.size, hints.channels, hints.value_range)
    return ModelSpec(name, pre, hints.labels, source=hints.source, guessed=tuple(guessed))


def _hints_of(model: Any, backend: Backend | None, *, sizes: bool) -> ModelHints:
    """The backend's hints (the optional :class:`Hints` capability); none without it.

    ``sizes=False`` asks only for what is read, never tried: the backend runs nothing.
    """
    if backend is None:
        backend = backend_for(model)
    if not isinstance(backend, Hints):
        return ModelHints()
    hints = backend.hints(try_sizes=sizes)
    return hints if isinstance(hints, ModelHints) else ModelHints()


def warn_guessed(spec: ModelSpec, pictures: bool, own_size: bool = True) -> None:
    """Warn once about what ``spec`` guessed, when ``pictures`` (not model inputs) meet it.

    Preprocessed inputs are fed as they are, so a guessed preprocessing never
    touches them and is not worth a word. ``own_size``: see :func:`guess_note`.

    Parameters
    ----------
    spec : ModelSpec
        What the model is explained with (:func:`resolve_spec`).
    pictures : bool
        Whether the inputs are pictures that the spec prepares.
    own_size : bool
        Whether pictures no larger than a guessed size keep their own.
    """
    note = guess_note(spec, own_size) if pictures else None
    if note is not None:
        warn_user(note, InputGuessWarning)


def guess_note(spec: ModelSpec, own_size: bool = True) -> str | None:
    """One line naming the defaults ``spec`` stands on, and how to set them; None if none.

    ``own_size``: pictures no larger than a guessed size keep their own (``explain``);
    the audit resizes every picture to it.

    Parameters
    ----------
    spec : ModelSpec
        What the model is explained with (:func:`resolve_spec`).
    own_size : bool
        Whether pictures no larger than a guessed size keep their own.

    Returns
    -------
    str or None
        The note; None when nothing was guessed.
    """
    if not spec.guessed:
        return None
    if "preprocessing" in spec.guessed:
        return f"input of {spec.name} assumed: {spec.assumed}"
    pre = spec.preprocess
    parts = []
    if "size" in spec.guessed:
        kept = "pictures no larger keep their own" if own_size else "every picture resized to it"
        parts.append(f"size {pre.size[0]}x{pre.size[1]} ({kept})")
    if "channels" in spec.guessed:
        parts.append(f"{pre.channels} channel{'s' if pre.channels > 1 else ''}")
    if "value range" in spec.guessed:
        parts.append(f"mean {_numbers(pre.mean)}, std {_numbers(pre.std)} on [0, 1] pixels")
    said = f" (read: {spec.source})" if spec.source else ""
    size = "size=..., " if "size" in spec.guessed else ""
    flag = " (or --size H,W)" if size else ""
    return (
        f"input of {spec.name} guessed: {', '.join(parts)}{said}; the model does not say. "
        f"Set it with preprocess=seewhy.Preprocess({size}mean=..., std=...){flag}"
    )


def _numbers(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def spec_record(
    spec: ModelSpec,
    size: tuple[int, ...] | None = None,
    fed_sizes: Sequence[tuple[int, int]] = (),
) -> dict[str, Any]:
    """The spec as JSON-ready values, for ``Explanation.input_spec`` and ``to_dict()``.

    ``size`` is the (H, W) the inputs had, when pictures kept their own size;
    ``fed_sizes`` each photo's own (H, W) where the model sizes each photo its
    own (Qwen2-VL), recorded as ``"fed_sizes"``.

    Parameters
    ----------
    spec : ModelSpec
        What the model is explained with (:func:`resolve_spec`).
    size : tuple of (int, int), optional
        The inputs' (H, W), when it differs from the spec's.
    fed_sizes : sequence of (int, int)
        Each photo's fed (H, W), when each photo was sized its own.

    Returns
    -------
    dict
        Size, channels, normalisation, crop and resampling, where they were
        read and what was guessed.
    """
    pre = spec.preprocess
    own = {"fed_sizes": [list(s) for s in fed_sizes]} if fed_sizes else {}
    return {
        **own,
        "size": list(size or pre.size),
        "channels": pre.channels,
        "resize": pre.resize,
        "mean": list(pre.mean),
        "std": list(pre.std),
        "scale": pre.scale,
        "interpolation": pre.interpolation,
        "channel_order": pre.channel_order,
        "fit": pre.fit,
        "crop_rounding": pre.crop_rounding,
        "fill": None if pre.fill is None else list(pre.fill),
        "resampler": pre.resampler,
        "align": pre.align,
        "source": spec.source,
        "guessed": list(spec.guessed),
        "assumed": spec.assumed,
    }


def preprocess_from_record(record: Mapping[str, Any]) -> Preprocess:
    """The :class:`Preprocess` a :func:`spec_record` describes (what ``to_dict`` wrote).

    Parameters
    ----------
    record : Mapping
        ``Explanation.input_spec``, or its JSON form read back.

    Returns
    -------
    Preprocess
        The preprocessing the explanation's inputs were made with.

    Raises
    ------
    InvalidInput
        A mapping that is not such a record.
    """
    try:
        height, width = (int(v) for v in record["size"])
        return Preprocess(
            size=(height, width),
            resize=_resize_from_record(record.get("resize")),
            mean=tuple(float(v) for v in record["mean"]),
            std=tuple(float(v) for v in record["std"]),
            scale=float(record["scale"]),
            interpolation=str(record.get("interpolation", "bilinear")),
            channel_order=str(record.get("channel_order", "RGB")),  # older records: RGB
            fit=str(record.get("fit", "short")),
            crop_rounding=str(record.get("crop_rounding", "round")),
            fill=None if record.get("fill") is None else tuple(int(v) for v in record["fill"]),
            resampler=str(record.get("resampler", "pillow")),
            align=str(record.get("align", "centre")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise bad_argument("record", "an Explanation's input record", exc) from None


def _resize_from_record(value: Any) -> int | tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        height, width = (int(v) for v in value)
        return height, width
    return int(value)
