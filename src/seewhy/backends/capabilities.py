"""What a backend can do, as small protocols mypy checks.

A backend declares each capability it has by inheriting its protocol (so
mypy checks the signatures); a method declares the capabilities it needs in
``Method.requires``. :func:`seewhy.backends.requirements.require` compares
the two before any image is read and refuses in one line naming what is
missing and what works instead. Callers outside ``backends/`` never probe a
backend with ``getattr``: they ask ``isinstance(backend, Heads)`` or take it
through :func:`seewhy.backends.requirements.need_layers` and its siblings,
which refuse the same way.

Each capability, and what needs it:

- ``Predicts``: everything; alone: occlusion, RISE, LIME, Kernel SHAP, the
  faithfulness metrics (every backend has it: see :data:`Backend`)
- ``Hints``: reading the model's input size, channels, labels (optional)
- ``Layers``: the CAM family, Score-CAM, Ablation-CAM, Guided Grad-CAM,
  ``seewhy.layers``, ``layout=``
- ``Gradients``: Grad-CAM and its variants, the pixel-gradient methods,
  generic attention
- ``Attention``: attention rollout, generic attention
- ``Relevance``: layer-wise relevance propagation (LRP; :mod:`.relevance`)
- ``Heads``: ``output=``, ``head=``, targets other than classes, detectors
- ``Weights``: the model-randomisation sanity check
- ``Devices``: the audit (a device of its own, Ray workers)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    Protocol,
    Self,
    TypeVar,
    runtime_checkable,
)

import numpy as np

from .._kit.scores import Score
from .base import AttentionCapture, BlockFusion, Capture, Framework, LayerInfo, Precision
from .heads import Head
from .hints import ModelHints
from .layouts import LayoutChoice
from .readout import LayerReadout  # LeGrad's capability, in its own module (re-exported)
from .relevance import Relevance  # LRP's capability, in its own module (re-exported)

if TYPE_CHECKING:
    pass

__all__ = [
    "Attention",
    "Backend",
    "Devices",
    "Gradients",
    "Heads",
    "Hints",
    "LayerReadout",
    "Layers",
    "Predicts",
    "Relevance",
    "Weights",
]


@runtime_checkable
class Predicts(Protocol):
    """The model's scores for a batch: every backend has them."""

    framework: Framework
    channels_first: bool  # layout the model itself expects (for reading user tensors)
    model: Any  # the model this backend runs; never changed by it

    def predict(
        self, x: np.ndarray, *, batch_size: int | None = None, precision: Precision = "float32"
    ) -> np.ndarray:
        """Logits (N, K) float32 for inputs ``x`` (NHWC), without gradients.

        ``precision`` other than float32 runs the forward passes in reduced
        precision where the backend can (PyTorch autocast) and raises
        :class:`~seewhy.errors.InvalidInput` where it cannot.

        Parameters
        ----------
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.
        batch_size : int, optional
            Images per forward pass; None: :meth:`preferred_batch_size`.
        precision : str
            ``"float32"``, ``"bfloat16"`` or ``"float16"``.

        Returns
        -------
        numpy.ndarray
            (N, K) float32 logits.
        """
        ...

    def preferred_batch_size(self, x: np.ndarray, precision: Precision = "float32") -> int:
        """Images per forward-only pass that this backend runs fastest, for inputs like ``x``.

        Parameters
        ----------
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.
        precision : str
            The precision the passes will run in.

        Returns
        -------
        int
            At least 1.
        """
        ...


#: Any backend: one that predicts. What more it does, its other capabilities say.
Backend = Predicts
B = TypeVar("B", bound=Backend)


@runtime_checkable
class Hints(Protocol):
    """What the model says about its own input (size, channels, value range, labels)."""

    def hints(self, *, try_sizes: bool = True) -> ModelHints:
        """The model's hints, with where each one was read.

        Parameters
        ----------
        try_sizes : bool
            Whether the backend may run the model on test inputs to find the
            sizes it accepts; False only reads what the model declares.

        Returns
        -------
        ModelHints
            What the model says (None for what it does not say).
        """
        ...


@runtime_checkable
class Layers(Protocol):
    """The model's insides: its layers listed, chosen, read and edited.

    ``capture(..., gradients=True)`` is asked only of a backend that also has
    :class:`Gradients`.
    """

    def layers(self, x: np.ndarray) -> list[LayerInfo]:
        """Layers with 4-D outputs in the order they finish, for input like ``x``.

        Parameters
        ----------
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.

        Returns
        -------
        list of LayerInfo
            Each layer's name, class and output shape.
        """
        ...

    def resolve_layer(self, layer: str | None, x: np.ndarray) -> str:
        """Check a layer name, or pick the default layer when None.

        Parameters
        ----------
        layer : str or None
            A layer's name as :meth:`layers` lists it; None: the default
            (:func:`~seewhy.backends.base.select_default_layer`).
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.

        Returns
        -------
        str
            The layer's name.

        Raises
        ------
        LayerNotFound
            No such layer; the message names the nearest ones.
        """
        ...

    def capture(
        self,
        x: np.ndarray,
        *,
        layer: str,
        targets: np.ndarray | None,
        gradients: bool,
        score: Score = "logit",
    ) -> Capture:
        """One pass: logits, the layer's activations (N, C, h, w) and, if asked, their gradients.

        ``targets=None`` means each image's top-1 class.

        Parameters
        ----------
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.
        layer : str
            The layer read, as :meth:`resolve_layer` returned it.
        targets : numpy.ndarray or None
            (N,) the class scored per image; None: each image's top-1 class.
        gradients : bool
            Whether to compute the gradients of the target score at the layer.
        score : str
            ``"logit"`` or ``"probability"``: what the gradients are of.

        Returns
        -------
        Capture
            Logits, activations and (or None) gradients.
        """
        ...

    def final_linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Weights (K, C) and bias (K,) of the model's last dense layer, if it has one.

        Returns
        -------
        tuple of (numpy.ndarray, numpy.ndarray) or None
            The weights and bias; None for a model without a final dense layer.
        """
        ...

    def predict_with_layer_edit(
        self,
        x: np.ndarray,
        *,
        layer: str,
        scales: np.ndarray,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Logits (N, E, K): each image run E times with the layer's output edited.

        Run ``e`` of image ``i`` multiplies channel ``c`` of ``layer``'s output by
        ``scales[i, e, c]`` (``scales`` may be (E, C) for all images); channels are
        those of ``capture()``'s activations. No gradients; the model is unchanged.

        Parameters
        ----------
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.
        layer : str
            The layer edited.
        scales : numpy.ndarray
            (N, E, C) or (E, C) factors per run and channel.
        batch_size : int, optional
            Runs per forward pass; None lets the backend choose.

        Returns
        -------
        numpy.ndarray
            (N, E, K) float32 logits.
        """
        ...

    def with_layout(self, choice: LayoutChoice) -> Self:
        """A view of this backend reading layer outputs in the user's layout; model shared.

        Parameters
        ----------
        choice : LayoutChoice
            The layout, as :func:`~seewhy.backends.layouts.parse_layout` read it.

        Returns
        -------
        Self
            A backend of the same kind over the same model.
        """
        ...


@runtime_checkable
class Gradients(Protocol):
    """Gradients of the target score: with respect to the input, and to a layer in ``capture``."""

    def input_gradients(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        score: Score = "logit",
        guided: bool = False,
    ) -> Capture:
        """Gradients of the target score with respect to the input (NHWC).

        ``guided=True`` applies the Guided Backprop rule at every ReLU.

        Parameters
        ----------
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.
        targets : numpy.ndarray or None
            (N,) the class scored per image; None: each image's top-1 class.
        score : str
            ``"logit"`` or ``"probability"``: what the gradients are of.
        guided : bool
            Apply the Guided Backprop rule.

        Returns
        -------
        Capture
            Logits, and the input gradients (N, H, W, C) as its gradients.
        """
        ...


@runtime_checkable
class Attention(Protocol):
    """A transformer's attention, each block's heads fused in the backend's framework."""

    def attention(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        gradients: bool,
        fuse: BlockFusion,
        score: Score = "logit",
    ) -> AttentionCapture:
        """One pass: every block's attention (and d(score)/d(attention) when
        ``gradients``) reduced by ``fuse``, whatever kernel computes it; the model
        is never changed.

        Parameters
        ----------
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.
        targets : numpy.ndarray or None
            (N,) the class scored per image; None: each image's top-1 class.
        gradients : bool
            Whether ``fuse`` is given the gradients of the target score too.
        fuse : BlockFusion
            Reduces one block's (N, heads, T, T) attention, and its gradients,
            to (N, T, T) in the backend's framework.
        score : str
            ``"logit"`` or ``"probability"``: what the gradients are of.

        Returns
        -------
        AttentionCapture
            The logits and each block's fused (N, T, T) matrix.
        """
        ...


@runtime_checkable
class Heads(Protocol):
    """Scoring more than class logits: another output, a sigmoid head, target columns."""

    def with_head(self, head: Head) -> Self:
        """This backend scoring ``head`` (see :mod:`seewhy._target_plan`); model shared.

        Parameters
        ----------
        head : Head
            The output and the columns of it to score.

        Returns
        -------
        Self
            A view of this backend whose logits are ``head``'s scores.
        """
        ...

    def sigmoid_output(self, x: np.ndarray) -> bool:
        """Whether the scored output's class scores are sigmoids (or one logit).

        Parameters
        ----------
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.

        Returns
        -------
        bool
            True when the labels are independent, so a probability is a sigmoid.
        """
        ...

    def detections(self, x: np.ndarray) -> list[dict[str, np.ndarray]] | None:
        """A detector's boxes, labels and scores per image; None (no pass) for other models.

        Parameters
        ----------
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.

        Returns
        -------
        list of dict or None
            Per image ``{"boxes": (D, 4), "labels": (D,), "scores": (D,)}``;
            None when the model is not a detector.
        """
        ...


@runtime_checkable
class Weights(Protocol):
    """The model's weights: listed, copied and re-drawn (the sanity checks)."""

    def parameter_layers(self, x: np.ndarray | None = None) -> list[tuple[str, str]]:
        """(name, class name) of each layer holding weights itself, in forward order.

        With model inputs ``x`` (NHWC; one image is enough) the order is the
        order the layers run in, where the framework can tell.

        Parameters
        ----------
        x : numpy.ndarray, optional
            Model inputs; None lists the layers in the order the model declares them.

        Returns
        -------
        list of tuple of (str, str)
            Each layer's name and class name.
        """
        ...

    def copy_model(self) -> Any:
        """An independent deep copy of the model (weights, flags, attributes such as the spec).

        Returns
        -------
        object
            The copy; re-drawing its weights leaves the user's model as it is.
        """
        ...

    def randomize_layers(
        self, names: Sequence[str], resample: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        """Replace every weight of the named layers by ``resample(values)``, in place.

        Only ever called on a backend over a :meth:`copy_model` copy.

        Parameters
        ----------
        names : sequence of str
            Layers as :meth:`parameter_layers` names them.
        resample : callable
            Takes a weight's values and returns new ones of the same shape.
        """
        ...


@runtime_checkable
class Devices(Protocol):
    """The model moved to a device or packed for another process (the audit)."""

    def place(self, device: str | None) -> Any:
        """The model on ``device`` (``"cpu"``, ``"cuda:1"``); None, or a framework that
        places itself, returns the model as it is.

        Parameters
        ----------
        device : str or None
            The device, in the framework's words.

        Returns
        -------
        object
            The model there.
        """
        ...

    def pack(self, pickle_module: Any) -> Any:
        """A picklable form of the model for another process (see ``backends.unpack_model``).

        Parameters
        ----------
        pickle_module : module
            The pickling module that will send it (the audit: ``ray.cloudpickle``).

        Returns
        -------
        object
            What ``unpack_model`` turns back into the model.
        """
        ...
