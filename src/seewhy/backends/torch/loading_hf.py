"""A Hugging Face model folder (what ``save_pretrained`` writes), opened without running its code.

The class comes from ``config.json``'s ``architectures``, and only from
transformers itself: a folder that needs its own Python (``auto_map``,
``trust_remote_code``) is refused whatever the trust, because seewhy never
runs a model's code from a folder. Weights are read from safetensors files;
a ``pytorch_model.bin`` is a pickle, opened only with the trust flag (and
even then through torch's weights-only unpickler). Nothing is downloaded:
every read is ``local_files_only``. The folder's processor or tokenizer,
when it has one, is read the same way by :func:`load_text_side`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from ...errors import InvalidInput, UnsupportedModel, UntrustedModel
from ..common import one_line, require_module

__all__ = ["PICKLED_WEIGHTS", "load_hf_folder", "load_text_side", "read_config", "saved_text_side"]

#: Weight files that are pickles (torch.save), refused without the trust flag.
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
#: Files of weights transformers reads for other frameworks only.
_OTHER_WEIGHTS = ("tf_model.h5", "flax_model.msgpack")
#: The most a config.json may hold: a real one is a few kB, a large one a few hundred.
_CONFIG_BYTES = 4 << 20
#: Config entries that say the model sees pictures (its own, or a vision tower's).
_IMAGE_KEYS = ("vision_config", "image_size", "num_channels", "backbone_config")
#: Files that say a folder has a processor or a tokenizer of its own.
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "chat_template.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "spiece.model")

_TRUST_HINT = "Pass --trust-model (trust=True) only if you trust its author"


def load_hf_folder(folder: Path, *, weights: str | None = None, trust: bool = False) -> nn.Module:
    """The model a Hugging Face folder holds, its class named by its ``config.json``."""
    if weights:
        raise InvalidInput(
            f"weights: {folder.name} is a Hugging Face folder, which holds its own weights; "
            "leave --weights out"
        )
    config = read_config(folder)
    cls = _model_class(folder, config)
    use_safetensors = _weights_kind(folder, trust=trust)
    try:
        with _quiet_transformers():
            model: nn.Module = cls.from_pretrained(
                str(folder),
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=use_safetensors,
                weights_only=True,  # a trusted .bin still needs no more than tensors
            )
    except Exception as exc:  # OSError (files), ValueError/RuntimeError (shapes, dtypes)
        raise InvalidInput(
            f"model: transformers could not load {cls.__name__} from {folder.name} "
            f"({one_line(exc)})"
        ) from None
    return model.eval()


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` as a dict, or a one-line refusal: missing, too big, not a JSON object."""
    path = folder / "config.json"
    if not path.is_file():
        raise InvalidInput(
            f"model: the folder {folder.name} has no config.json; seewhy opens Hugging Face "
            "model folders (what save_pretrained writes) and model files"
        )
    if path.stat().st_size > _CONFIG_BYTES:
        raise InvalidInput(f"model: {folder.name}/config.json is over {_CONFIG_BYTES >> 20} MiB")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"model: {folder.name}/config.json is not readable JSON ({one_line(exc)})"
        ) from None
    if not isinstance(config, dict):
        raise InvalidInput(f"model: {folder.name}/config.json is not a JSON object")
    return config


def _model_class(folder: Path, config: dict[str, Any]) -> Any:
    """transformers' own class for ``architectures[0]``; never code from the folder."""
    transformers = require_module("transformers", "vlm")
    names = config.get("architectures")
    if not isinstance(names, list) or not names or not isinstance(names[0], str):
        raise InvalidInput(
            f"model: {folder.name}/config.json names no 'architectures'; save the model with "
            "save_pretrained, which records its class there"
        )
    name = names[0]
    cls = getattr(transformers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        if config.get("auto_map"):
            raise UntrustedModel(
                f"model: {folder.name} needs its own Python code ({name}, trust_remote_code), "
                "which seewhy never runs, trusted or not; use a model class transformers ships"
            )
        raise InvalidInput(
            f"model: transformers {transformers.__version__} has no model class {name!r} "
            f"(named in {folder.name}/config.json); a newer transformers may have it"
        )
    if not any(key in config for key in _IMAGE_KEYS):
        raise UnsupportedModel(
            f"model: {name} in {folder.name} does not see pictures (its config has no vision "
            "part); seewhy explains image models and vision-language models"
        )
    return cls


def _weights_kind(folder: Path, *, trust: bool) -> bool | None:
    """``use_safetensors`` for the folder's weights, or a one-line refusal."""
    names = {p.name for p in folder.iterdir()}
    if names & set(_SAFE_WEIGHTS):
        return True  # transformers then reads the safetensors and nothing else
    pickled = sorted(names & set(PICKLED_WEIGHTS)) or sorted(
        n for n in names if n.startswith("pytorch_model-") and n.endswith(".bin")
    )
    if pickled:
        if not trust:
            raise UntrustedModel(
                f"model: {folder.name} holds its weights as {pickled[0]}, a pickle, whose "
                f"loading can run code from the file. {_TRUST_HINT}, or save the model "
                "with save_pretrained(safe_serialization=True)"
            )
        return False
    other = sorted(names & set(_OTHER_WEIGHTS))
    found = f" (only {', '.join(other)}, for another framework)" if other else ""
    raise InvalidInput(
        f"model: the folder {folder.name} has no model.safetensors{found}; save the model "
        "with save_pretrained"
    )


def load_text_side(path: Path, *, kind: str = "auto") -> Any:
    """The processor (or, failing that, the tokenizer) saved in ``path``; None when it has none.

    ``kind`` is ``"processor"``, ``"tokenizer"`` or ``"auto"`` (a processor when
    the folder has one, else a tokenizer). Read with ``local_files_only`` and
    without remote code, like the model.
    """
    transformers = require_module("transformers", "vlm")
    said = "processor" if kind == "auto" else kind
    if not path.is_dir():
        raise InvalidInput(f"{said}: {path.name} is not a folder (name the folder it was saved in)")
    names = {p.name for p in path.iterdir()}
    has_processor = bool(names & set(_PROCESSOR_FILES))
    has_tokenizer = bool(names & set(_TOKENIZER_FILES))
    if kind == "auto" and not (has_processor or has_tokenizer):
        return None
    use_processor = kind == "processor" or (kind == "auto" and has_processor)
    loader = transformers.AutoProcessor if use_processor else transformers.AutoTokenizer
    try:
        with _quiet_transformers():
            return loader.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # OSError (files), ValueError (unknown or remote-code classes)
        what = "processor" if use_processor else "tokenizer"
        raise InvalidInput(
            f"{said}: transformers could not load a {what} from {path.name} ({one_line(exc)})"
        ) from None


def saved_text_side(folder: Path) -> dict[str, Any]:
    """``{"processor": ...}`` or ``{"tokenizer": ...}`` saved beside a vision-language model.

    Only for a folder whose config has a vision and a text part (an image
    classifier's processor is read by the hints, not passed around); ``{}``
    otherwise, or when the folder holds neither.
    """
    config = read_config(folder)
    if not ("vision_config" in config and "text_config" in config):
        return {}
    found = load_text_side(folder, kind="auto")
    if found is None:
        return {}
    transformers = require_module("transformers", "vlm")
    is_tokenizer = isinstance(found, transformers.PreTrainedTokenizerBase)
    return {"tokenizer" if is_tokenizer else "processor": found}


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' progress bars held back while it loads (a command line prints its own)."""
    hf_logging: Any = require_module("transformers.utils.logging", "vlm")
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()
