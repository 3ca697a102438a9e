"""Generative vision-language models (LLaVA, LLaVA-NeXT, PaliGemma, Qwen2-VL, Idefics3 /
SmolVLM): where an answer came from.

:func:`adapt_generative` claims a Hugging Face generative VLM of those families. The
module explained is its vision path (:class:`~.generative_models.VisionPath`:
pixels -> image features); the :class:`seewhy.targets.Answer` a user passes
is bound to an :class:`AnswerScore`, whose score runs the rest of the model,
the user's own language model and head, teacher-forced: the prompt's
tokens with the image features in place of the image tokens, then the
answer's tokens, and the sum of the answer tokens' log-probabilities. So
every method (the CAM family and gradients at the vision tower, occlusion
and RISE on the pixels) explains an answer unchanged, and gradients flow
only as far as the layer explained.

Rows (:func:`answer_rows`, called once per batch by the Explainer): without
an Answer the model answers each picture greedily and that answer is
explained and recorded; ``per_token=True`` makes one row per answer token,
captioned with the token, each scoring that token's own log-probability
(the rows' scores add up to the whole answer's).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._kit.checks import bad_argument
from ..targets import Answer
from ..targets.base import Target
from .generative_models import Family, VisionPath, describe_family, family_of, own_family
from .generative_text import (
    MAX_NEW_TOKENS,
    answer_ids,
    find_processor,
    greedy_answer,
    prompt_tokens,
    token_text,
)
from .photo_sizes import photo_sizes, pixel_budget
from .preprocessing import letterboxed

__all__ = ["AnswerScore", "adapt_generative", "replace_token"]


class AnswerScore(Target):
    """An answer's teacher-forced log-probability, scored from the vision path's features.

    ``token``: that answer token's own log-probability (a per-token row);
    None: the sum over the answer.
    """

    kind = "answer"

    def __init__(
        self,
        adapter: _Generative,
        prompt: str,
        ids: tuple[int, ...],
        *,
        text: str,
        per_token: bool = False,
        token: int | None = None,
        generated: bool = False,
    ) -> None:
        self.adapter = adapter
        self.prompt = prompt
        self.ids = ids
        self.text = text
        self.per_token = per_token
        self.token = token
        self.generated = generated

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        return self.adapter.log_probabilities(output, self.prompt, self.ids, self.token)

    def pass_key(self) -> Any:
        return (self.kind, self.prompt, self.ids, self.token)

    def answer_key(self) -> Any:
        """The prompt and answer tokens: rows sharing them (and a picture) share a pass."""
        return (self.prompt, self.ids)

    def answer_attention(self, x: np.ndarray, *, combine: str) -> np.ndarray:
        """(k, h, w) each answer token's attention to the image tokens (``answer-attention``)."""
        from .generative_attention import answer_attention

        return answer_attention(self.adapter, x, self.prompt, self.ids, combine)

    def to_json(self) -> dict[str, Any]:
        form: dict[str, Any] = {
            "kind": self.kind,
            "text": self.text,
            "prompt": self.prompt,
            "per_token": self.per_token,
            "tokens": list(self.ids),
        }
        if self.generated:
            form["generated"] = True
        if self.token is not None:
            form["token"] = self.token
        return form

    def describe(self, label: Any) -> str:
        if self.token is None:
            return f"answer: {self.text}"
        word = token_text(self.adapter.processor, self.ids[self.token])
        return f"answer token {self.token + 1}/{len(self.ids)}: {word}"


class _Generative:
    """One claimed model: its vision path, processor and default prompt."""

    def __init__(self, vlm: Any, family: Family, processor: Any, prompt: str | None) -> None:
        from .generative_tiles import shrink_of

        self.vlm = vlm
        self.path = VisionPath(vlm, family, shrink_of(processor) if family.tiled else None)
        self.processor = processor
        self.prompt = prompt

    # -- binding ---------------------------------------------------------------

    def bind(self, target: Any) -> Any:
        """``Answer`` (or one per image) -> :class:`AnswerScore`; None -> generate (in rows)."""
        if target is None:
            if self.prompt is None:
                raise bad_argument(
                    "target",
                    "an Answer(text, prompt=...), or prompt= to explain the model's own answer",
                    None,
                )
            return _Pending(self.prompt)
        if isinstance(target, Answer):
            ids = answer_ids(self.processor, target.text)
            return AnswerScore(
                self, target.prompt, ids, text=target.text, per_token=target.per_token
            )
        if isinstance(target, (list, tuple)):
            return [self.bind(t) for t in target]
        raise bad_argument("target", "a seewhy.targets.Answer (or one per image), or None", target)

    def rows(self, batch: Any, targets: Any) -> tuple[Any, tuple[Target, ...]] | None:
        """The batch with each image's answer settled: generated, or split into tokens."""
        if not isinstance(targets, tuple):
            return None
        if not any(isinstance(t, _Pending) or _split(t) for t in targets):
            return None
        picks: list[int] = []
        out: list[Target] = []
        for i, target in enumerate(targets):
            if isinstance(target, _Pending):
                target = self._generated(batch.inputs[i : i + 1], target.prompt)
            parts: list[Target] = [target]
            if isinstance(target, AnswerScore) and target.per_token:
                parts = [replace_token(target, j) for j in range(len(target.ids))]
            picks.extend([i] * len(parts))
            out.extend(parts)
        return _expanded(batch, picks), tuple(out)

    def _generated(self, x: np.ndarray, prompt: str) -> AnswerScore:
        pixels = self.pixels(x)
        size = (int(x.shape[1]), int(x.shape[2]))
        tokens = prompt_tokens(self.processor, prompt, size, chat=self.path.family.chat)
        ids = greedy_answer(self.vlm, self.processor, tokens, pixels)
        text = str(self.processor.tokenizer.decode(list(ids), skip_special_tokens=True)).strip()
        return AnswerScore(self, prompt, ids, text=text or "?", generated=True)

    def tensor(self, x: np.ndarray) -> torch.Tensor:
        """Prepared (N, H, W, C) inputs as (N, C, H, W) on the model's device, in its dtype."""
        first = next(self.vlm.parameters())
        tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        return tensor.to(device=first.device, dtype=first.dtype)

    def pixels(self, x: np.ndarray) -> dict[str, torch.Tensor]:
        """The family's pixel inputs to the user's model for prepared (N, H, W, C) inputs."""
        return dict(self.path.image_kwargs(self.tensor(x)))

    # -- the score ---------------------------------------------------------------

    def log_probabilities(
        self, features: torch.Tensor, prompt: str, ids: tuple[int, ...], token: int | None
    ) -> torch.Tensor:
        """(N,) the answer's log-probability given each row's image features (N, T, D)."""
        from ..backends.torch.twin import current_model

        net: Any = current_model(self.path)
        out, full, start = self.teacher_forced(net, features, prompt, ids)
        answer = full[:, start:]
        hidden = out.last_hidden_state[:, start - 1 : full.shape[1] - 1]
        logits = net.lm_head(hidden).float()
        cap = getattr(self.vlm.config.get_text_config(), "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        picked = torch.log_softmax(logits, dim=-1).gather(2, answer[..., None])[..., 0]
        return picked.sum(dim=1) if token is None else picked[:, token]

    def teacher_forced(
        self, net: Any, features: torch.Tensor, prompt: str, ids: tuple[int, ...]
    ) -> tuple[Any, torch.Tensor, int]:
        """The language model on the prompt, the image features and the answer, at once.

        ``net`` is the pass's vision path (its twin); returns the model's output,
        the (N, L) token ids and where the answer starts in them.
        """
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        n = features.shape[0]
        size = tuple(int(v) for v in net.last_size)
        family = self.path.family
        tokens = prompt_tokens(self.processor, prompt, (size[0], size[1]), chat=family.chat)
        device = features.device
        answer = torch.tensor(ids, device=device)
        start = tokens.ids.shape[1]
        full = torch.cat([tokens.ids.to(device)[0], answer]).expand(n, -1)
        extra = _extended(tokens.extra, len(ids), n, device, family.answer_type)
        # LLaVA, Qwen2-VL, LLaVA-NeXT and Idefics3 take one tensor per image; PaliGemma the batch's
        pooled = features if family.name == "paligemma" else tuple(features)
        encoded = BaseModelOutputWithPooling(pooler_output=pooled)  # type: ignore[arg-type]
        out = net.model(input_ids=full, mm_encoder_outputs={"image": encoded}, **extra)
        return out, full, start


def replace_token(target: AnswerScore, token: int) -> AnswerScore:
    """The per-token row of ``target`` for answer token ``token``."""
    row = AnswerScore.__new__(AnswerScore)
    row.__dict__.update(target.__dict__)
    row.token = token
    return row


class _Pending(Target):
    """The model's own answer to ``prompt``, generated per image when its batch is read."""

    kind = "answer"

    def __init__(self, prompt: str) -> None:
        self.prompt = prompt

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        raise RuntimeError("seewhy: an answer was scored before it was generated")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "prompt": self.prompt, "generated": True}


def _split(target: Any) -> bool:
    return isinstance(target, AnswerScore) and target.per_token and target.token is None


def _extended(
    extra: dict[str, torch.Tensor], answer: int, n: int, device: torch.device, kind: int
) -> dict[str, torch.Tensor]:
    """The processor's per-token inputs over the answer too (ones; the answer's token type
    ``kind``; text for the multimodal type), N rows."""
    out: dict[str, torch.Tensor] = {}
    for key, value in extra.items():
        value = value.to(device)
        if key in ("attention_mask", "mm_token_type_ids", "token_type_ids"):
            fill = {"attention_mask": 1, "token_type_ids": kind}.get(key, 0)
            tail = torch.full((1, answer), fill, dtype=value.dtype, device=device)
            out[key] = torch.cat([value, tail], dim=1).expand(n, -1)
        else:  # one row per image (image_grid_thw)
            out[key] = value.repeat(n, *([1] * (value.ndim - 1)))
    return out


def _expanded(batch: Any, picks: list[int]) -> Any:
    from ..inputs.rows import batch_rows

    return batch_rows(batch, picks)


def _default_layer(path: VisionPath) -> tuple[str, str]:
    """The layer the CAM family reads by default, and why."""
    if path.family.name == "qwen2-vl":
        return "merged_patches", "the vision tower's merged patch tokens"
    if path.family.tiled:
        from .generative_tiles import whole_view

        return "tiles", (
            "the tiles' patch features the projector reads, each tile where it lies on the "
            f"picture; the whole picture's own view is layer {whole_view(path.family.name)}"
        )
    config: Any = path.config
    feature = getattr(config, "vision_feature_layer", -1)  # PaliGemma: the last block's
    chosen = max(feature) if isinstance(feature, (list, tuple)) else int(feature)
    for name, module in path.named_modules():
        if name.startswith("model.vision_tower.") and name.endswith("encoder.layers"):
            depth = len(module)
            index = (chosen if chosen >= 0 else depth + 1 + chosen) - 1
            why = "the vision tower block whose output the projector reads"
            return f"{name}.{index}", why
    return "model.multi_modal_projector", "the projector's output"


def adapt_generative(
    model: Any, *, tokenizer: Any, processor: Any, prompt: str | None
) -> dict[str, Any] | None:
    """The fields of an :class:`~.adapters.Adapted` for a Hugging Face LLaVA, PaliGemma or
    Qwen2-VL model (a dict, so this module needs no import of the seam's); None for other models."""
    name = family_of(model)
    if name is None:
        return None
    family = describe_family(model, name)
    found = find_processor(model, processor, tokenizer, chat=family.chat)
    adapter = _Generative(model, family, found, prompt)
    layer, why = _default_layer(adapter.path)
    preprocess, how = _preprocess(adapter.path, found)
    own = own_family(model, name)
    laid = own if own == name else f"{own}, laid out as {name}"
    said = (
        f"{type(model).__name__} ({laid}): seewhy explains its vision path (pixels -> image "
        "features); "
        f"the answer is scored by its language model, teacher-forced (no Answer: its greedy "
        f"answer, at most {MAX_NEW_TOKENS} tokens); default layer {layer} ({why}); pictures "
        f"{how}"
    )
    return {
        "model": adapter.path,
        "family": own,
        "said": said,
        "preprocess": preprocess,
        "bind": adapter.bind,
        "layer": layer,
        "rows": adapter.rows,
        "sizes": photo_sizes(adapter.path, found),
        **_picture_layers(adapter.path),
    }


def _picture_layers(path: VisionPath) -> dict[str, Any]:
    """The ``layers``/``layers_why`` of a model whose tower's own layers are not one map per
    picture: Qwen2-VL's blocks hold every picture's patches in one unbatched row; a tiled
    model's hold one row per tile."""
    if path.family.name == "qwen2-vl":
        why = "holds every picture's patches in one row, without a batch dimension"
        return {"layers": ("merged_patches",), "layers_why": why}
    if path.family.tiled:
        from .generative_tiles import whole_view

        why = "sees one tile (or the whole picture shrunk) per row, not one picture per row"
        return {"layers": ("tiles", whole_view(path.family.name)), "layers_why": why}
    return {}


def _preprocess(path: VisionPath, processor: Any) -> tuple[Any, str]:
    """The pictures as the processor makes them (LLaVA, PaliGemma); Qwen2-VL: the canvas its
    photos of several sizes are shown on (each is fed at its own, :mod:`.photo_sizes`);
    LLaVA-NeXT, Idefics3: letterboxed in a canvas of whole tiles."""
    from ..backends.torch.hints_hf import image_processor_preset

    family = path.family
    images = processor.image_processor
    if family.tiled:
        from .generative_tiles import tiles_preprocess

        return tiles_preprocess(path, processor)
    if not family.patch_rows:
        return image_processor_preset(images), f"as its processor ({type(images).__name__})"
    fields = images.to_dict()
    limit = (fields.get("size") or {}).get("longest_edge") or fields.get("max_pixels")
    budget = min(int(limit or 448 * 448), 448 * 448)
    side = max(family.step, int(np.sqrt(budget)) // family.step * family.step)
    pre = letterboxed(fields, side, side)
    low, high = pixel_budget(fields)
    how = (
        f"each fed at the size its processor gives it (sides multiples of {family.step} px, "
        f"{low} to {high} pixels); photos fed at several sizes in one call are laid onto a "
        f"{side}x{side} canvas with their aspect kept (pass preprocess= to feed one size)"
    )
    return pre, how
