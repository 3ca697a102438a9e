"""Faithfulness: does the model's score follow what the map calls important?

* :mod:`.curves`: deletion and insertion (Petsiuk et al., RISE, 2018);
* :mod:`.confidence`: Average Drop and Increase in Confidence
  (Chattopadhyay et al., Grad-CAM++, 2018);
* :mod:`.road`: ROAD (Rong et al., 2022) and its noisy linear imputation;
* :mod:`.cases`: what every metric first resolves (model, maps, inputs,
  targets) and the check that rebuilt inputs reproduce the explanation.

Every perturbed input of a call is built in numpy and sent to the backend in
large batches (``backend.predict``), so the cost is the forward passes and
little more. Nothing here imports a framework.

All perturbations act on the model's inputs (normalised, NHWC), with the
fills of ``seewhy._kit.fills`` (one meaning for methods and metrics). Because
the usual preprocessing is an affine map per channel, a blur or a mix there
equals the same operation on the picture; ``"zeros"`` means the zero *input*,
which for mean/std normalisation is the data set's mean colour (RISE's
choice), and ``"black"`` is the black picture pushed through the model's
preprocessing.
"""

from __future__ import annotations

from .confidence import ConfidenceChange, average_drop, increase_in_confidence
from .curves import Curve, deletion, insertion
from .road import RoadResult, noisy_linear_impute, road

__all__ = [
    "ConfidenceChange",
    "Curve",
    "RoadResult",
    "average_drop",
    "deletion",
    "increase_in_confidence",
    "insertion",
    "noisy_linear_impute",
    "road",
]
