"""PyTorch models from names and files: torchvision, timm, TorchScript, .pt2, pickles.

open_clip names (:mod:`.loading_open_clip`) and Hugging Face model folders
(:mod:`.loading_hf`) have modules of their own, reached from here.

Safe by default. Without the trust flag a file is opened only where nothing
in it can run: ``--weights`` files and the weights-only probe of a model file
go through torch's weights-only unpickler (an allow-list of tensor types);
torch never reads a .pt2 archive itself but a copy made from its checked
members, whose pickles torch wrote (:mod:`.archives`). A pickled model
object, a .pt2 archive with a member that is more than weights or a name
torch's zip reader could mistake, and any TorchScript archive (its code can
write files) are refused unless the caller trusts the file. Every error is
one line, torch's own log of a failed load included.
"""

from __future__ import annotations

import importlib
import logging
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from ...errors import BackendError, InvalidInput, UntrustedModel
from ...preprocess import IMAGENET, ModelSpec, Preprocess
from ..common import one_line, require_module
from .archives import NotAnExportArchive, RefusedMember, copy_for_torch
from .hints import model_hints
from .state_dicts import load_state_dict

__all__ = ["load_torch_model"]

_TRUST_HINT = "Pass --trust-model (trust=True) only if you trust its author"
# What zipfile raises for a damaged or unusual archive (CRC, compression, encryption, names).
_UNREADABLE_ZIP = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError)
_UNREADABLE_NAMES = (UnicodeDecodeError,)  # a name flagged UTF-8 that is not


def load_torch_model(spec: str, *, weights: str | None = None, trust: bool = False) -> nn.Module:
    """``torchvision:NAME``, ``timm:NAME``, ``open_clip:NAME[:TAG]`` (optionally with a
    state-dict file), a Hugging Face model folder, or a model file."""
    if spec.startswith("torchvision:"):
        return _torchvision(spec.split(":", 1)[1], weights)
    if spec.startswith("timm:"):
        return _timm(spec.split(":", 1)[1], weights)
    if spec.startswith("open_clip:"):
        from .loading_open_clip import load_open_clip

        return load_open_clip(spec.split(":", 1)[1], weights=weights)
    if Path(spec).is_dir():
        from .loading_hf import load_hf_folder

        return load_hf_folder(Path(spec), weights=weights, trust=trust)
    return _torch_file(Path(spec), trust=trust)


def _imagenet_spec(name: str, classes: int, preprocess: Preprocess) -> ModelSpec:
    from ...zoo import imagenet_labels

    labels = imagenet_labels() if classes == 1000 else None
    return ModelSpec(name=name, preprocess=preprocess, labels=labels, source=name)


def _torchvision(name: str, weights: str | None) -> Any:
    tv = require_module("torchvision", "torch")
    try:
        model: Any = tv.models.get_model(name, weights=None if weights else "DEFAULT")
    except ValueError:
        raise InvalidInput(f"model: torchvision has no model {name!r}") from None
    except OSError as exc:  # no network for the pretrained weights
        raise BackendError(
            f"model: could not download the weights of torchvision:{name} ({one_line(exc)}); "
            "pass a local file with --weights"
        ) from None
    if weights:
        load_state_dict(model, weights)
    model.eval()
    model.seewhy_spec = _torchvision_spec(tv, name, model)
    return model


def _torchvision_spec(tv: Any, name: str, model: nn.Module) -> ModelSpec:
    """The default weights' own ``transforms()`` and ``meta["categories"]`` (no download)."""
    try:
        default = tv.models.get_model_weights(name).DEFAULT
        pre = Preprocess.from_torchvision(default.transforms())
        categories = default.meta.get("categories")
    except (ValueError, KeyError, AttributeError, TypeError):  # a builder without weights
        return _imagenet_spec(f"torchvision:{name}", 1000, Preprocess(resize=256))
    labels = tuple(categories) if categories else None
    return ModelSpec(f"torchvision:{name}", pre, labels, source="torchvision weights")


def _timm(name: str, weights: str | None) -> Any:
    timm = require_module("timm", "timm")
    try:
        model: Any = timm.create_model(name, pretrained=weights is None)
    except (RuntimeError, OSError) as exc:
        raise InvalidInput(f"model: timm could not create {name!r}: {one_line(exc)}") from None
    if weights:
        load_state_dict(model, weights)
    model.eval()
    hints = model_hints(model, torch.device("cpu"), torch.float32)
    pre = hints.preprocess or IMAGENET
    model.seewhy_spec = ModelSpec(f"timm:{name}", pre, hints.labels, source=hints.source)
    return model


def _torch_file(path: Path, *, trust: bool) -> nn.Module:
    if not path.is_file():
        raise InvalidInput(f"model: no such file or bundled model {str(path)!r}")
    if path.suffix.lower() == ".pt2":
        return _exported(path, trust=trust)
    if _is_torchscript(path):
        return _torchscript(path, trust=trust)
    if not _looks_like_torch_save(path):
        raise InvalidInput(
            f"model: {path.name} is not a model file seewhy knows (neither a torch.save zip or "
            "pickle, nor a .keras/.h5 file); seewhy opens torchvision:/timm:/keras: names, "
            ".pt2 (torch.export), TorchScript and pickled nn.Module files, .keras/.h5 and .onnx"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        obj = None
        if not trust:
            raise UntrustedModel(
                f"model: {path.name} is a pickled model object; loading it can run code from "
                f"the file. {_TRUST_HINT}"
            ) from None
    if obj is not None:
        raise InvalidInput(
            f"model: {path.name} holds weights only; pass the architecture with --model "
            "(e.g. torchvision:resnet50) and this file with --weights"
        )
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InvalidInput(
            f"model: {path.name} is not a loadable model ({one_line(exc)})"
        ) from None
    if not isinstance(model, nn.Module):
        raise InvalidInput(f"model: {path.name} holds a {type(model).__name__}, not a model")
    return model


def _looks_like_torch_save(path: Path) -> bool:
    """Whether the file starts as ``torch.save`` writes: a zip archive or a pickle opcode.

    Read, never run: only the first opcode is parsed (:mod:`pickletools`), so an
    ONNX graph or a text file is named for what it is, not called a pickle.
    """
    import pickletools

    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError:
        return False
    if head[:2] == b"PK":
        return True
    try:
        next(pickletools.genops(head))
    except (ValueError, StopIteration):
        return False
    return True


def _is_torchscript(path: Path) -> bool:
    """Whether the file is a TorchScript archive (a zip with ``constants.pkl``), by content."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("constants.pkl") for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _torchscript(path: Path, *, trust: bool) -> nn.Module:
    """A TorchScript module, only from a trusted file.

    TorchScript is code: ``torch.jit.load`` runs the archive's ``__setstate__``
    methods, and any method may call ``torch.save`` or ``torch.from_file``,
    which write and read any file the user can (a shell profile written is
    code run later). No check of the archive can tell those apart from a
    model's own ops, so the file needs the trust flag.
    """
    if not trust:
        raise UntrustedModel(
            f"model: {path.name} is a TorchScript archive, whose code can write and read "
            f"files when it is loaded or run. {_TRUST_HINT}"
        )
    try:
        scripted: nn.Module = torch.jit.load(  # type: ignore[no-untyped-call]
            str(path), map_location="cpu"
        )
    except Exception as exc:
        raise InvalidInput(
            f"model: {path.name} is not a loadable TorchScript archive ({one_line(exc)})"
        ) from None
    return scripted


def _exported(path: Path, *, trust: bool) -> nn.Module:
    """The module of a ``torch.export`` archive; untrusted, torch reads only a checked copy."""
    if trust:
        return _export_load(str(path), path.name)
    with tempfile.TemporaryFile(prefix="seewhy-", suffix=".pt2") as copy:
        try:
            with zipfile.ZipFile(path) as archive:
                copy_for_torch(archive, copy)
        except RefusedMember as refused:
            raise UntrustedModel(
                f"model: {path.name}: member {refused.member!r} {refused.why}; loading it "
                f"could run code from the file. {_TRUST_HINT}"
            ) from None
        except (NotAnExportArchive, *_UNREADABLE_ZIP, *_UNREADABLE_NAMES) as exc:
            raise InvalidInput(
                f"model: {path.name} is not a torch.export archive ({one_line(exc)})"
            ) from None
        copy.seek(0)
        return _export_load(copy, path.name)


def _export_load(source: str | IO[bytes], name: str) -> nn.Module:
    """``torch.export.load(source).module()``, a failure in one line instead of torch's log.

    When the load fails torch logs its first error with a traceback (~20 lines)
    and raises one that says only "check the warnings above"; the logged error
    is the one that names the problem.
    """
    with _held_torch_logs() as held:
        try:
            return torch.export.load(source).module()
        except Exception as exc:
            cause = next((r.exc_info[1] for r in held if r.exc_info and r.exc_info[1]), exc)
            held.clear()  # said in the one line below
            raise InvalidInput(
                f"model: {name} is not a torch.export archive torch can load ({one_line(cause)})"
            ) from None


@contextmanager
def _held_torch_logs() -> Iterator[list[logging.LogRecord]]:
    """Torch's log records from this thread, held back until the block ends.

    The caller may drop them (a failure it says in one line); the rest are
    then logged, less those with a traceback: attempts torch recovered from,
    such as its reader of the current layout failing on the old one. Another
    thread's records pass as ever.
    """
    try:  # torch.export.load imports it (and its logger) only when called
        importlib.import_module("torch.export.pt2_archive._package")
    except ImportError:
        pass
    held: list[logging.LogRecord] = []
    thread = threading.get_ident()

    def hold(record: logging.LogRecord) -> bool:
        if record.thread != thread:
            return True
        held.append(record)
        return False

    loggers = [
        logger
        for name, logger in list(logging.Logger.manager.loggerDict.items())
        if (name == "torch" or name.startswith("torch.")) and isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        logger.addFilter(hold)
    try:
        yield held
    finally:
        for logger in loggers:
            logger.removeFilter(hold)
        for record in held:
            if not record.exc_info:
                logging.getLogger(record.name).handle(record)
