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

:mod:`.similarity` holds the measures, :mod:`.cascade` the randomisation and
the checks, :mod:`.result` what they return, :mod:`.plots` the figure.
Randomisation works on copies the model's backend makes
(``Backend.copy_model``, ``Backend.randomize_layers``); the user's model is
never touched.
"""

from __future__ import annotations

from .cascade import data_randomization_check, randomization_steps, sanity_check
from .plots import plot_sanity
from .result import SanityResult
from .similarity import SANITY_MEASURES, hog_features, hog_similarity, paper_maps, spearman, ssim

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
