"""Model-parameter and data randomisation tests (Adebayo et al., 2018).

Explain with the original model, then with copies whose weights were
re-drawn (cascading from the top layer down, or one layer group at a time)
or with a model trained on shuffled labels, and compare the maps. Every copy
comes from the model's backend (``copy_model``, ``randomize_layers``), so the
user's model is never touched and no framework is imported here. Weights are
re-drawn from a truncated normal with each tensor's own mean and standard
deviation: the scale of the activations stays sane, so what changes is the
learnt structure, not the numerics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from ..._kit.blas import one_blas_thread
from ..._kit.checks import bad_argument, positive_int
from ..._kit.warn import warn_user
from ...adapters import AdaptedModelNote, Seen, seen
from ...api import Explainer  # a sanity check explains again, with each randomised copy
from ...backends import Backend, backend_for
from ...backends.capabilities import Weights
from ...backends.requirements import need_weights
from ...errors import BackendError, InvalidInput
from ...explanation import Explanation
from ...inputs import prepare
from ...preprocess import Preprocess
from .result import SanityResult
from .similarity import SANITY_MEASURES, compare, paper_maps

__all__ = ["data_randomization_check", "randomization_steps", "sanity_check"]

Resample = Callable[[np.ndarray], np.ndarray]
_WHO = "model: the sanity check"  # what the one-line refusal of a model without weights names


def _resampler(seed: int) -> Resample:
    """Truncated normal (2 sigma) with each tensor's own mean and std."""
    rng = np.random.default_rng(seed)

    def resample(values: np.ndarray) -> np.ndarray:
        mean = float(values.mean()) if values.size else 0.0
        std = float(values.std()) if values.size > 1 else abs(mean) * 0.1
        if std == 0.0:
            std = max(abs(mean) * 0.1, 1e-2)
        draw = rng.standard_normal(values.shape)
        bad = np.abs(draw) > 2.0
        while bad.any():
            draw[bad] = rng.standard_normal(int(bad.sum()))
            bad = np.abs(draw) > 2.0
        return (mean + std * draw).astype(values.dtype)

    return resample


def randomization_steps(model: Any, images: Any = None) -> list[list[str]]:
    """Groups of layers in cascade order, top (output) first.

    A normalisation layer joins the layer before it (a conv and its batch
    norm are one step, as in the paper's figures). ``images`` (model inputs,
    NHWC) give torch the forward order.

    Parameters
    ----------
    model : object
        A model whose backend can list and re-draw its weights (PyTorch, Keras).
    images : array-like, optional
        Model inputs (N, H, W, C), one image is enough; without them the
        layers are listed in the order the model declares them.

    Returns
    -------
    list of list of str
        Layer names per step, the output's first.

    Raises
    ------
    UnsupportedModel
        The model's weights cannot be read (ONNX, ``BlackBox``).
    """
    x = None if images is None else np.asarray(images, dtype=np.float32)
    tower = seen(model).model  # a vision-language model: the part that sees the pixels
    return _cascade_groups(need_weights(backend_for(tower), _WHO).parameter_layers(x))


def _cascade_groups(layers: Sequence[tuple[str, str]]) -> list[list[str]]:
    """(name, class name) in forward order -> groups top first, a norm joining its layer."""
    groups: list[list[str]] = []
    for name, kind in layers:
        if groups and "norm" in kind.lower():
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups[::-1]


def _randomized_copies(
    backend: Weights,
    groups: Sequence[Sequence[str]],
    chosen: Sequence[int],
    *,
    cascading: bool,
    resample: Resample,
    wrap: bool,
) -> Iterator[tuple[str, Any]]:
    """(label, randomised model) per chosen step, made from copies of the backend's model.

    Cascading: one copy, randomised further at each step down to the step's
    group; independent: a fresh copy per step with only that group re-drawn.
    ``wrap``: the user handed a Backend instance as the model (see :func:`_copy`).
    """
    cascade = _copy(backend, wrap) if cascading else None
    done = 0
    for j in chosen:
        if cascade is not None:
            current, names = cascade, [n for g in groups[done : j + 1] for n in g]
            done = j + 1
        else:
            current, names = _copy(backend, wrap), list(groups[j])
        current[1].randomize_layers(names, resample)
        yield groups[j][0], current[0]


def _copy(backend: Weights, wrap: bool) -> tuple[Any, Weights]:
    """(what ``explain`` takes, its backend) for a fresh copy of the backend's model.

    A framework model's copy gets its own backend; with ``wrap`` (the user
    handed a Backend instance as the model) the copy is wrapped in a backend
    of the same kind, which ``explain`` then takes as the model.
    """
    copy = backend.copy_model()
    if wrap:
        wrapped: Weights = cast(Any, type(backend))(copy)
        return wrapped, wrapped
    return copy, need_weights(backend_for(copy), _WHO)


@dataclass(frozen=True)
class _Setup:
    """How every model of one check is explained: the same inputs, method and settings."""

    inputs: np.ndarray  # (N, H, W, C) model inputs, prepared once
    method: str
    preprocess: Preprocess
    batch_size: int
    params: Mapping[str, Any]

    def explain(self, model: Any, *, layer: str | None, target: Any) -> Explanation:
        """``model``'s explanation of the inputs with the check's settings."""
        explainer = Explainer(
            model,
            self.method,
            layer=layer,
            preprocess=self.preprocess,
            batch_size=self.batch_size,
            **self.params,
        )
        return explainer.explain(self.inputs, target=target)


@dataclass(frozen=True)
class _Reference:
    """The untouched model's explanation, which every other model's is compared with."""

    setup: _Setup
    base: Explanation
    follow: bool  # each other model explains its own top-1, not the original's targets
    # a vision-language model's targets, bound once to its text side (each copy of its
    # image tower is scored against the same texts or answer); None for other models
    bound: Any = None

    def compare_with(
        self, model: Any, base_paper: tuple[np.ndarray, np.ndarray] | None = None, bound: Any = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(each measure (N,), maps (N, H, W)) of ``model`` against the original
        (``bound``: its own binding of the targets, for another vision-language model)."""
        given = self.base.params.get("target")  # a seewhy.targets target: always the same
        target = given if given is not None else None if self.follow else self.base.targets
        target = next((b for b in (bound, self.bound) if b is not None), target)
        other = self.setup.explain(model, layer=self.base.layer, target=target)
        return compare(self.base, other, base_paper), other.maps


def _seen(model: Any, params: dict[str, Any]) -> Seen:
    """``model`` as the check sees it; ``params`` lose the text-side keywords it took.

    A generative model is refused in one line: its answer is scored by its
    language model through the running pass over its own vision path, which a
    re-drawn copy of that path does not have.
    """
    text = {k: params.pop(k) for k in ("tokenizer", "processor", "prompt") if k in params}
    view = seen(model, **text)
    if view.adapted is not None and view.adapted.rows is not None:
        raise InvalidInput(
            f"model: the sanity check does not serve {view.adapted.family} models yet (their "
            "answer is scored through the vision path explained, which a randomised copy "
            "lacks); it serves dual encoders (CLIP, SigLIP) and image models"
        )
    return view


def _reference(
    view: Seen,
    images: Any,
    method: str,
    target: Any,
    layer: str | None,
    randomized_target: str,
    preprocess: Preprocess | None,
    batch_size: int,
    params: Mapping[str, Any],
) -> _Reference:
    """Prepare the inputs once and explain them with the untouched model.

    A vision-language model is explained through its image tower, its
    targets bound once: every randomised copy of the tower is scored alike.
    """
    if randomized_target not in ("original", "predicted"):
        raise bad_argument("randomized_target", "'original' or 'predicted'", randomized_target)
    spec = view.spec(preprocess=preprocess)
    channels_first = backend_for(view.model).channels_first
    batch, _ = prepare(images, spec.preprocess, channels_first=channels_first, strict=True)
    setup = _Setup(batch.inputs, method, spec.preprocess, batch_size, params)
    bound = None
    if view.adapted is not None:
        warn_user(view.adapted.said, AdaptedModelNote)
        bound = target = view.targets(target, who="target")
        chosen = view.adapted.layer  # several layers (fused) as "a,b", as explain takes them
        layer = layer or (",".join(chosen) if isinstance(chosen, tuple) else chosen)
    base = setup.explain(view.model, layer=layer, target=target)
    return _Reference(setup, base, follow=randomized_target == "predicted", bound=bound)


def _result(
    ref: _Reference,
    mode: str,
    labels: Sequence[str],
    rows: Sequence[Mapping[str, np.ndarray]],
    maps: Sequence[np.ndarray],
    params: Mapping[str, Any],
) -> SanityResult:
    """Stack per-step similarities (one (S, N) array per measure) into the result."""
    base = ref.base
    return SanityResult(
        method=base.method,
        mode=mode,
        steps=tuple(labels),
        original=base.maps,
        randomized=np.stack(maps),
        images=base.images,
        targets=base.targets,
        params={**params, **_chosen(base)},
        **{name: np.stack([r[name] for r in rows]) for name in SANITY_MEASURES},
    )


def _chosen(base: Explanation) -> dict[str, Any]:
    """The target (a seewhy.targets target's JSON form), output and head the explanation used."""
    return {k: base.params[k] for k in ("target", "output", "head") if k in base.params}


def sanity_check(
    model: Any,
    images: Any,
    method: str = "gradcam",
    *,
    target: Any = None,
    layer: str | None = None,
    layers: Sequence[str | Sequence[str]] | None = None,
    steps: int | None = None,
    cascading: bool = True,
    seed: int = 0,
    randomized_target: str = "original",
    preprocess: Preprocess | None = None,
    batch_size: int = 16,
    **params: Any,
) -> SanityResult:
    """Model-parameter randomisation test for ``method`` on ``images``.

    The cascade goes from the output layer down (see
    :func:`randomization_steps`); ``layers`` gives the steps yourself (names,
    top first; a list of names is one step), and ``steps`` keeps that many
    steps spread evenly over the cascade, always including the top layer and
    the whole network (cascading). With ``cascading=False`` each step
    randomises its layers alone. ``params`` go to the method.

    ``randomized_target`` says which class each copy explains:
    ``"original"`` (default) the original model's, so every copy explains
    the same class; ``"predicted"`` each copy's own top-1, as the paper's
    code does. The choice matters: a random classifier's top-1 is the class
    whose weights happen to agree with the strongest feature maps, so CAMs
    (and Guided Grad-CAM) of that class keep the original's shape.

    Parameters
    ----------
    model : object
        The trained model (any model :func:`seewhy.explain` takes).
    images : object
        The images to explain, in any form ``explain`` takes.
    method : str
        The method tested, by its registered name.
    target : object, optional
        What the original model's explanations explain (as ``explain``'s
        ``target``); None: each image's top class.
    layer : str, optional
        The method's layer; None lets seewhy choose, as ``explain`` does.
    layers : sequence of str or of sequences of str, optional
        The steps, top first: a name is one layer, a list of names one step.
        None: :func:`randomization_steps`.
    steps : int, optional
        Keep this many steps, spread over the cascade; None keeps them all.
    cascading : bool
        Each step keeps the layers above it randomised (the paper's cascade);
        False randomises each step's layers alone.
    seed : int
        Seeds the re-drawn weights, so a check can be repeated exactly.
    randomized_target : str
        ``"original"`` or ``"predicted"`` (see above).
    preprocess : Preprocess, optional
        The model's input preparation, when seewhy cannot read it from the model.
    batch_size : int
        Images per pass of the method.
    **params
        The method's settings, as ``explain`` takes them.

    Returns
    -------
    SanityResult
        The similarity of each step's maps to the original's, per measure.

    Raises
    ------
    UnsupportedModel
        The model's weights cannot be read (ONNX, ``BlackBox``), before any
        image is explained.
    InvalidInput
        A bad setting, or a model with no layer holding weights.
    """
    with one_blas_thread():  # numpy's BLAS on one thread (see _kit/blas.py)
        if steps is not None:
            steps = positive_int(steps, "steps", where="sanity_check")
        params = dict(params)
        view = _seen(model, params)  # a vision-language model: its image tower's weights
        backend = backend_for(view.model)
        weights = need_weights(backend, _WHO)  # before any image is explained
        ref = _reference(
            view, images, method, target, layer, randomized_target, preprocess, batch_size, params
        )
        groups = (
            [[g] if isinstance(g, str) else list(g) for g in layers]
            if layers is not None
            else _cascade_groups(weights.parameter_layers(ref.setup.inputs[:1]))
        )
        if not groups:
            raise InvalidInput("layers: the model has no layer with weights to randomise")
        chosen = list(range(len(groups)))
        if steps is not None and steps < len(groups):
            chosen = sorted(
                set(np.linspace(0, len(groups) - 1, steps).round().astype(int).tolist())
            )
        base_paper = paper_maps(ref.base)  # compared with every step: made once
        labels: list[str] = []
        rows: list[dict[str, np.ndarray]] = []
        maps: list[np.ndarray] = []
        copies = _randomized_copies(
            weights,
            groups,
            chosen,
            cascading=cascading,
            resample=_resampler(seed),
            wrap=isinstance(model, Backend),
        )
        for label, current in copies:
            row, step_maps = ref.compare_with(current, base_paper)
            labels.append(label)
            rows.append(row)
            maps.append(step_maps)
        settings = {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool))}
        recorded = {
            "seed": seed,
            "layer": ref.base.layer,
            "randomized_target": randomized_target,
            "framework": backend.framework,
            **settings,
        }
        mode = "cascading" if cascading else "independent"
        return _result(ref, mode, labels, rows, maps, recorded)


def data_randomization_check(
    model: Any,
    images: Any,
    retrain: Callable[[], Any] | Any,
    method: str = "gradcam",
    *,
    target: Any = None,
    layer: str | None = None,
    randomized_target: str = "original",
    preprocess: Preprocess | None = None,
    batch_size: int = 16,
    **params: Any,
) -> SanityResult:
    """Data randomisation test: compare with a model trained on shuffled labels.

    ``retrain`` is a callable that trains and returns such a model (or the
    model itself). Its maps for the original model's targets (or, with
    ``randomized_target="predicted"``, its own top-1) should look nothing
    like the original maps if the method explains what was learnt.

    Parameters
    ----------
    retrain : callable or model
        A function of no arguments that returns the model trained on shuffled
        labels, or that model.
    model, images, method, target, layer, randomized_target, preprocess, batch_size, **params
        As in :func:`sanity_check`.

    Returns
    -------
    SanityResult
        One step, ``"shuffled labels"``: the similarity of its maps to the original's.
    """
    with one_blas_thread():  # numpy's BLAS on one thread (see _kit/blas.py)
        params = dict(params)
        text = {k: params[k] for k in ("tokenizer", "processor", "prompt") if k in params}
        view = _seen(model, params)
        ref = _reference(
            view, images, method, target, layer, randomized_target, preprocess, batch_size, params
        )
        other = retrain() if callable(retrain) and not _is_model(retrain) else retrain
        other_view = seen(other, **text)  # another dual encoder: the same texts, its own tower
        bound = None if other_view.adapted is None else other_view.targets(target, who="target")
        row, other_maps = ref.compare_with(other_view.model, bound=bound)
        recorded = {"layer": ref.base.layer, "randomized_target": randomized_target}
        return _result(ref, "data", ["shuffled labels"], [row], [other_maps], recorded)


def _is_model(obj: Any) -> bool:
    """A model object is callable too; tell it apart from a training function.

    A plain function is a black-box model only when it takes the images: a
    training function takes no argument.
    """
    try:
        backend = backend_for(obj)
    except BackendError:
        return False
    if backend.framework == "blackbox" and _takes_nothing(obj):
        return False
    return True


def _takes_nothing(obj: Any) -> bool:
    import inspect

    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return not any(p.default is p.empty and p.kind in positional for p in parameters)
