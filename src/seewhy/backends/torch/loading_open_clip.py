"""``open_clip:NAME[:PRETRAINED]``: an open_clip dual encoder, with the weights the user named.

A CLIP with random weights draws maps that look like maps and mean nothing,
so a bare name is refused. The weights come from one of three places, each
asked for by name: a pretrained tag from open_clip's own table (open_clip
downloads it, or reads its cache; never a path, so the tag cannot smuggle
in a file), a local file given as ``weights`` (torch's weights-only rules,
or safetensors), or the tag ``random`` (to list layers or to test, never to
explain a picture).
"""

from __future__ import annotations

import difflib
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from torch import nn

from ...errors import BackendError, InvalidInput
from ..common import one_line, require_module
from .state_dicts import load_state_dict

__all__ = ["RANDOM", "load_open_clip", "open_clip_tokenizer"]

#: The tag that asks for the architecture with random weights, on purpose.
RANDOM = "random"

#: What a failed download raises: no network (URLError is an OSError), the hub's
#: offline and not-found errors (ValueError, OSError subclasses), open_clip's
#: checksum and "not found" RuntimeErrors.
_DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError)

#: How long the look at the download host may take before seewhy says it is offline.
_PROBE_SECONDS = 5.0


def load_open_clip(rest: str, *, weights: str | None) -> nn.Module:
    """The model ``open_clip:<rest>`` names, ``rest`` being ``NAME[:PRETRAINED]``."""
    open_clip = require_module("open_clip", "vlm")
    name, _, tag = (part.strip() for part in rest.partition(":"))
    name = name.replace("/", "-")  # open_clip's own spelling of the old "ViT-B/32" names
    _check_name(open_clip, name)
    source = f"open_clip:{name}"
    if tag and weights:
        raise InvalidInput(
            f"model: {source}:{tag} names its weights twice; drop :{tag} to use --weights "
            f"{weights}, or drop --weights"
        )
    if not tag and not weights:
        raise InvalidInput(
            f"model: {source} needs weights, a random CLIP explains nothing: name a pretrained "
            f"tag ({_tags_text(open_clip, name)}) as {source}:TAG, or a local file with "
            f"--weights; {source}:{RANDOM} builds it with random weights on purpose"
        )
    if tag and tag != RANDOM:
        return _pretrained(open_clip, name, tag)
    model = _create(open_clip, name, None)
    if weights:
        load_state_dict(model, weights, strip_prefix="module.")
    return model.eval()


def _check_name(open_clip: Any, name: str) -> None:
    """A one-line refusal of a name open_clip has no config for, with the nearest ones."""
    known = list(open_clip.list_models())
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise InvalidInput(
        f"model: open_clip has no model {name!r}{hint} (open_clip.list_models() lists "
        f"all {len(known)})"
    )


def _tags_text(open_clip: Any, name: str) -> str:
    tags = list(open_clip.list_pretrained_tags_by_model(name))
    if not tags:
        return "open_clip lists none for it"
    shown = ", ".join(tags[:4]) + (f" and {len(tags) - 4} more" if len(tags) > 4 else "")
    return f"e.g. {shown}"


def _pretrained(open_clip: Any, name: str, tag: str) -> nn.Module:
    """Weights from open_clip's table: its cache, or a download open_clip makes when online."""
    if not open_clip.pretrained.is_pretrained_cfg(name, tag):
        raise InvalidInput(
            f"model: open_clip has no pretrained weights {tag!r} for {name} "
            f"({_tags_text(open_clip, name)}); a local file goes to --weights"
        )
    cfg = open_clip.pretrained.get_pretrained_cfg(name, tag)
    if not _cached(cfg):
        why = _offline(_download_host(cfg))
        if why:
            raise BackendError(
                f"model: could not download the weights of open_clip:{name}:{tag} ({why}); "
                f"pass a local copy with --model open_clip:{name} --weights FILE"
            )
    return _create(open_clip, name, tag).eval()


def _download_host(cfg: dict[str, Any]) -> str:
    """The host open_clip downloads ``cfg``'s weights from: its URL's, else the hub's."""
    if cfg.get("url"):
        return urlparse(cfg["url"]).hostname or ""
    from huggingface_hub import constants

    return urlparse(constants.ENDPOINT).hostname or ""


def _cached(cfg: dict[str, Any]) -> bool:
    """Whether open_clip will find the weights in its cache (no download at all)."""
    if cfg.get("url"):  # open_clip's own cache folder for URL downloads
        return (Path.home() / ".cache" / "clip" / Path(urlparse(cfg["url"]).path).name).is_file()
    from huggingface_hub import try_to_load_from_cache

    repo, _, filename = str(cfg.get("hf_hub", "")).rpartition("/")
    found = try_to_load_from_cache(repo, filename or "open_clip_pytorch_model.bin")
    return isinstance(found, str)


def _offline(host: str) -> str:
    """Why a download cannot happen now ("" when it can), said at once.

    Offline, the hub's client retries for about 25 seconds and logs each try;
    one look at the host (or ``HF_HUB_OFFLINE=1``, the usual way to say
    "no downloads") gives the same answer in one line.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    try:
        socket.create_connection((host, 443), timeout=_PROBE_SECONDS).close()
    except OSError as exc:
        return f"offline: {host} cannot be reached, {one_line(exc)}"
    return ""


def _create(open_clip: Any, name: str, tag: str | None) -> nn.Module:
    try:
        model: nn.Module = open_clip.create_model(name, pretrained=tag)
    except _DOWNLOAD_ERRORS as exc:
        if tag is None:
            raise BackendError(
                f"model: open_clip could not build {name} ({one_line(exc)})"
            ) from None
        raise BackendError(
            f"model: could not download the weights of open_clip:{name}:{tag} "
            f"({one_line(exc)}); offline, pass a local copy with --model open_clip:{name} "
            "--weights FILE"
        ) from None
    return model


def open_clip_tokenizer(rest: str) -> Any:
    """``open_clip.get_tokenizer(NAME)`` for ``open_clip:<rest>``: its text tower's tokenizer."""
    open_clip = require_module("open_clip", "vlm")
    name = rest.partition(":")[0].strip().replace("/", "-")
    _check_name(open_clip, name)
    try:
        return open_clip.get_tokenizer(name)
    except Exception as exc:  # a Hugging Face tokenizer that could not be read or downloaded
        raise BackendError(
            f"model: could not load the tokenizer of open_clip:{name} ({one_line(exc)}); "
            "open_clip downloads it once, online, and reads its cache after that"
        ) from None
