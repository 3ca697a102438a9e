"""The public entry points: ``explain``, ``Explainer``, ``layers``, ``predict``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _target_plan, registry
from ._keywords import check_keywords, own_keywords
from ._kit.checks import positive_int
from ._kit.warn import warn_user
from .adapters import AdaptedModelNote, seen
from .backends import LayerInfo, backend_for
from .backends.base import Score
from .backends.requirements import need_layers
from .errors import LayerNotFound, SkippedInputWarning
from .explainer import Explainer, explainer_keywords, top_predictions, warn_not_finite
from .explanation import Explanation, Prediction
from .preprocess import ModelSpec, Preprocess
from .spec import warn_guessed

if TYPE_CHECKING:
    from .inputs import Failure

__all__ = ["Explainer", "explain", "explainer_keywords", "layers", "model_spec", "predict"]

Target = _target_plan.TargetArg  # a class, a seewhy.targets target, a callable; or one per image


def model_spec(
    model: Any,
    *,
    preprocess: Preprocess | None = None,
    labels: Sequence[str] | None = None,
    tokenizer: Any = None,
    processor: Any = None,
) -> ModelSpec:
    """What ``model`` takes (size, channels, value range, labels): see :mod:`seewhy.spec`.

    A vision-language model's is its image-seeing part's, with the
    preprocessing its processor or config declares (as :func:`explain` uses it).

    Parameters
    ----------
    model : object
        Any model seewhy can explain.
    preprocess : Preprocess, optional
        The caller's own preprocessing, which wins over what the model says.
    labels : sequence of str, optional
        Class names, by index.
    tokenizer, processor : object, optional
        A vision-language model's own, as for :func:`explain`.

    Returns
    -------
    ModelSpec
        With ``source`` and ``guessed`` saying where each part came from.
    """
    return seen(model, tokenizer=tokenizer, processor=processor).spec(
        preprocess=preprocess, labels=labels
    )


def explain(
    model: Any,
    images: Any,
    method: str = "gradcam",
    *,
    target: Target = None,
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
    progress: Callable[[int], None] | None = None,
    photos: bool = True,
    tokenizer: Any = None,
    processor: Any = None,
    prompt: str | None = None,
    **params: Any,
) -> Explanation:
    """Explain why ``model`` predicts what it does on ``images``.

    Parameters
    ----------
    model
        A PyTorch module, a Keras model, an ONNX Runtime session or file, or a
        :class:`seewhy.BlackBox`.
    images
        One input or many: file paths, ``sample:NAME``, PIL images, arrays or
        tensors.
    method
        A registered method's name (``seewhy methods`` lists them).
    target
        What to explain: a class (index or name) or any target of
        :mod:`seewhy.targets` (sigmoid labels, an output unit, an embedding's
        similarity, a segmented region, a detected box, a callable on the
        output); one for all, or one per image. Default: each image's top-1
        class (a detector: each detection).
    layer
        The layer a CAM reads (default: the last one with a spatial map;
        :func:`layers` lists them). Several (``["layer3", "layer4"]`` or
        ``"layer3,layer4"``): each layer's map is upsampled to the input,
        normalised, and the maps fused (see ``fuse``).
    fuse
        How several layers' maps combine: ``"mean"`` or ``"max"``
        (recorded in ``params`` with ``layers``).
    layout
        How that layer's tensor is laid out (NCHW, NHWC, tokens), when the
        guess is wrong.
    preprocess
        How pictures become inputs (default: what the model says, else a guess
        that one warning names).
    labels
        Class names, by index.
    score
        ``"logit"`` or ``"probability"``: which score is explained.
    output
        Which output of a model that returns several (index, key or name).
    head
        ``"sigmoid"`` declares independent labels (found by itself for a
        Keras sigmoid or a one-output model).
    top_k
        Predictions kept per image.
    batch_size
        Inputs per call of the model: the images themselves for one-pass
        methods (the CAMs, gradients; default 32), their perturbed or noisy
        copies for the others. Left out, perturbed copies go in batches the
        backend chooses (PyTorch on a CPU: small enough that each activation
        stays under 32 MiB, 6 for Lite0, 1.75-2.1x faster than 32).
    precision
        ``"bfloat16"`` or ``"float16"`` runs the methods that only predict
        (occlusion, RISE, Score-CAM, LIME, Kernel SHAP) in reduced precision
        on PyTorch: up to 2x faster on CPUs with AMX and on recent GPUs.
    progress
        Called with the number of passes done, for a progress bar.
    photos
        ``False`` keeps no copy of each raw photo (pictures then show the
        model's input), for calls over many large photos.
    tokenizer
        A vision-language model's tokenizer, when seewhy cannot find it beside
        the model (see :class:`seewhy.targets.Prompt`).
    processor
        A Hugging Face vision-language model's processor (chat template,
        image processor, tokenizer).
    prompt
        The question put to a generative vision-language model; without an
        ``Answer`` target its greedy answer is explained.
    **params
        The method's settings (see ``seewhy.registry.get(method)``).

    Returns
    -------
    Explanation
        One map per usable image, with every setting in ``params``.

    Raises
    ------
    InvalidInput
        A keyword that is neither one of these nor a setting of ``method``
        (with the nearest spelling), a bad value, or no usable image.
    UnsupportedModel
        A method the model cannot serve (e.g. gradients of a model that only
        predicts), naming the methods that work.
    """
    given = locals()  # the signature above is Explainer's, spelt out for help() and type checkers
    check_keywords("explain", params, own_keywords(explain), registry.get(method))
    options = {name: given[name] for name in explainer_keywords()}
    explainer = Explainer(model, method, **options, **params)
    return explainer.explain(images, target=target, progress=progress)


def layers(
    model: Any,
    *,
    preprocess: Preprocess | None = None,
    tokenizer: Any = None,
    processor: Any = None,
) -> tuple[list[LayerInfo], str | None]:
    """Layers a CAM can use, in forward order, and the one chosen by default.

    A vision-language model lists the layers of the part that sees the
    pixels (a CLIP image tower, a LLaVA vision path), under the user's own
    names, and marks the layer chosen for that tower.

    Parameters
    ----------
    model : object
        Any model seewhy can explain (a model that only predicts has none).
    preprocess : Preprocess, optional
        The input the layers are traced with (default: the model's own).
    tokenizer, processor : object, optional
        A vision-language model's own, as for :func:`explain` (a generative
        model's processor says how its pictures are prepared).

    Returns
    -------
    tuple of (list of LayerInfo, str or None)
        Each layer's name, type and output shape; the default layer's name.
    """
    view = seen(model, tokenizer=tokenizer, processor=processor)
    backend = backend_for(view.model)
    spec = view.spec(backend, preprocess=preprocess)
    height, width = spec.preprocess.size
    probe = np.zeros((1, height, width, spec.preprocess.channels), dtype=np.float32)
    inside = need_layers(backend, "model: seewhy.layers()")
    infos = inside.layers(probe)
    chosen = None if view.adapted is None else view.adapted.layer  # chosen for the tower
    if isinstance(chosen, tuple):  # several layers fused: the last (deepest) one is marked
        chosen = chosen[-1]
    try:  # the backend's own choice, the one explain makes (a detector's: its backbone's)
        default: str | None = inside.resolve_layer(chosen, probe)
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
    tokenizer: Any = None,
    processor: Any = None,
) -> tuple[tuple[Prediction, ...], ...]:
    """Top-k predictions per image, without explaining.

    Inputs are prepared ``batch_size`` at a time; unusable ones are skipped
    with a warning, as in :func:`explain`. A dual encoder (CLIP, SigLIP)
    classifies among the texts given as ``labels`` (zero-shot: the softmax of
    its image-text logits, each text encoded once).

    Parameters
    ----------
    model : object
        Any model seewhy can run.
    images : object
        Paths, ``sample:NAME``, PIL images, arrays or tensors, one or many.
    top_k : int
        Classes per image.
    preprocess : Preprocess, optional
        How pictures become inputs (default: the model's own).
    labels : sequence of str, optional
        Class names, by index; for a dual encoder, the texts to classify among.
    batch_size : int
        Inputs per forward pass.
    tokenizer, processor : object, optional
        A vision-language model's own, as for :func:`explain`.

    Returns
    -------
    tuple of tuple of Prediction
        Per usable image, its top-k classes.
    """
    from .inputs import BatchStream
    from .inputs.batches import no_usable_image

    top_k = positive_int(top_k, "top_k")
    batch_size = positive_int(batch_size, "batch_size")
    view = seen(model, tokenizer=tokenizer, processor=processor)
    texts = view.zero_shot(labels, who="predict")  # a dual encoder's labels: texts as classes
    if view.adapted is not None:
        warn_user(view.adapted.said, AdaptedModelNote)
    backend = backend_for(view.model)
    spec = view.spec(backend, preprocess=preprocess, labels=labels, try_sizes=True)
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
            if not logits and texts is None:
                sigmoid = _target_plan.sigmoid_output(backend, batch.inputs)
            found = backend.predict(batch.inputs, batch_size=batch_size)
            logits.append(found if texts is None else texts.readout(found))
            sources.extend(batch.sources)
    if not logits:
        raise no_usable_image(failures)
    for failure in failures:
        warn_user(f"skipped: {failure.reason}", SkippedInputWarning)
    joined = np.concatenate(logits)
    warn_not_finite(joined, sources)
    return top_predictions(joined, spec, top_k, sigmoid)
