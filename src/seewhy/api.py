"""The public entry points: ``explain``, ``Explainer``, ``layers``, ``predict``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _target_plan, registry
from . import targets as targets_module
from ._kit.blas import one_blas_thread
from ._kit.checks import bad_argument, flag, positive_int
from ._kit.scores import check_score, probabilities
from ._kit.warn import warn_user
from .backends import Backend, LayerInfo, backend_for
from .backends.base import Score, check_precision
from .backends.layouts import use_layout
from .backends.predict_only import refuse_method
from .errors import InvalidInput, LayerNotFound, NonFiniteScoresWarning, SkippedInputWarning
from .explanation import Explanation, Prediction
from .maps import postprocess, warn_constant_maps
from .methods.base import Context, Method, RawResult, unknown_keyword
from .preprocess import ModelSpec, Preprocess
from .spec import resolve_spec, spec_record, warn_guessed

if TYPE_CHECKING:
    from .inputs import Batch, Photo

__all__ = ["Explainer", "explain", "layers", "model_spec", "predict"]

Target = _target_plan.TargetArg  # a class, a seewhy.targets target, a callable; or one per image


def model_spec(
    model: Any, *, preprocess: Preprocess | None = None, labels: Sequence[str] | None = None
) -> ModelSpec:
    """What ``model`` takes (size, channels, value range, labels): see :mod:`seewhy.spec`."""
    return resolve_spec(model, preprocess=preprocess, labels=labels)


def resolve_targets(
    target: Any, count: int, spec: ModelSpec
) -> np.ndarray | tuple[targets_module.Target, ...] | None:
    """(count,) class indices, or one :mod:`seewhy.targets` target per image (see there)."""
    return _target_plan.resolve_targets(target, count, spec.labels)


def top_predictions(
    logits: np.ndarray, spec: ModelSpec, k: int, sigmoid: bool = False
) -> tuple[tuple[Prediction, ...], ...]:
    """Top-k classes per image with softmax probabilities (``sigmoid``: each label's own).

    An image whose logits are not all finite gets one :meth:`Prediction.not_finite`
    instead: its NaN would otherwise sort as "class 0 with probability NaN".
    """
    if logits.shape[1] == 0:  # no class scores (a detector, a segmenter): no classes to list
        return tuple(() for _ in range(len(logits)))
    finite = np.isfinite(logits).all(axis=1)
    p = probabilities(np.where(finite[:, None], logits, 0.0), sigmoid)
    k = max(1, min(k, logits.shape[1]))
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return tuple(
        tuple(
            Prediction(int(c), spec.label(int(c)), float(p[i, c]), float(logits[i, c]))
            for c in order[i]
        )
        if finite[i]
        else (Prediction.not_finite(),)
        for i in range(len(logits))
    )


def warn_not_finite(logits: np.ndarray, sources: Sequence[str]) -> None:
    """One warning naming every image whose model scores are NaN or infinite."""
    bad = [sources[int(i)] for i in np.flatnonzero(~np.isfinite(logits).all(axis=1))]
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        warn_user(
            f"the model gave NaN or infinite scores for {len(bad)} image(s): {shown}; their "
            "predictions are marked not finite",
            NonFiniteScoresWarning,
        )


def _check_layer(layer: object) -> str | None:
    if layer is not None and not isinstance(layer, str):
        raise bad_argument("layer", "a layer name (str) or None", layer)
    return layer


class Explainer:
    """A model and a method, set up once and applied to many batches.

    Reusing one ``Explainer`` avoids repeating the layer search and method set-up;
    ``explain()`` builds one per call.
    """

    def __init__(
        self,
        model: Any,
        method: str = "gradcam",
        *,
        layer: str | None = None,
        layout: Any = None,
        preprocess: Preprocess | None = None,
        labels: Sequence[str] | None = None,
        score: Score = "logit",
        output: int | str | None = None,
        head: str | None = None,
        top_k: int = 5,
        batch_size: int | None = None,
        precision: str = "float32",
        photos: bool = True,
        **params: Any,
    ) -> None:
        method_class = registry.get(method)
        later = {name: "a keyword of Explainer.explain" for name in ("target", "progress")}
        own = _own_keywords(Explainer.__init__)
        check_keywords("Explainer", params, own, method_class, notes=later)
        score = check_score(score)
        self.precision = check_precision(precision)
        if batch_size is not None:
            positive_int(batch_size, "batch_size")
        self.method: Method = method_class(**params)
        self.model = model
        self.backend: Backend = backend_for(model)
        refuse_method(self.backend, self.method)  # gradient/layer methods on a predict-only model
        self.spec = resolve_spec(
            model, self.backend, preprocess=preprocess, labels=labels, try_sizes=True
        )
        if self.precision != "float32" and not self.method.forward_only:
            raise InvalidInput(
                f"precision: {self.precision} is for the methods that only predict "
                f"(occlusion, rise, scorecam, lime, kernelshap); {self.method.name} needs gradients"
            )
        self.layer = _check_layer(layer)
        self.layout = use_layout(self.backend, layout)  # the user's reading of the layer, if any
        self.score: Score = score
        self.output = _target_plan.check_output(output)  # which output of several
        self.head = _target_plan.check_head(head)  # "sigmoid": independent labels
        self.top_k = positive_int(top_k, "top_k")
        self.batch_size = 32 if batch_size is None else batch_size  # images per pass
        self.forward_batch = batch_size  # perturbed copies per pass; None: the backend's
        self.photos = flag(photos, "photos")  # keep each raw photo (<= 2048 px) for pictures

    def explain(
        self,
        images: Any,
        *,
        target: Target = None,
        progress: Callable[[int], None] | None = None,
    ) -> Explanation:
        """Explain ``images`` (paths, PIL images, arrays or tensors; one or many).

        Inputs are prepared ``batch_size`` at a time and each batch is explained
        before the next is read, so memory holds the results, not every
        prepared input. A :class:`seewhy.inputs.Batch` is taken as it is:
        inputs already prepared with this model's preprocessing, and their
        pictures. Pipelines that decode ahead (the audit) use it to skip
        rebuilding the pictures. Images the model scores NaN or infinite are
        named in one :class:`~seewhy.NonFiniteScoresWarning`.
        """
        with one_blas_thread():  # numpy's BLAS on one thread (see _kit/blas.py)
            from .inputs import Batch, BatchStream, Failure
            from .inputs.batches import no_usable_image

            given = isinstance(images, Batch)
            groups: Iterable[tuple[Batch | None, list[Failure]]]
            if given:
                groups, count = [(images, [])], len(images)
            else:
                stream = BatchStream(
                    images,
                    self.spec.preprocess,
                    channels_first=self.backend.channels_first,
                    size=self.batch_size,
                    photos=self.photos,
                    own_size="size" in self.spec.guessed,
                )
                groups, count = stream, len(stream)
                warn_guessed(self.spec, stream.pictures)
            targets = resolve_targets(target, count, self.spec)
            failures: list[Failure] = []
            results: list[RawResult] = []
            pictures: list[np.ndarray] = []
            photos: list[Photo | None] = []
            sources: list[str] = []
            layer: str | None = None
            size = (0, 0)
            objects: list[targets_module.Target] = []  # each image's, when not plain classes
            sigmoid: bool | None = None
            for batch, failed in groups:  # a batch is prepared, explained, and only results kept
                failures.extend(failed)
                if batch is None:
                    continue
                if self.method.uses_layer and layer is None:
                    layer = self.backend.resolve_layer(self.layer, batch.inputs)
                if sigmoid is None:
                    sigmoid = self.head == "sigmoid" or _target_plan.sigmoid_output(
                        self.backend, batch.inputs, self.output
                    )
                positions = np.arange(len(batch)) if given else np.asarray(batch.indices, np.int64)
                batch_targets = targets
                found = _target_plan.detection_rows(self.backend, batch, targets)
                if found is not None:  # a detector and no target: one row per detection
                    batch, batch_targets = found
                    positions = np.arange(len(batch))
                for start in range(0, len(batch), self.batch_size):
                    picks = positions[start : start + self.batch_size]
                    picked = _target_plan.pick(batch_targets, picks)
                    objects.extend(picked if isinstance(picked, tuple) else ())
                    results.append(self._run(batch, start, picked, layer, progress, bool(sigmoid)))
                pictures.append(batch.images)
                photos.extend(batch.photos or (None,) * len(batch))
                sources.extend(batch.sources)
                size = (batch.inputs.shape[1], batch.inputs.shape[2])
            if not results:
                raise no_usable_image(failures)
            for failure in failures:
                warn_user(f"skipped: {failure.reason}", SkippedInputWarning)
            raw = _concat(results)
            warn_not_finite(raw.logits, sources)
            chosen = raw.targets.astype(np.int64)
            maps = postprocess(raw.maps, size, rectify=self.method.rectify)
            warn_constant_maps(maps, sources, self.method.name, raw.maps)
            return Explanation(
                maps=maps,
                layer_maps=raw.maps.astype(np.float32, copy=False),
                images=pictures[0] if len(pictures) == 1 else np.concatenate(pictures),
                sources=tuple(sources),
                targets=chosen,
                target_labels=_target_plan.captions(chosen, objects, self.spec.label),
                logits=raw.logits,
                predictions=top_predictions(raw.logits, self.spec, self.top_k, bool(sigmoid)),
                method=self.method.name,
                layer=layer,
                params={
                    **self._params(raw.settings),
                    **_target_plan.recorded(objects, self.output, self.head, bool(sigmoid)),
                },
                framework=self.backend.framework,
                model_name=self.spec.name,
                failures=tuple(failures),
                extras=dict(raw.extras),
                photos=tuple(photos),
                input_spec=spec_record(self.spec, size),
            )

    def _run(
        self,
        batch: Batch,
        start: int,
        targets: np.ndarray | tuple[targets_module.Target, ...] | None,
        layer: str | None,
        progress: Callable[[int], None] | None,
        sigmoid: bool = False,
    ) -> RawResult:
        """The method on ``batch_size`` images of ``batch`` from ``start``."""
        stop = start + self.batch_size
        plan = _target_plan.plan_targets(
            self.backend,
            targets,
            score=self.score,
            output=self.output,
            head=self.head,
            sigmoid_detected=sigmoid,
        )
        raw = self.method.run(
            Context(
                backend=plan.backend,
                inputs=batch.inputs[start:stop],
                targets=plan.targets,
                layer=layer,
                score=plan.score,  # type: ignore[arg-type]
                sigmoid=plan.sigmoid,
                target_objects=plan.objects,
                batch_size=self.batch_size,
                forward_batch=self.forward_batch,
                precision=self.precision,
                progress=progress,
                images=batch.images[start:stop],
                preprocess=self.spec.preprocess,
            )
        )
        return _target_plan.settle(raw, plan)

    __call__ = explain

    def _params(self, chosen: Mapping[str, Any]) -> dict[str, Any]:
        """Every setting of the method (``chosen``: what it picked for None defaults).

        The precision is added when it is not the usual float32.
        """
        params = {**self.method.params, **chosen}
        if self.layout is not None:
            params["layout"] = self.layout
        if self.precision != "float32":
            params["precision"] = self.precision
        return params


def _concat(results: list[RawResult]) -> RawResult:
    """One result from the batches' (settings chosen from the input size are the same)."""
    if len(results) == 1:
        return results[0]
    extras = {key: np.concatenate([r.extras[key] for r in results]) for key in results[0].extras}
    return RawResult(
        maps=np.concatenate([r.maps for r in results]),
        logits=np.concatenate([r.logits for r in results]),
        targets=np.concatenate([r.targets for r in results]),
        extras=extras,
        settings=results[0].settings,
    )


def _own_keywords(function: Callable[..., Any]) -> tuple[str, ...]:
    """The named parameters of ``function`` (not ``self``, not ``**params``)."""
    parameters = inspect.signature(function).parameters.values()
    return tuple(p.name for p in parameters if p.name != "self" and p.kind is not p.VAR_KEYWORD)


def check_keywords(
    where: str,
    params: Mapping[str, Any],
    own: Sequence[str],
    method: type[Method],
    notes: Mapping[str, str] | None = None,
) -> None:
    """Refuse a keyword that is neither ``where``'s own nor a setting of ``method``.

    The error is the caller's (``where``), with the nearest spelling among
    both (or among ``notes``, keywords of another call), or the other methods
    that take the keyword.
    """
    settings = method.param_names()
    for key in params:
        if key not in settings:
            others = {
                name: registry.get(name).param_names()
                for name in registry.names()
                if name != method.name
            }
            raise InvalidInput(
                unknown_keyword(
                    where,
                    key,
                    [*own, *settings],
                    noun="keyword",
                    others=others,
                    owner=method.name,
                    notes=notes,
                )
            )


def explain(
    model: Any,
    images: Any,
    method: str = "gradcam",
    *,
    target: Target = None,
    layer: str | None = None,
    layout: Any = None,
    preprocess: Preprocess | None = None,
    labels: Sequence[str] | None = None,
    score: Score = "logit",
    output: int | str | None = None,
    head: str | None = None,
    top_k: int = 5,
    batch_size: int | None = None,
    precision: str = "float32",
    progress: Callable[[int], None] | None = None,
    photos: bool = True,
    **params: Any,
) -> Explanation:
    """Explain why ``model`` predicts what it does on ``images``.

    ``target`` is what to explain: a class (index or name) or any target of
    :mod:`seewhy.targets` (sigmoid labels, an output unit, an embedding's
    similarity, a segmented region, a detected box, a callable on the
    output); one for all, or one per image; the default is each image's
    top-1 class (a detector: each detection). Scores are logits unless
    ``score="probability"``. ``output`` picks one output of a model that
    returns several (index, key or name); ``head="sigmoid"`` declares
    independent labels (found by itself for a Keras sigmoid or a one-output
    model). ``batch_size`` caps how many inputs go through the
    model in one call: the images themselves for one-pass methods (the CAMs,
    gradients; default 32), their perturbed or noisy copies for the others.
    Left out, perturbed copies go in batches the backend chooses (PyTorch on
    a CPU: small enough that each activation stays under 32 MiB, 6 for Lite0,
    1.75-2.1x faster than 32). ``precision="bfloat16"`` or ``"float16"`` runs the
    methods that only predict (occlusion, RISE, Score-CAM, LIME, Kernel SHAP)
    in reduced precision on PyTorch: up to 2x faster on CPUs with AMX and on
    recent GPUs. Extra keyword arguments are the method's settings (see
    ``seewhy.registry.get(method)``); one that is neither is refused here, with
    the nearest spelling. ``photos=False`` keeps no copy of each raw photo
    (pictures then show the model's input), for calls over many large photos.
    """
    check_keywords("explain", params, _own_keywords(explain), registry.get(method))
    explainer = Explainer(
        model,
        method,
        layer=layer,
        layout=layout,
        preprocess=preprocess,
        labels=labels,
        score=score,
        output=output,
        head=head,
        top_k=top_k,
        batch_size=batch_size,
        precision=precision,
        photos=photos,
        **params,
    )
    return explainer.explain(images, target=target, progress=progress)


def layers(
    model: Any, *, preprocess: Preprocess | None = None
) -> tuple[list[LayerInfo], str | None]:
    """Layers a CAM can use, in forward order, and the one chosen by default."""
    backend = backend_for(model)
    spec = resolve_spec(model, backend, preprocess=preprocess)
    height, width = spec.preprocess.size
    probe = np.zeros((1, height, width, spec.preprocess.channels), dtype=np.float32)
    infos = backend.layers(probe)
    try:  # the backend's own choice, the one explain makes (a detector's: its backbone's)
        default: str | None = backend.resolve_layer(None, probe)
    except LayerNotFound:
        default = None
    return infos, default


def predict(
    model: Any,
    images: Any,
    *,
    top_k: int = 5,
    preprocess: Preprocess | None = None,
    labels: Sequence[str] | None = None,
    batch_size: int = 32,
) -> tuple[tuple[Prediction, ...], ...]:
    """Top-k predictions per image, without explaining.

    Inputs are prepared ``batch_size`` at a time; unusable ones are skipped
    with a warning, as in :func:`explain`.
    """
    from .inputs import BatchStream, Failure
    from .inputs.batches import no_usable_image

    top_k = positive_int(top_k, "top_k")
    batch_size = positive_int(batch_size, "batch_size")
    backend = backend_for(model)
    spec = resolve_spec(model, backend, preprocess=preprocess, labels=labels, try_sizes=True)
    stream = BatchStream(
        images,
        spec.preprocess,
        channels_first=backend.channels_first,
        size=batch_size,
        photos=False,
        own_size="size" in spec.guessed,
    )
    warn_guessed(spec, stream.pictures)
    logits: list[np.ndarray] = []
    sources: list[str] = []
    failures: list[Failure] = []
    sigmoid = False  # each label's own probability: a final sigmoid, or one logit
    for batch, failed in stream:
        failures.extend(failed)
        if batch is not None:
            if not logits:
                sigmoid = _target_plan.sigmoid_output(backend, batch.inputs)
            logits.append(backend.predict(batch.inputs, batch_size=batch_size))
            sources.extend(batch.sources)
    if not logits:
        raise no_usable_image(failures)
    for failure in failures:
        warn_user(f"skipped: {failure.reason}", SkippedInputWarning)
    joined = np.concatenate(logits)
    warn_not_finite(joined, sources)
    return top_predictions(joined, spec, top_k, sigmoid)
