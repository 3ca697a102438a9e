"""Load a Keras model from a file or ``keras:NAME``, refusing files that run code.

* ``model.keras`` (Keras 3 archive): its ``config.json`` is read first and a
  ``Lambda`` layer (marshalled Python bytecode) is refused with
  :class:`~seewhy.errors.UntrustedModel` unless ``trust=True``; the file is
  then loaded with ``safe_mode=True`` (Keras refuses lambdas and non-Keras
  classes itself too).
* ``model.h5`` / ``.hdf5`` (legacy Keras 2 format): the stored config is read
  first; a ``Lambda`` layer there is refused the same way, and the load also
  runs under ``safe_mode``.
* Every loading error is one line (:func:`~seewhy.backends.common.one_line`).
* ``keras:NAME`` builds ``keras.applications.NAME`` (case-insensitive, e.g.
  ``keras:ResNet50``). Without ``weights`` the ImageNet weights are
  downloaded by Keras on first use (into ``~/.keras/models``, so online once);
  ``weights="path.weights.h5"`` loads a local file instead (offline use).
  The model gets a ``seewhy_spec`` with exactly what ``load_img(target_size)``
  and its family's ``preprocess_input`` make (:mod:`.applications`; the
  Caffe-style families, VGG and ResNet v1, are fed BGR).

Imports Keras only (never torch).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from ...errors import BackendError, InvalidInput, UntrustedModel
from ...preprocess import ModelSpec
from ..common import one_line
from .archive import check_archive, needs_trust, stored_config

__all__ = ["load_keras_model"]


def _keras() -> Any:
    try:
        import keras
    except ImportError as exc:
        raise BackendError(
            "keras is not installed; install it with: pip install 'seewhy[keras]'"
        ) from exc
    return keras


def load_keras_model(spec: str, *, weights: str | None = None, trust: bool = False) -> Any:
    """A Keras model from ``spec`` (a ``.keras``/``.h5`` file or ``keras:NAME``)."""
    if spec.startswith("keras:"):
        return _application(spec.split(":", 1)[1], weights)
    path = Path(spec)
    if not path.is_file():
        raise InvalidInput(f"model: no such Keras model file {spec!r}")
    if zipfile.is_zipfile(path):  # a .keras archive: its directory only (sizes, count, names)
        with zipfile.ZipFile(path) as archive:
            check_archive(path, archive)
    if not trust:
        risks = needs_trust(stored_config(path))
        if risks:
            raise _untrusted(path, risks)
    keras = _keras()
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=not trust)
    except Exception as exc:  # Keras raises many kinds, some with the whole config
        if not trust and ("safe_mode" in str(exc) or "unsafe_deserialization" in str(exc)):
            raise UntrustedModel(
                f"model: Keras' safe mode refused {path.name} ({one_line(exc)}); pass "
                "--trust-model (trust=True) only if you trust its author"
            ) from None
        raise InvalidInput(
            f"model: {path.name} is not a loadable Keras model ({one_line(exc)})"
        ) from None
    if weights is not None:
        _load_weights(model, weights)
    return model


def _untrusted(path: Path, risks: list[str]) -> UntrustedModel:
    """The refusal naming what was found (the first two, and how many more)."""
    more = f" (and {len(risks) - 2} more)" if len(risks) > 2 else ""
    return UntrustedModel(
        f"model: {path.name} holds {' and '.join(risks[:2])}{more}; pass --trust-model "
        "(trust=True) only if you trust its author"
    )


def _load_weights(model: Any, weights: str) -> None:
    if not Path(weights).is_file():
        raise InvalidInput(f"weights: no such file {weights!r}")
    try:
        model.load_weights(weights)
    except Exception as exc:  # h5py, zipfile and Keras errors alike
        raise InvalidInput(
            f"weights: {weights!r} does not fit the model ({one_line(exc)})"
        ) from None


def _application(name: str, weights: str | None) -> Any:
    keras = _keras()
    apps = {n.lower(): n for n in dir(keras.applications) if n[:1].isupper()}
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in apps:
        import difflib

        close = difflib.get_close_matches(key, list(apps), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(apps[c] for c in close)}? " if close else ""
        raise InvalidInput(f"model: keras.applications has no model {name!r}; {hint}".rstrip())
    if weights is not None and not Path(weights).is_file():
        raise InvalidInput(f"weights: no such file {weights!r}")
    build = getattr(keras.applications, apps[key])
    try:
        model = build(weights=weights if weights is not None else "imagenet")
    except OSError as exc:  # no network for the ImageNet download
        if weights is not None:
            raise InvalidInput(
                f"weights: {weights!r} does not fit {apps[key]} ({one_line(exc)})"
            ) from None
        raise BackendError(
            f"model: could not download the ImageNet weights of {apps[key]} ({one_line(exc)}); "
            "pass a local file with --weights"
        ) from None
    except Exception as exc:
        raise InvalidInput(
            f"weights: {weights!r} does not fit {apps[key]} ({one_line(exc)})"
        ) from None
    from .hints import model_hints  # imports Keras, as building the model did

    hints = model_hints(model)
    if hints.preprocess is not None:  # None: a family seewhy does not know, guessed (warned)
        model.seewhy_spec = ModelSpec(
            name=f"keras:{apps[key]}",
            preprocess=hints.preprocess,
            labels=_imagenet_labels() if model.output_shape[-1] == 1000 else None,
            source=hints.source,
        )
    return model


def _imagenet_labels() -> tuple[str, ...] | None:
    from ...zoo import imagenet_labels

    return imagenet_labels()
