"""What a sanity check returns: the similarity of each step's maps to the original's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import InvalidInput
from .similarity import SANITY_MEASURES

__all__ = ["SanityResult"]


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

    Attributes
    ----------
    method : str
        The method checked.
    mode : str
        ``"cascading"``, ``"independent"`` or ``"data"`` (shuffled labels).
    steps : tuple of str
        What each step randomised, in order.
    spearman : numpy.ndarray
        (S, N) rank correlation of the maps as shown.
    ssim : numpy.ndarray
        (S, N) structural similarity of the maps as shown.
    original : numpy.ndarray
        (N, H, W) the original model's maps.
    randomized : numpy.ndarray
        (S, N, H, W) the maps after each step.
    images : numpy.ndarray
        (N, H, W, 3) uint8, the images explained.
    targets : numpy.ndarray
        (N,) the class explained per image (-1 when the target is not a class).
    params : Mapping
        The check's settings (seed, layer, randomized_target, the method's).
    spearman_abs : numpy.ndarray or None
        (S, N) the paper's rank correlation of absolute values.
    spearman_signed : numpy.ndarray or None
        (S, N) the paper's rank correlation of signed values.
    hog : numpy.ndarray or None
        (S, N) correlation of the maps' HOG features.
    """

    method: str
    mode: str  # "cascading", "independent" or "data"
    steps: tuple[str, ...]
    spearman: np.ndarray  # (S, N)
    ssim: np.ndarray  # (S, N)
    original: np.ndarray  # (N, H, W)
    randomized: np.ndarray  # (S, N, H, W)
    images: np.ndarray  # (N, H, W, 3) uint8
    targets: np.ndarray  # (N,) classes (-1: the target has none; params["target"] says what)
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
        """Curves and map strip for this method (see :func:`~seewhy.metrics.plot_sanity`)."""
        from .plots import plot_sanity

        return plot_sanity([self], image=image, max_columns=max_columns)
