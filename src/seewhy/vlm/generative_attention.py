"""The language model's attention from the answer to the image tokens (``answer-attention``).

One teacher-forced pass, without gradients, on the pass's twin of the user's
model: each decoder layer's attention module is run with the eager kernel
(the twin's modules get a copy of the text config that says so, so a model
set to SDPA or flash attention still gives its probabilities, and the user's
config is untouched), and a hook keeps each layer's probabilities averaged
over heads. The combination over layers is documented on the method
(:class:`seewhy.methods.answer_attention.AnswerAttention`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import BackendError

if TYPE_CHECKING:
    from .answers import _Generative

__all__ = ["answer_attention", "combine_layers"]


def answer_attention(
    adapter: _Generative, x: np.ndarray, prompt: str, ids: tuple[int, ...], combine: str
) -> np.ndarray:
    """(k, h, w) each answer token's attention to the image tokens of ``x`` (1, H, W, C)."""
    from ..backends.model_lock import model_lock
    from ..backends.torch.twin import run_on_twin

    pixels = adapter.tensor(x)

    def read(net: Any) -> tuple[list[torch.Tensor], torch.Tensor, int]:
        kept: list[torch.Tensor] = []
        with torch.no_grad(), _eager_attention(net.model, kept):
            features = net(pixels)
            _, full, start = adapter.teacher_forced(net, features, prompt, ids)
        return kept, full, start

    with model_lock(adapter.path):
        layers, full, start = run_on_twin(adapter.path, read)
    image = torch.nonzero(full[0] == adapter.path.image_token).flatten().cpu()
    rows = torch.arange(start - 1, full.shape[1] - 1)
    found = combine_layers([a[0] for a in layers], rows, combine)[:, image]
    size = (int(pixels.shape[-2]), int(pixels.shape[-1]))
    cells, (h, w) = adapter.path.image_cells(size, int(found.shape[1]))
    return found[:, torch.from_numpy(cells)].reshape(len(rows), h, w).numpy()


def combine_layers(layers: list[torch.Tensor], rows: torch.Tensor, combine: str) -> torch.Tensor:
    """(k, T) the answer ``rows`` of the layers' (T, T) head-averaged attention, combined.

    ``"mean"``: their mean over layers; ``"rollout"``: the rows of
    (A_L/2 + I/2) ... (A_1/2 + I/2), carried from the last layer down.
    """
    if combine == "mean":
        return torch.stack([a[rows] for a in layers]).mean(dim=0)
    eye = torch.eye(layers[0].shape[0], dtype=layers[0].dtype)
    carried = (0.5 * layers[-1] + 0.5 * eye)[rows]
    for attention in reversed(layers[:-1]):
        carried = carried @ (0.5 * attention + 0.5 * eye)
    return carried


@contextlib.contextmanager
def _eager_attention(multimodal: Any, kept: list[torch.Tensor]) -> Iterator[None]:
    """Each decoder layer's attention probabilities (N, T, T), heads averaged, into ``kept``.

    ``multimodal`` is the twin's model under the head (``LlavaModel`` ...): its
    language model's modules, and itself where it makes the attention mask
    (PaliGemma), read a copy of the text config set to eager attention; the
    swap and the hooks are undone on the way out, also when the pass raises
    (a model explained in place has no twin).
    """
    # Idefics3 / SmolVLM name their language model text_model
    language = getattr(multimodal, "language_model", None) or multimodal.text_model
    config = language.config
    eager = copy.copy(config)
    eager._attn_implementation_internal = "eager"  # this copy only; no sub-config is shared
    outer = copy.copy(multimodal.config)
    outer.text_config = eager
    swaps = [(m, config, eager) for m in language.modules() if m.__dict__.get("config") is config]
    if multimodal.config.get_text_config() is config:
        swaps.append((multimodal, multimodal.config, outer))

    def keep(module: Any, args: Any, output: Any) -> None:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is None:
            raise BackendError(
                f"answer-attention: {type(module).__name__} gave no attention probabilities "
                "even with the eager kernel; this language model is not served"
            )
        kept.append(weights.detach().float().mean(dim=1).cpu())

    handles = [layer.self_attn.register_forward_hook(keep) for layer in language.layers]
    try:
        for module, _, swapped in swaps:
            module.config = swapped
        yield
    finally:
        for module, original, _ in swaps:
            module.config = original
        for handle in handles:
            handle.remove()
