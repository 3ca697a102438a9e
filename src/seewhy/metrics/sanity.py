"""Sanity checks for saliency maps (Adebayo et al., 2018).

An explanation that does not change when the model's weights are replaced by
random ones cannot be explaining what the model learnt. Two tests:

* model-parameter randomisation, *cascading* from the top layer down (or one
  layer at a time, *independent*): explain with the original model and with
  copies whose top layers were re-drawn, and compare the maps;
* data randomisation: compare with a model trained on shuffled labels (the
  user gives a callable that trains one).

Similarity is Spearman rank correlation and SSIM between the original and the
randomised maps, per image and step. Grad-CAM and plain gradients should fall
towards 0; Guided Backprop is known to stay similar (the paper's finding).

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
    "SanityResult",
    "data_randomization_check",
    "plot_sanity",
    "randomization_steps",
    "sanity_check",
    "spearman",
    "ssim",
]


# --------------------------------------------------------------------------- similarity


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (ties get average ranks).

    A constant map has no ranking, so its correlation with anything is 0.
    """
    from scipy.stats import rankdata

    x = rankdata(np.asarray(a, dtype=np.float64).ravel())
    y = rankdata(np.asarray(b, dtype=np.float64).ravel())
    x -= x.mean()
    y -= y.mean()
    denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom > 0 else 0.0


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


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class SanityResult:
    """Similarity of the original maps to the maps after each randomisation step.

    ``steps[j]`` names what step ``j`` randomised (cascading: that layer and
    everything above it). ``spearman`` and ``ssim`` are (steps, images).
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

    @property
    def mean_spearman(self) -> np.ndarray:
        """(S,) mean over images, one value per step."""
        out: np.ndarray = self.spearman.mean(axis=1)
        return out

    @property
    def mean_ssim(self) -> np.ndarray:
        """(S,) mean over images, one value per step."""
        out: np.ndarray = self.ssim.mean(axis=1)
        return out

    @property
    def final_spearman(self) -> float:
        """Mean rank correlation after the last (most randomised) step."""
        return float(self.mean_spearman[-1])

    @property
    def final_ssim(self) -> float:
        """Mean SSIM after the last (most randomised) step."""
        return float(self.mean_ssim[-1])

    def passes(self, threshold: float = 0.5) -> bool:
        """True when the maps changed: final mean Spearman below ``threshold``.

        Passing means the explanation depends on the weights, as it should.
        """
        return self.final_spearman < threshold

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers per step."""
        return {
            "method": self.method,
            "mode": self.mode,
            "steps": [
                {
                    "randomized": label,
                    "spearman": round(float(self.mean_spearman[j]), 6),
                    "ssim": round(float(self.mean_ssim[j]), 6),
                    "spearman_per_image": [round(float(v), 6) for v in self.spearman[j]],
                    "ssim_per_image": [round(float(v), 6) for v in self.ssim[j]],
                }
                for j, label in enumerate(self.steps)
            ],
            "final_spearman": round(self.final_spearman, 6),
            "final_ssim": round(self.final_ssim, 6),
            "passes": self.passes(),
            "targets": [int(t) for t in self.targets],
            "params": dict(self.params),
        }

    def figure(self, *, image: int = 0, max_columns: int = 8) -> Any:
        """Curves and map strip for this method (see :func:`plot_sanity`)."""
        return plot_sanity([self], image=image, max_columns=max_columns)


def plot_sanity(
    results: SanityResult | Sequence[SanityResult],
    *,
    image: int = 0,
    max_columns: int = 8,
) -> Any:
    """A matplotlib Figure in the paper's style.

    Top: mean Spearman (solid) and SSIM (dashed) per step, one colour per
    method. Below: for each method, image ``image``'s original map followed by
    its maps after (up to ``max_columns``) randomisation steps. Built on
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
    fig = Figure(figsize=(max(6.0, 1.5 * columns), 3.2 + 1.6 * len(items)), layout="constrained")
    grid = fig.add_gridspec(1 + len(items), columns, height_ratios=[2.0] + [1.0] * len(items))
    ax = fig.add_subplot(grid[0, :])
    xs = np.arange(steps)
    for k, res in enumerate(items):
        colour = f"C{k % 10}"
        ax.plot(
            xs, res.mean_spearman, "-o", color=colour, label=f"{res.method} Spearman", markersize=3
        )
        ax.plot(xs, res.mean_ssim, "--", color=colour, label=f"{res.method} SSIM")
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    ax.set_ylim(-0.3, 1.05)
    ax.set_xticks(xs)
    ax.set_xticklabels(items[0].steps, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("similarity to original map")
    what = {
        "cascading": "cascading randomisation (top layer first)",
        "independent": "independent layer randomisation",
        "data": "data randomisation",
    }.get(items[0].mode, items[0].mode)
    ax.set_title(f"Sanity check: {what}")
    ax.legend(fontsize=7, ncol=2, loc="best")
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


def _similarities(original: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rho = np.array([spearman(a, b) for a, b in zip(original, other, strict=True)])
    sim = np.array([ssim(a, b) for a, b in zip(original, other, strict=True)])
    return rho, sim


def _prepare(model: Any, images: Any, preprocess: Preprocess | None) -> tuple[Any, np.ndarray]:
    from ..api import model_spec
    from ..backends import backend_for
    from ..io import prepare

    backend = backend_for(model)
    spec = model_spec(model, preprocess=preprocess)
    batch, _ = prepare(images, spec.preprocess, channels_first=backend.channels_first, strict=True)
    return spec, batch.inputs


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
    randomises its layers alone. Targets are fixed to the original model's,
    so every copy explains the same class. ``params`` go to the method.
    """
    from ..backends import backend_for

    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise InvalidInput(f"steps: expected a positive integer or None, got {steps!r}")
    spec, inputs = _prepare(model, images, preprocess)
    backend = backend_for(model)
    ops = _ops(backend.framework)
    base = _explain_maps(
        model,
        inputs,
        method,
        layer=layer,
        targets=target,
        preprocess=spec.preprocess,
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
    rhos: list[np.ndarray] = []
    sims: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    copy = ops.copy_model(model) if cascading else None
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
            targets=base.targets,
            preprocess=spec.preprocess,
            batch_size=batch_size,
            params=params,
        )
        rho, sim = _similarities(base.maps, ex.maps)
        labels.append(groups[j][0])
        rhos.append(rho)
        sims.append(sim)
        maps.append(ex.maps)
    return SanityResult(
        method=base.method,
        mode="cascading" if cascading else "independent",
        steps=tuple(labels),
        spearman=np.stack(rhos),
        ssim=np.stack(sims),
        original=base.maps,
        randomized=np.stack(maps),
        images=base.images,
        targets=base.targets,
        params={
            "seed": seed,
            "layer": base.layer,
            "framework": backend.framework,
            **{k: v for k, v in params.items() if isinstance(v, (int, float, str, bool))},
        },
    )


def data_randomization_check(
    model: Any,
    images: Any,
    retrain: Callable[[], Any] | Any,
    method: str = "gradcam",
    *,
    target: Any = None,
    layer: str | None = None,
    preprocess: Preprocess | None = None,
    batch_size: int = 16,
    **params: Any,
) -> SanityResult:
    """Data randomisation test: compare with a model trained on shuffled labels.

    ``retrain`` is a callable that trains and returns such a model (or the
    model itself). Its maps for the original model's targets should look
    nothing like the original maps if the method explains what was learnt.
    """
    spec, inputs = _prepare(model, images, preprocess)
    base = _explain_maps(
        model,
        inputs,
        method,
        layer=layer,
        targets=target,
        preprocess=spec.preprocess,
        batch_size=batch_size,
        params=params,
    )
    other = retrain() if callable(retrain) and not _is_model(retrain) else retrain
    ex = _explain_maps(
        other,
        inputs,
        method,
        layer=base.layer,
        targets=base.targets,
        preprocess=spec.preprocess,
        batch_size=batch_size,
        params=params,
    )
    rho, sim = _similarities(base.maps, ex.maps)
    return SanityResult(
        method=base.method,
        mode="data",
        steps=("shuffled labels",),
        spearman=rho[None],
        ssim=sim[None],
        original=base.maps,
        randomized=ex.maps[None],
        images=base.images,
        targets=base.targets,
        params={"layer": base.layer},
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
