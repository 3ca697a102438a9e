"""``Explainer``: a model and a method set up once, then applied batch by batch.

The steps of one ``explain`` call live here (read the batches, explain each,
assemble the :class:`~seewhy.Explanation`); :mod:`seewhy.api` holds the
one-call functions around it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _target_plan, registry
from . import targets as targets_module
from ._kit.blas import one_blas_thread
from ._kit.checks import flag, positive_int
from ._kit.scores import check_score, probabilities
from ._kit.warn import warn_user
from .adapters import AdaptedModelNote, readout, seen
from .backends import Backend, backend_for
from .backends.base import Score, check_precision
from .backends.model_lock import model_lock
from .backends.readout import LayerReadout
from .backends.requirements import need_layers, reduced_precision_methods, require, use_layout
from .errors import InvalidInput, NonFiniteScoresWarning, SkippedInputWarning
from .explanation import Explanation, Prediction
from .maps import postprocess, warn_constant_maps
from .methods.base import Context, Method, RawResult
from .methods.cam_layers import check_fuse, fused_layers, layer_names
from .preprocess import ModelSpec, Preprocess
from .spec import spec_record, warn_guessed

if TYPE_CHECKING:
    from .inputs import Batch, Failure, Photo

__all__ = [
    "Explainer",
    "explainer_keywords",
    "resolve_targets",
    "top_predictions",
    "warn_not_finite",
]

from ._keywords import check_keywords, own_keywords

Target = _target_plan.TargetArg  # a class, a seewhy.targets target, a callable; or one per image


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


@dataclass
class _Collected:
    """What one ``explain`` call keeps of each batch until the Explanation is assembled.

    Only results and pictures are kept; the prepared inputs of a batch are
    dropped once it is explained. ``layer`` and ``sigmoid`` are settled on the
    first batch (None until then).
    """

    results: list[RawResult] = field(default_factory=list)
    pictures: list[np.ndarray] = field(default_factory=list)
    photos: list[Photo | None] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    objects: list[targets_module.Target] = field(default_factory=list)  # when not plain classes
    failures: list[Failure] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)  # the model input's (H, W)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # each result's (H, W)
    fed: list[Preprocess] = field(default_factory=list)  # each photo's own, if sized its own
    layer: str | None = None
    layers: tuple[str, ...] = ()  # several layers fused (``layer=[...]``), resolved
    sigmoid: bool | None = None

    def keep(self, batch: Batch) -> None:
        """The pictures, photos and names of an explained batch, in input order."""
        self.pictures.append(batch.images)
        self.photos.extend(batch.photos or (None,) * len(batch))
        self.sources.extend(batch.sources)
        self.size = (batch.inputs.shape[1], batch.inputs.shape[2])
        self.fed.extend([batch.fed] * len(batch) if batch.fed is not None else ())


class Explainer:
    """A model and a method, set up once and applied to many batches.

    Reusing one ``Explainer`` avoids repeating the layer search and method set-up;
    :func:`explain` builds one per call. Every setting is checked here, before
    any image is read.

    Parameters
    ----------
    model
        Any model :func:`explain` takes.
    method
        A registered method's name.
    layer, fuse, layout, preprocess, labels, score, output, head, top_k, batch_size, precision
        As for :func:`explain`.
    photos
        As for :func:`explain`.
    tokenizer, processor, prompt
        As for :func:`explain`: a vision-language model's own (see :mod:`seewhy.vlm`).
    **params
        The method's settings; ``target`` and ``progress`` go to
        :meth:`explain` instead.

    Raises
    ------
    InvalidInput
        An unknown keyword (with the nearest spelling) or a bad value.
    UnsupportedModel
        A method the model cannot serve.
    """

    def __init__(
        self,
        model: Any,
        method: str = "gradcam",
        *,
        layer: str | Sequence[str] | None = None,
        fuse: str = "mean",
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
        tokenizer: Any = None,
        processor: Any = None,
        prompt: str | None = None,
        **params: Any,
    ) -> None:
        method_class = registry.get(method)
        later = {name: "a keyword of Explainer.explain" for name in ("target", "progress")}
        own = own_keywords(Explainer.__init__)
        check_keywords("Explainer", params, own, method_class, notes=later)
        score = check_score(score)
        self.precision = check_precision(precision)
        if batch_size is not None:
            positive_int(batch_size, "batch_size")
        self.method: Method = method_class(**params)
        self.model = model
        # a vision-language model: the part that sees the pixels, the rest in the targets' scores
        view = seen(model, tokenizer=tokenizer, processor=processor, prompt=prompt)
        self.adapted = view.adapted
        # each photo at the size the model's own processor gives it, unless the caller chose one
        sizes = view.adapted.sizes if view.adapted is not None else None
        self.per_photo = None if preprocess is not None else sizes
        self.backend: Backend = backend_for(view.model)
        require(self.backend, self.method)  # a capability the method needs and the model lacks
        if self.adapted is not None:
            warn_user(self.adapted.said, AdaptedModelNote)
        self.spec = view.spec(self.backend, preprocess=preprocess, labels=labels, try_sizes=True)
        if self.precision != "float32" and not self.method.forward_only:
            raise InvalidInput(
                f"precision: {self.precision} is for the methods that only predict "
                f"({', '.join(reduced_precision_methods())}); {self.method.name} needs gradients"
            )
        self.layer = layer_names(layer)  # a name, several names (fused), or None
        self.fuse = check_fuse(fuse)
        if self.adapted is not None:
            chosen = self.adapted.layer  # several (fused) only for a method reading a layer
            if isinstance(chosen, tuple) and not self.method.uses_layer:
                chosen = None
            self.layer = self.layer or chosen  # chosen for this tower, and said
            self.adapted.check_layer(self.layer, self.method.name)
            towers_attention = self.method.reads_attention or LayerReadout in self.method.requires
            if self.adapted.layers is not None and towers_attention:
                raise InvalidInput(
                    f"method: {self.method.name} reads the vision tower's attention, which "
                    f"{self.adapted.layers_why}; use a CAM (at layer "
                    f"{' or '.join(self.adapted.layers)}) or answer-attention"
                )
        if isinstance(self.layer, tuple) and not self.method.uses_layer:
            raise InvalidInput(
                f"layer: {self.method.name} reads no layer, so it cannot fuse several; "
                "use a CAM (gradcam, layercam, ...) or give no layer"
            )
        # a view reading the layer in the user's layout, if any; what params record
        self.backend, self.layout = use_layout(self.backend, layout)
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
        rebuilding the pictures.

        Parameters
        ----------
        images
            One input or many: file paths, ``sample:NAME``, PIL images, arrays
            or tensors, or a prepared :class:`seewhy.inputs.Batch`.
        target
            What to explain: see :func:`seewhy.explain`.
        progress
            Called with the number of passes done, for a progress bar.

        Returns
        -------
        Explanation
            One map per usable image; unusable ones are in ``failures``.

        Raises
        ------
        InvalidInput
            When no image could be used, or ``target`` does not fit the model.

        Images the model scores NaN or infinite are named in one
        :class:`~seewhy.NonFiniteScoresWarning`; each skipped input in one
        :class:`~seewhy.SkippedInputWarning`.
        """
        with one_blas_thread():  # numpy's BLAS on one thread (see _kit/blas.py)
            groups, count, given = self._groups(images)
            if self.adapted is not None:  # a Prompt, an Answer: targets scoring the adapted output
                target = self.adapted.bind(target)
            targets = resolve_targets(target, count, self.spec)
            run = _Collected()
            for batch, failed in groups:  # a batch is prepared, explained, and only results kept
                run.failures.extend(failed)
                if batch is not None:  # all of a batch's passes see one set of weights: a
                    # training thread holding the model's lock around its step (as the README
                    # advises) waits instead of stepping between Ablation-CAM's base and edits
                    with model_lock(self.backend.model):
                        self._explain_batch(run, batch, targets, given, progress)
            return self._assemble(run)

    def _groups(
        self, images: Any
    ) -> tuple[Iterable[tuple[Batch | None, list[Failure]]], int, bool]:
        """(the batches with the failures met before each, how many inputs, given as a Batch).

        A :class:`Batch` is one group as it is; anything else is read
        ``batch_size`` at a time, and a guessed input spec is said here.
        """
        from .inputs import Batch, BatchStream

        if isinstance(images, Batch):
            return [(images, [])], len(images), True
        stream = BatchStream(
            images,
            self.spec.preprocess,
            channels_first=self.backend.channels_first,
            size=self.batch_size,
            photos=self.photos,
            own_size="size" in self.spec.guessed,
            per_photo=self.per_photo,
        )
        warn_guessed(self.spec, stream.pictures)
        return stream, len(stream), False

    def _explain_batch(
        self,
        run: _Collected,
        batch: Batch,
        targets: np.ndarray | tuple[targets_module.Target, ...] | None,
        given: bool,
        progress: Callable[[int], None] | None,
    ) -> None:
        """The method on one prepared batch, ``batch_size`` images a pass, kept in ``run``.

        The layer and the sigmoid rule are settled on the first batch, so every
        batch is explained the same way. ``targets`` are by position among all
        inputs (failures included): ``batch.indices`` says which are this batch's.
        """
        if self.method.uses_layer and run.layer is None:
            inside = need_layers(self.backend, f"method: {self.method.name}")
            if isinstance(self.layer, tuple):  # several layers: each resolved, maps fused
                run.layers = tuple(inside.resolve_layer(name, batch.inputs) for name in self.layer)
                run.layer = ",".join(run.layers)
            else:
                run.layer = inside.resolve_layer(self.layer, batch.inputs)
        if run.sigmoid is None:
            run.sigmoid = self.head == "sigmoid" or bool(
                _target_plan.sigmoid_output(self.backend, batch.inputs, self.output)
            )
        positions = np.arange(len(batch)) if given else np.asarray(batch.indices, np.int64)
        found = _target_plan.detection_rows(self.backend, batch, targets)
        if found is None and self.adapted is not None and self.adapted.rows is not None:
            found = self.adapted.rows(batch, _target_plan.pick(targets, positions))  # answers
        if found is not None:  # a detector and no target: one row per detection
            batch, targets = found
            positions = np.arange(len(batch))
        for start in range(0, len(batch), self.batch_size):
            picked = _target_plan.pick(targets, positions[start : start + self.batch_size])
            run.objects.extend(picked if isinstance(picked, tuple) else ())
            run.sizes.append((batch.inputs.shape[1], batch.inputs.shape[2]))  # this result's
            if run.layers:  # one run per layer (sharing one pass where it can), maps fused
                each = partial(self._run, batch, start, picked, progress=None, sigmoid=run.sigmoid)
                size, model = run.sizes[-1], self.backend.model
                fused = fused_layers(model, run.layers, each, size, self.method, self.fuse)
                run.results.append(fused)
                if progress is not None:
                    progress(len(fused.maps))
                continue
            run.results.append(self._run(batch, start, picked, run.layer, progress, run.sigmoid))
        run.keep(batch)

    def _assemble(self, run: _Collected) -> Explanation:
        """The Explanation of every batch in ``run``; skipped inputs and odd scores said here."""
        from .inputs.batches import no_usable_image

        if not run.results:
            raise no_usable_image(run.failures)
        for failure in run.failures:
            warn_user(f"skipped: {failure.reason}", SkippedInputWarning)
        spec, photos = self.spec, tuple(run.photos)
        if len(set(run.sizes)) > 1:  # photos fed at their own sizes: laid onto one canvas
            from ._own_sizes import on_canvas

            raw, maps, images, photos = on_canvas(
                run.results, run.sizes, [p for g in run.pictures for p in g], photos,
                spec.preprocess, rectify=self.method.rectify,
            )  # fmt: skip
        else:
            raw = _concat(run.results)
            maps = postprocess(raw.maps, run.size, rectify=self.method.rectify)
            images = run.pictures[0] if len(run.pictures) == 1 else np.concatenate(run.pictures)
            spec = replace(spec, preprocess=run.fed[0]) if run.fed else spec  # as fed
        found = readout(run.objects, raw.logits)
        if found is not None:  # texts acting as classes (prompts): the predictions list them
            raw, spec = replace(raw, logits=found[0]), replace(spec, labels=found[1])
        warn_not_finite(raw.logits, run.sources)
        chosen = raw.targets.astype(np.int64)
        warn_constant_maps(maps, run.sources, self.method.name, raw.maps)
        sigmoid = bool(run.sigmoid)
        return Explanation(
            maps=maps,
            layer_maps=raw.maps.astype(np.float32, copy=False),
            images=images,
            sources=tuple(run.sources),
            targets=chosen,
            target_labels=_target_plan.captions(chosen, run.objects, spec.label),
            logits=raw.logits,
            predictions=top_predictions(raw.logits, spec, self.top_k, sigmoid),
            method=self.method.name,
            layer=run.layer,
            params={
                **self._params(raw.settings),
                **_target_plan.recorded(run.objects, self.output, self.head, sigmoid),
            },
            framework=self.backend.framework,
            model_name=self.spec.name,
            failures=tuple(run.failures),
            extras=dict(raw.extras),
            photos=photos,
            input_spec=spec_record(spec, maps.shape[1:], [p.size for p in run.fed]),
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
        if isinstance(self.layer, tuple):
            params.update(layers=self.layer, fuse=self.fuse)
        if self.layout is not None:
            params["layout"] = self.layout
        if self.precision != "float32":
            params["precision"] = self.precision
        if self.adapted is not None:
            params["model_family"] = self.adapted.family
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


def explainer_keywords() -> tuple[str, ...]:
    """The keywords :class:`Explainer` takes besides the model, the method and its settings.

    Read from the signature, so an option added to ``Explainer`` reaches
    every caller that forwards these (the audit, the command line) unchanged.
    """
    return tuple(k for k in own_keywords(Explainer.__init__) if k not in ("model", "method"))
