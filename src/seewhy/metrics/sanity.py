"""Sanity checks for saliency maps (Adebayo et al., 2018).

An explanation that does not change when the model's weights are replaced by
random ones cannot be explaining what the model learnt. Two tests:

* model-parameter randomisation, *cascading* from the top layer down (or one
  layer at a time, *independent*): explain with the original model and with
  copies whose top layers were re-drawn, and compare the maps;
* data randomisation: compare with a model trained on shuffled labels (the
  user gives a callable that trains one).

Similarity is measured as in the paper, per image and step: Spearman rank
correlation with and without absolute values, SSIM, and the Pearson
correlation of HOG features (see :data:`SANITY_MEASURES`). Grad-CAM and plain
gradients should fall towards 0; Guided Backprop is known to stay similar
(the paper's finding).

Randomisation works on copies made by the backend's framework module
(``backends/torch_sanity.py``, ``backends/keras_sanity.py``); the user's model
is never touched. Weights are re-drawn from a truncated normal with each
tensor's own mean and standard deviation: the scale of the activations stays
sane, so what changes is the learnt structure, not the numerics.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..preprocess import Preprocess

__all__ = [
    "SANITY_MEASURES",
    "SanityResult",
    "data_randomization_check",
    "hog_features",
    "hog_similarity",
    "paper_maps",
    "plot_sanity",
    "randomization_steps",
    "sanity_check",
    "spearman",
    "ssim",
]


# --------------------------------------------------------------------------- similarity


def spearman(a: np.ndarray, b: np.ndarray, *, absolute: bool = False) -> float:
    """Spearman rank correlation of two maps (ties get average ranks).

    ``absolute=True`` ranks ``|a|`` and ``|b|``: the paper's variant "with
    absolute values", where strong negative evidence counts as important too.
    A constant map has no ranking, so its correlation with a map that has
    one is 0; two constant maps do not differ at all and score 1 (as in
    :func:`hog_similarity`), so a method whose maps stay blank is not
    mistaken for one whose maps changed.
    """
    from scipy.stats import rankdata

    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if absolute:
        x, y = np.abs(x), np.abs(y)
    x = rankdata(x)
    y = rankdata(y)
    x -= x.mean()
    y -= y.mean()
    sx, sy = float((x * x).sum()), float((y * y).sum())
    if sx == 0.0 or sy == 0.0:
        return 1.0 if sx == sy else 0.0
    return float((x * y).sum() / np.sqrt(sx * sy))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two maps with values in [0, 1] (scikit-image)."""
    from skimage.metrics import structural_similarity

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    side = min(x.shape)
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        return float(np.corrcoef(x.ravel(), y.ravel())[0, 1]) if x.size > 1 else 1.0
    value = structural_similarity(x, y, data_range=1.0, win_size=win)  # type: ignore[no-untyped-call]
    return float(value)


def hog_features(m: np.ndarray, *, cell: int | None = None) -> np.ndarray:
    """Histogram of oriented gradients of one (H, W) map, as one flat vector.

    ``cell`` pixels per cell default to the map's short side / 28 (8 px at
    224, scikit-image's default there), at least 2, so maps of any size get
    the same grid; blocks are 3x3 cells (fewer on a tiny map).
    """
    from skimage.feature import hog

    x = np.asarray(m, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidInput(f"map: expected a 2-D map, got shape {x.shape}")
    side = min(x.shape)
    size = max(2, side // 28) if cell is None else int(cell)
    if size < 1 or side < size:
        raise InvalidInput(f"cell: expected 1..{side} pixels for a {x.shape} map, got {cell}")
    block = max(1, min(3, side // size))
    features = hog(x, orientations=9, pixels_per_cell=(size, size), cells_per_block=(block, block))
    return np.asarray(features, dtype=np.float64)


def hog_similarity(a: np.ndarray, b: np.ndarray, *, cell: int | None = None) -> float:
    """Pearson correlation of the two maps' HOG features (the paper's edge-structure measure).

    HOG sees only where the edges are and how they run, not the values, so
    two maps that draw the same outlines score high even when their ranks
    differ. A map without any edge (constant) has no HOG features: two such
    maps score 1 (nothing differs), one such map against any other 0.
    """
    fa = hog_features(a, cell=cell)
    fb = hog_features(b, cell=cell)
    if fa.shape != fb.shape:
        raise InvalidInput(f"maps: expected the same shape, got {np.shape(a)} and {np.shape(b)}")
    fa -= fa.mean()
    fb -= fb.mean()
    na = float(np.sqrt((fa * fa).sum()))
    nb = float(np.sqrt((fb * fb).sum()))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(np.clip((fa * fb).sum() / (na * nb), -1.0, 1.0))


# --------------------------------------------------------------------------- result

#: The similarity measures a :class:`SanityResult` holds, with their plot titles.
SANITY_MEASURES: dict[str, str] = {
    "spearman": "rank correlation (maps as shown)",
    "spearman_abs": "rank correlation (abs)",
    "spearman_signed": "rank correlation (no abs)",
    "ssim": "SSIM",
    "hog": "HOG similarity",
}


@dataclass(frozen=True, eq=False)
class SanityResult:
    """Similarity of the original maps to the maps after each randomisation step.

    ``steps[j]`` names what step ``j`` randomised (cascading: that layer and
    everything above it). Every measure is (steps, images):

    * ``spearman``, ``ssim`` and ``hog``: the maps as the method shows them
      (its own channel reduction, rectified and scaled to [0, 1]);
    * ``spearman_abs`` and ``spearman_signed``: the paper's two rank
      correlations, on the sum over colour channels of the absolute (resp.
      signed) attributions; for methods without per-channel attributions
      (the CAMs) on the absolute (resp. signed) map before rectification.
    """

    method: str
    mode: str  # "cascading", "independent" or "data"
    steps: tuple[str, ...]
    spearman: np.ndarray  # (S, N)
    ssim: np.ndarray  # (S, N)
    original: np.ndarray  # (N, H, W)
    randomized: np.ndarray  # (S, N, H, W)
    images: np.ndarray  # (N, H, W, 3) uint8
    targets: np.ndarray  # (N,)
    params: Mapping[str, Any] = field(default_factory=dict)
    spearman_abs: np.ndarray | None = None  # (S, N)
    spearman_signed: np.ndarray | None = None  # (S, N)
    hog: np.ndarray | None = None  # (S, N)

    def measure(self, name: str) -> np.ndarray:
        """(S, N) values of one measure of :data:`SANITY_MEASURES`."""
        if name not in SANITY_MEASURES:
            raise InvalidInput(
                f"measure: expected one of {', '.join(SANITY_MEASURES)}, got {name!r}"
            )
        value = getattr(self, name)
        if value is None:
            raise InvalidInput(f"measure: {name} was not computed for this result")
        out: np.ndarray = value
        return out

    @property
    def measures(self) -> tuple[str, ...]:
        """Names of the measures this result holds, in :data:`SANITY_MEASURES` order."""
        return tuple(m for m in SANITY_MEASURES if getattr(self, m) is not None)

    def mean(self, name: str) -> np.ndarray:
        """(S,) one measure averaged over images, one value per step."""
        out: np.ndarray = self.measure(name).mean(axis=1)
        return out

    @property
    def mean_spearman(self) -> np.ndarray:
        """(S,) mean over images, one value per step."""
        return self.mean("spearman")

    @property
    def mean_ssim(self) -> np.ndarray:
        """(S,) mean over images, one value per step."""
        return self.mean("ssim")

    @property
    def final_spearman(self) -> float:
        """Mean rank correlation after the last (most randomised) step."""
        return float(self.mean_spearman[-1])

    @property
    def final_ssim(self) -> float:
        """Mean SSIM after the last (most randomised) step."""
        return float(self.mean_ssim[-1])

    def final(self, name: str) -> float:
        """One measure's mean after the last (most randomised) step."""
        return float(self.mean(name)[-1])

    def passes(self, threshold: float = 0.5) -> bool:
        """True when the maps changed: final mean Spearman below ``threshold``.

        Passing means the explanation depends on the weights, as it should.
        """
        return self.final_spearman < threshold

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers per step: each measure's mean and per-image values."""
        steps = []
        for j, label in enumerate(self.steps):
            entry: dict[str, Any] = {"randomized": label}
            for m in self.measures:
                entry[m] = round(float(self.mean(m)[j]), 6)
            for m in self.measures:
                entry[f"{m}_per_image"] = [round(float(v), 6) for v in self.measure(m)[j]]
            steps.append(entry)
        return {
            "method": self.method,
            "mode": self.mode,
            "steps": steps,
            **{f"final_{m}": round(self.final(m), 6) for m in self.measures},
            "passes": self.passes(),
            "targets": [int(t) for t in self.targets],
            "params": dict(self.params),
        }

    def figure(self, *, image: int = 0, max_columns: int = 8) -> Any:
        """Curves and map strip for this method (see :func:`plot_sanity`)."""
        return plot_sanity([self], image=image, max_columns=max_columns)


def _plot_measures(fig: Any, cell: Any, items: Sequence[SanityResult]) -> None:
    """One small panel per measure, steps along x, one line per method."""
    names = [m for m in SANITY_MEASURES if all(getattr(r, m) is not None for r in items)]
    panels = cell.subgridspec(1, len(names), wspace=0.05)
    steps = len(items[0].steps)
    xs = np.arange(steps)
    first = None
    for col, name in enumerate(names):
        ax = fig.add_subplot(panels[0, col], sharey=first)
        first = first or ax
        for k, res in enumerate(items):
            ax.plot(xs, res.mean(name), "-o", color=f"C{k % 10}", label=res.method, markersize=3)
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.set_ylim(-0.3, 1.05)
        ax.set_title(SANITY_MEASURES[name], fontsize=8)
        ax.set_xticks(xs)
        ax.set_xticklabels(items[0].steps, rotation=60, ha="right", fontsize=6)
        if col == 0:
            ax.set_ylabel("similarity to original map")
            ax.legend(fontsize=7, loc="lower left")
        else:
            ax.tick_params(labelleft=False)


def plot_sanity(
    results: SanityResult | Sequence[SanityResult],
    *,
    image: int = 0,
    max_columns: int = 8,
) -> Any:
    """A matplotlib Figure in the paper's style.

    Top: one panel per similarity measure (rank correlations, SSIM, HOG), the
    mean over images per step, one colour per method. Below: for each method,
    image ``image``'s original map followed by its maps after (up to
    ``max_columns``) randomisation steps. Built on
    :class:`matplotlib.figure.Figure`, so it works headless.
    """
    from matplotlib.figure import Figure

    items = [results] if isinstance(results, SanityResult) else list(results)
    if not items:
        raise InvalidInput("results: expected at least one SanityResult")
    if not 0 <= image < len(items[0].original):
        raise InvalidInput(f"image: expected 0..{len(items[0].original) - 1}, got {image}")
    steps = len(items[0].steps)
    shown = sorted(set(np.linspace(0, steps - 1, min(steps, max_columns)).round().astype(int)))
    columns = 1 + len(shown)
    fig = Figure(figsize=(max(10.0, 1.5 * columns), 3.6 + 1.6 * len(items)), layout="constrained")
    grid = fig.add_gridspec(1 + len(items), columns, height_ratios=[2.2] + [1.0] * len(items))
    _plot_measures(fig, grid[0, :], items)
    what = {
        "cascading": "cascading randomisation (top layer first)",
        "independent": "independent layer randomisation",
        "data": "data randomisation",
    }.get(items[0].mode, items[0].mode)
    fig.suptitle(f"Sanity check: {what}")
    for row, res in enumerate(items, start=1):
        panels = [("original", res.original[image])] + [
            (res.steps[j], res.randomized[j, image]) for j in shown
        ]
        for col, (title, m) in enumerate(panels):
            sub = fig.add_subplot(grid[row, col])
            sub.imshow(m, cmap="viridis", vmin=0.0, vmax=1.0)
            sub.set_xticks([])
            sub.set_yticks([])
            sub.set_title(title if len(title) <= 18 else "..." + title[-15:], fontsize=7)
            if col == 0:
                sub.set_ylabel(res.method, fontsize=8)
    return fig


# --------------------------------------------------------------------------- randomisation


def _ops(framework: str) -> Any:
    """The framework module that lists, copies and re-draws weights."""
    modules = {"torch": "torch_sanity", "keras": "keras_sanity"}
    if framework not in modules:
        raise InvalidInput(
            f"model: sanity checks support torch and keras models, not {framework!r}"
        )
    return importlib.import_module(f"seewhy.backends.{modules[framework]}")


def _resampler(seed: int) -> Callable[[np.ndarray], np.ndarray]:
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


def _is_norm(kind: str) -> bool:
    return "norm" in kind.lower()


def randomization_steps(model: Any, images: Any = None) -> list[list[str]]:
    """Groups of layers in cascade order, top (output) first.

    A normalisation layer joins the layer before it (a conv and its batch
    norm are one step, as in the paper's figures). ``images`` (model inputs,
    NHWC) give torch the forward order.
    """
    from ..backends import backend_for

    backend = backend_for(model)
    x = None if images is None else np.asarray(images, dtype=np.float32)
    layers = _ops(backend.framework).parameter_layers(model, x)
    groups: list[list[str]] = []
    for name, kind in layers:
        if groups and _is_norm(kind):
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups[::-1]


def _explain_maps(
    model: Any,
    inputs: np.ndarray,
    method: str,
    *,
    layer: str | None,
    targets: Any,
    preprocess: Preprocess,
    batch_size: int,
    params: Mapping[str, Any],
) -> Any:
    from ..api import Explainer

    explainer = Explainer(
        model, method, layer=layer, preprocess=preprocess, batch_size=batch_size, **params
    )
    return explainer.explain(inputs, target=targets)


def paper_maps(explanation: Any) -> tuple[np.ndarray, np.ndarray]:
    """(absolute, signed) (N, H, W) maps for the paper's two rank correlations.

    Pixel methods: the sum over colour channels of |attribution| and of the
    attribution (the paper's grayscale and diverging maps). Other methods:
    their raw map before rectification and scaling, upsampled, and its
    absolute value.
    """
    from ..maps import upsample

    attributions = explanation.extras.get("attributions")
    if attributions is not None and np.ndim(attributions) == 4:
        a = np.nan_to_num(np.asarray(attributions, dtype=np.float32))
        return np.abs(a).sum(axis=-1), a.sum(axis=-1)
    raw = np.nan_to_num(np.asarray(explanation.layer_maps, dtype=np.float32))
    if raw.ndim == 3:
        raw = upsample(raw, explanation.maps.shape[1:])
    else:  # an unusual raw map: fall back to the maps as shown
        raw = np.asarray(explanation.maps, dtype=np.float32)
    return np.abs(raw), raw


def _similarities(
    original: Any, other: Any, original_paper: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Every measure of :data:`SANITY_MEASURES` between two explanations, (N,) each.

    ``original_paper`` is :func:`paper_maps` of ``original``, when the caller
    compares it with many steps and has it already.
    """
    a_abs, a_signed = paper_maps(original) if original_paper is None else original_paper
    b_abs, b_signed = paper_maps(other)
    pairs = list(zip(original.maps, other.maps, strict=True))
    return {
        "spearman": np.array([spearman(a, b) for a, b in pairs]),
        "spearman_abs": np.array([spearman(a, b) for a, b in zip(a_abs, b_abs, strict=True)]),
        "spearman_signed": np.array(
            [spearman(a, b) for a, b in zip(a_signed, b_signed, strict=True)]
        ),
        "ssim": np.array([ssim(a, b) for a, b in pairs]),
        "hog": np.array([hog_similarity(a, b) for a, b in pairs]),
    }


def _stack(rows: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-step similarity dicts -> one (S, N) array per measure."""
    return {name: np.stack([r[name] for r in rows]) for name in SANITY_MEASURES}


def _check_randomized_target(value: str) -> bool:
    """True when each randomised model explains its own top-1 class."""
    if value not in ("original", "predicted"):
        raise InvalidInput(f"randomized_target: expected 'original' or 'predicted', got {value!r}")
    return value == "predicted"


def _original(
    model: Any,
    images: Any,
    method: str,
    *,
    target: Any,
    layer: str | None,
    preprocess: Preprocess | None,
    batch_size: int,
    params: Mapping[str, Any],
) -> tuple[Any, np.ndarray, Any]:
    """(spec, inputs, explanation) of the untouched model: what every copy is compared with."""
    from ..api import model_spec
    from ..backends import backend_for
    from ..io import prepare

    backend = backend_for(model)
    spec = model_spec(model, preprocess=preprocess)
    batch, _ = prepare(images, spec.preprocess, channels_first=backend.channels_first, strict=True)
    base = _explain_maps(
        model,
        batch.inputs,
        method,
        layer=layer,
        targets=target,
        preprocess=spec.preprocess,
        batch_size=batch_size,
        params=params,
    )
    return spec, batch.inputs, base


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
    """
    from ..backends import backend_for

    follow = _check_randomized_target(randomized_target)
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise InvalidInput(f"steps: expected a positive integer or None, got {steps!r}")
    backend = backend_for(model)
    ops = _ops(backend.framework)  # an unsupported framework fails before any work
    spec, inputs, base = _original(
        model,
        images,
        method,
        target=target,
        layer=layer,
        preprocess=preprocess,
        batch_size=batch_size,
        params=params,
    )
    groups = (
        [[g] if isinstance(g, str) else list(g) for g in layers]
        if layers is not None
        else randomization_steps(model, inputs[:1])
    )
    if not groups:
        raise InvalidInput("layers: the model has no layer with weights to randomise")
    chosen = list(range(len(groups)))
    if steps is not None and steps < len(groups):
        chosen = sorted(set(np.linspace(0, len(groups) - 1, steps).round().astype(int).tolist()))
    resample = _resampler(seed)
    labels: list[str] = []
    scores: list[dict[str, np.ndarray]] = []
    maps: list[np.ndarray] = []
    copy = ops.copy_model(model) if cascading else None
    base_paper = paper_maps(base)  # compared with every step: made once
    done = 0
    for j in chosen:
        if cascading:
            ops.randomize_layers(copy, [n for g in groups[done : j + 1] for n in g], resample)
            done = j + 1
            current = copy
        else:
            current = ops.copy_model(model)
            ops.randomize_layers(current, groups[j], resample)
        ex = _explain_maps(
            current,
            inputs,
            method,
            layer=base.layer,
            targets=None if follow else base.targets,
            preprocess=spec.preprocess,
            batch_size=batch_size,
            params=params,
        )
        labels.append(groups[j][0])
        scores.append(_similarities(base, ex, base_paper))
        maps.append(ex.maps)
    return SanityResult(
        method=base.method,
        mode="cascading" if cascading else "independent",
        steps=tuple(labels),
        original=base.maps,
        randomized=np.stack(maps),
        images=base.images,
        targets=base.targets,
        params={
            "seed": seed,
            "layer": base.layer,
            "randomized_target": randomized_target,
            "framework": backend.framework,
            **{k: v for k, v in params.items() if isinstance(v, (int, float, str, bool))},
        },
        **_stack(scores),
    )


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
    """
    follow = _check_randomized_target(randomized_target)
    spec, inputs, base = _original(
        model,
        images,
        method,
        target=target,
        layer=layer,
        preprocess=preprocess,
        batch_size=batch_size,
        params=params,
    )
    other = retrain() if callable(retrain) and not _is_model(retrain) else retrain
    ex = _explain_maps(
        other,
        inputs,
        method,
        layer=base.layer,
        targets=None if follow else base.targets,
        preprocess=spec.preprocess,
        batch_size=batch_size,
        params=params,
    )
    return SanityResult(
        method=base.method,
        mode="data",
        steps=("shuffled labels",),
        original=base.maps,
        randomized=ex.maps[None],
        images=base.images,
        targets=base.targets,
        params={"layer": base.layer, "randomized_target": randomized_target},
        **_stack([_similarities(base, ex)]),
    )


def _is_model(obj: Any) -> bool:
    """A model object is callable too; tell it apart from a training function."""
    from ..backends import backend_for
    from ..errors import BackendError

    try:
        backend_for(obj)
    except BackendError:
        return False
    return True
