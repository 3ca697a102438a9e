"""``Answer`` Grad-CAM on a LLaVA against its floor: one forward and one backward by hand.

The floor is what any Grad-CAM of an answer must do: the model's own
forward on the processor's inputs with the answer appended, the answer
tokens' log-probabilities, and one backward to the vision tower's feature
layer (a hook keeps its output). seewhy's run is a whole ``explain`` of the
photo (preprocessing, the prompt's tokens from the cache, the map), through
an ``Explainer`` built once; "seewhy, prepared" the same on the photo already
prepared (a ``Batch``), as the floor's inputs are. All in this process,
interleaved; each ratio is taken round by round (median and quartiles, of
the wall clock and of the CPU seconds; target <= 1.3x). The LLaVA is built
from a config with random weights (no download): a CLIP tower at 336 px,
patch 14 (576 image tokens), and a Llama; ``--small`` for a quick run, where
seewhy's constant cost per call is a visible part of a ~9 ms floor: the pass's
twin of the module tree (~0.9 ms for 94 modules, kept for thread safety), the
sigmoid watch on the scored forward, the map's bookkeeping, and on the photo
its preparation (~1.5 ms, which the floor is spared).

    python benchmarks/bench_answer.py [--small] [--repeats 10] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _timing import ratio, timed_all

import seewhy
from models import tiny_llava
from seewhy.inputs import BatchStream
from seewhy.targets import Answer

PROMPT = "what is this ?"
ANSWER = "a red cat on the left"


def _bigger_llava(small: bool) -> tuple[Any, Any]:
    """tests/models.py's LLaVA widened: the same vocabulary and processor, larger towers."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    model, processor = tiny_llava()
    size, patch = (112, 14) if small else (336, 14)
    width, depth, text_width, text_depth = (64, 4, 128, 2) if small else (384, 12, 768, 8)
    vision = CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=depth,
        num_attention_heads=max(1, width // 64),
        image_size=size,
        patch_size=patch,
    )
    text = model.config.text_config
    text.hidden_size, text.intermediate_size = text_width, 4 * text_width
    text.num_hidden_layers, text.num_attention_heads = text_depth, text_width // 64
    text.num_key_value_heads = text.num_attention_heads
    text.head_dim = 64
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=model.config.image_token_id
    )
    torch.manual_seed(0)
    big = LlavaForConditionalGeneration(config).eval()
    processor.image_processor = CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    processor.patch_size = patch
    return big, processor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, processor = _bigger_llava(args.small)
    photo = (np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = seewhy.Explainer(model, "gradcam", processor=processor)
        target = Answer(ANSWER, prompt=PROMPT)
        first = explainer.explain(photo, target=target)
    layer = model.get_submodule(first.layer)
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[photo], return_tensors="pt")
    answer = processor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    ids = torch.cat([inputs["input_ids"], torch.tensor([answer])], dim=1)
    start = inputs["input_ids"].shape[1]

    def by_hand() -> None:
        kept: list[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda m, a, out: kept.append(out))
        try:
            logits = model(input_ids=ids, pixel_values=inputs["pixel_values"]).logits
        finally:
            handle.remove()
        picked = torch.log_softmax(logits[0, start - 1 : -1].float(), -1)
        score = picked[torch.arange(len(answer)), answer].sum()
        torch.autograd.grad(score, kept[0])

    def with_seewhy() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer.explain(photo, target=target)

    stream = BatchStream(
        [photo],
        explainer.spec.preprocess,
        channels_first=explainer.backend.channels_first,
        photos=explainer.photos,
    )
    prepared = next(iter(stream))[0]
    assert prepared is not None

    def with_seewhy_prepared() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer.explain(prepared, target=target)

    timings = timed_all(
        {"by hand": by_hand, "seewhy": with_seewhy, "seewhy, prepared": with_seewhy_prepared},
        args.repeats,
    )
    floor = timings["by hand"]
    tokens = inputs["input_ids"].shape[1] + len(answer)
    print(f"LLaVA, {tokens} tokens, layer {first.layer}, {torch.get_num_threads()} threads")
    for name, timing in timings.items():
        cpu = sorted(timing.cpu)[len(timing.cpu) // 2]
        print(
            f"{name:>16}: {timing.seconds * 1000:8.1f} ms (CPU {cpu * 1000:.1f} ms)  "
            f"wall {ratio(timing, floor)}, CPU {ratio(timing, floor, cpu=True)}"
        )


if __name__ == "__main__":
    main()
