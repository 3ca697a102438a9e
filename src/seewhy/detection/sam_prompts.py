"""SAM's prompts as targets: a :class:`~seewhy.targets.Mask` bound to the model's prompt side.

:class:`Binder` turns the user's ``target=`` into targets: a Mask given on
the model's input becomes a :class:`MaskScore` at once; Masks given on the
photo (the default) wait as :class:`PhotoPrompts` until :meth:`Binder.rows`
sees each picture's photo, maps them onto its input, and gives each prompt
its own row (k prompts on one picture: k rows of the same pixels).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..backends.heads import rows_scoring
from ..errors import InvalidInput
from ..targets import Mask, Target, from_json
from .sam2 import levels

if TYPE_CHECKING:
    from .sam import SamImage

__all__ = ["Binder", "MaskScore", "PhotoPrompts", "mask_logits"]


def _module(image: SamImage) -> Any:
    """The running pass's twin of ``image`` (its modules in eval mode), else ``image``."""
    from ..backends.torch.twin import current_model

    try:
        return current_model(image)
    except RuntimeError:  # scored outside a pass (a direct call)
        return image


def mask_logits(
    image: SamImage, embeddings: torch.Tensor, mask: Mask
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, h, w) the proposed masks' logits and (N, 3) their predicted IoU, per row.

    ``mask`` is on the model's input; the prompt side runs as the model's own
    predictor runs it (``multimask_output=True``): segment_anything's on the
    pass's twin, Hugging Face's through the user's model called with the image
    embeddings (its forward assembles the decoder's inputs; nothing in its
    prompt side depends on the training flag, and nothing is written to it).
    """
    device, dtype = embeddings.device, embeddings.dtype
    points = torch.tensor(mask.points, device=device, dtype=dtype).reshape(1, -1, 2)
    labels = torch.tensor(mask.labels, device=device, dtype=torch.int64).reshape(1, -1)
    boxes = torch.tensor(mask.boxes, device=device, dtype=dtype).reshape(1, -1, 4)
    if image.family in ("hf-sam", "hf-sam2"):
        n = len(embeddings)
        found = image.user(
            image_embeddings=levels(image.user, embeddings)
            if image.family == "hf-sam2"
            else embeddings,
            input_points=points[:, None].expand(n, 1, -1, 2) if mask.points else None,
            input_labels=labels[:, None].expand(n, 1, -1) if mask.points else None,
            input_boxes=boxes.expand(n, -1, 4) if mask.boxes else None,
            multimask_output=True,
        )
        return found.pred_masks[:, 0], found.iou_scores[:, 0]
    net = _module(image)
    sparse, dense = net.prompt_encoder(
        points=(points, labels) if mask.points else None,
        boxes=boxes[0] if mask.boxes else None,
        masks=None,
    )
    position = net.prompt_encoder.get_dense_pe()
    logits, quality = [], []
    for i in range(len(embeddings)):  # the decoder repeats one embedding per prompt
        masks, iou = net.mask_decoder(
            image_embeddings=embeddings[i : i + 1],
            image_pe=position,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        logits.append(masks)
        quality.append(iou)
    return torch.cat(logits), torch.cat(quality)


def _threshold(image: SamImage) -> float:
    return float(getattr(image.user, "mask_threshold", 0.0) or 0.0)


class MaskScore(Target):
    """A :class:`~seewhy.targets.Mask` on the model's input, scored from the image embedding.

    The score of each row: the chosen mask's logits (highest predicted IoU, or
    ``mask.multimask``) summed over its pixels above the model's threshold, the
    choice and the pixels taken without a gradient; an empty mask scores its
    largest logit. ``shown`` is the Mask as the user gave it (its caption).
    """

    kind = "mask"

    def __init__(self, image: SamImage, mask: Mask, shown: Mask | None = None) -> None:
        self.image = image
        self.mask = mask
        self.shown = shown or mask

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise InvalidInput(
                f"Mask: expected SAM's image embedding (N, C, h, w), got {type(output).__name__}"
            )
        mine = rows_scoring(self)  # a gradient pass: only the rows reading this prompt
        if mine is None or len(mine) == len(output):
            return self._rows(output)
        index = torch.as_tensor(mine, device=output.device)
        values = self._rows(output.index_select(0, index))
        return values.new_zeros(len(output)).index_copy(0, index, values)

    def _rows(self, output: torch.Tensor) -> torch.Tensor:
        """(N,) each row's score (see the class)."""
        logits, quality = mask_logits(self.image, output, self.mask)
        rows = torch.arange(len(logits), device=logits.device)
        if self.mask.multimask is None:
            which = quality.detach().argmax(dim=1)
        else:
            which = torch.full_like(rows, self.mask.multimask)
        chosen = logits[rows, which].flatten(1).float()
        on = chosen.detach() > _threshold(self.image)
        total = (chosen * on).sum(dim=1)
        return torch.where(on.any(dim=1), total, chosen.amax(dim=1))

    def pass_key(self) -> Hashable:
        return ("mask-bound", id(self))

    def to_json(self) -> dict[str, Any]:
        return self.mask.to_json()

    def describe(self, label: Callable[[int], str]) -> str:
        return self.shown.describe(label)


class PhotoPrompts(Target):
    """Masks given on the photo, waiting for each picture's photo (see :meth:`Binder.rows`)."""

    kind = "mask"

    def __init__(self, masks: Sequence[Mask]) -> None:
        self.masks = tuple(masks)

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        raise InvalidInput(
            "Mask: points on the photo are mapped onto the model's input by seewhy.explain; "
            "elsewhere pass Mask(..., space='input') or the Explanation (which records that)"
        )

    def to_json(self) -> dict[str, Any]:
        return self.masks[0].to_json()


class Binder:
    """The user's ``target=`` for a SAM model -> targets scoring its image embedding."""

    def __init__(self, image: SamImage) -> None:
        self.image = image

    def bind(self, target: Any) -> Any:
        """A Mask or a list of Masks (every picture's prompts, a row each); a list of such
        lists: one per picture."""
        if target is None:
            raise InvalidInput(
                "target: SAM has no classes; pass target=seewhy.targets.Mask(points=[(x, y)]) "
                "(--target point:x,y), or a list of Masks for one map each"
            )
        if (
            isinstance(target, (list, tuple))
            and target
            and all(isinstance(t, (list, tuple)) for t in target)
        ):
            return [self._group(list(t)) for t in target]
        return self._group(list(target) if isinstance(target, (list, tuple)) else [target])

    def _group(self, items: list[Any]) -> Target:
        masks = [self._mask(t) for t in items]
        if not masks:
            raise InvalidInput("target: an empty list of Masks; pass at least one")
        if len(masks) == 1 and masks[0].space == "input":
            return MaskScore(self.image, masks[0])
        return PhotoPrompts(masks)

    @staticmethod
    def _mask(item: Any) -> Mask:
        if isinstance(item, dict):
            item = from_json(item)
        if isinstance(item, MaskScore):
            return item.mask
        if not isinstance(item, Mask):
            raise InvalidInput(
                f"target: a SAM model is prompted by seewhy.targets.Mask(points=..., boxes=...), "
                f"not {type(item).__name__}"
            )
        return item

    def rows(self, batch: Any, targets: Any) -> tuple[Any, tuple[Target, ...]] | None:
        """The batch with one row per prompt, each prompt mapped onto its picture's input."""
        if not isinstance(targets, tuple) or not any(isinstance(t, PhotoPrompts) for t in targets):
            return None
        picks: list[int] = []
        out: list[Target] = []
        for i, target in enumerate(targets):
            if isinstance(target, PhotoPrompts):
                scale, offset = _onto_input(batch, i)
                for mask in target.masks:
                    moved = mask if mask.space == "input" else mask.moved(scale, offset)
                    out.append(MaskScore(self.image, moved, mask))
                    picks.append(i)
            else:
                out.append(target)
                picks.append(i)
        return _expanded(batch, picks), tuple(out)


def _onto_input(batch: Any, i: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """(x, y) scale and offset taking photo pixels of picture ``i`` onto its model input."""
    photo = batch.photos[i] if batch.photos else None
    if photo is None:  # a prepared input: its pixels are the photo's
        return (1.0, 1.0), (0.0, 0.0)
    top, left, bottom, right = photo.box  # the input's window on the shown picture
    height, width = photo.size
    shown_h, shown_w = photo.picture.shape[:2]
    fy, fx = height / shown_h, width / shown_w  # back to the photo's own pixels
    out_h, out_w = batch.inputs.shape[1:3]
    sx = out_w / ((right - left) * fx)
    sy = out_h / ((bottom - top) * fy)
    return (float(sx), float(sy)), (float(left * fx), float(top * fy))


def _expanded(batch: Any, picks: list[int]) -> Any:
    """``batch`` with its pictures at ``picks`` (a picture once per prompt)."""
    from ..inputs.rows import batch_rows

    return batch_rows(batch, picks)
