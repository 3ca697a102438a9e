"""Vision-language models reach every entry point, not only explain (issue 26).

The metrics, the sanity check, the audit, ``seewhy.layers``, ``model_spec``
and ``predict`` see a CLIP, a SigLIP or a LLaVA as explain does: the part
that sees the pixels, with the Prompt or Answer bound to the rest of the
model. References come from the definitions: a metric's unchanged picture
scores what the explanation scored (the model's own logit softmax, the
teacher-forced log-probability), zero-shot probabilities are the softmax of
``logit_scale * cosine`` computed with the model's own encoders, and the
sanity check's original maps are explain's. Every model is tiny and random.
"""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from models import hf_dual_encoder, open_clip_tiny, tiny_llava, word_tokenizer
from seewhy.audit import audit
from seewhy.cli import main
from seewhy.errors import InvalidInput
from seewhy.targets import Answer, Prompt

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")

WORDS = "a photo of red car cat dog".split()
TEXTS = ("a cat", "a dog", "a red car")
PICTURE = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def quiet(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call`` with the adapted-model note silenced (test_prompt.py checks it is said)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", seewhy.vlm.AdaptedModelNote)
        return call(*args, **kwargs)


@pytest.fixture(scope="module")
def clip() -> Any:
    return open_clip_tiny("vit")


@pytest.fixture(scope="module")
def hf() -> tuple[Any, Any]:
    """A Hugging Face CLIPModel and its offline word-level tokenizer."""
    return hf_dual_encoder("clip"), word_tokenizer(WORDS)


@pytest.fixture(scope="module")
def llava() -> tuple[Any, Any]:
    return tiny_llava()


def _zero_shot_by_hand(model: Any, tokenizer: Any, x: Any) -> np.ndarray:
    """softmax(logit_scale.exp() * cos(image, text)) over TEXTS, with the model's own encoders."""
    with torch.no_grad():
        if hasattr(model, "encode_image"):  # open_clip
            import open_clip

            tokens = open_clip.tokenizer.SimpleTokenizer(context_length=model.context_length)
            image = model.encode_image(x, normalize=True)
            text = model.encode_text(tokens(list(TEXTS)), normalize=True)
        else:
            ids = tokenizer(list(TEXTS), padding=True, return_tensors="pt")
            image = model.get_image_features(pixel_values=x)
            text = model.get_text_features(**ids)
            image = getattr(image, "pooler_output", image)
            text = getattr(text, "pooler_output", text)
            image = image / image.norm(dim=1, keepdim=True)
            text = text / text.norm(dim=1, keepdim=True)
        logits = model.logit_scale.exp() * image @ text.T
    return torch.softmax(logits, dim=1).numpy()


def _fed(model: Any, **text: Any) -> Any:
    """PICTURE as the model is fed it, from the spec seewhy reports for the model."""
    pre = seewhy.model_spec(model, **text).preprocess
    assert pre.size == (32, 32)  # the tower's own size, not a guess
    return torch.from_numpy(pre.normalise(PICTURE)).permute(2, 0, 1)[None]


@pytest.mark.parametrize("family", ["open_clip", "hf-clip"])
def test_layers_spec_and_predict_see_the_image_tower(
    family: str, clip: Any, hf: tuple[Any, Any]
) -> None:
    """seewhy.layers lists the tower's layers under the user's names and marks the layer
    explain uses; predict gives the zero-shot softmax written from the definition."""
    model, tokenizer = (clip, None) if family == "open_clip" else hf
    text = {} if tokenizer is None else {"tokenizer": tokenizer}
    infos, default = seewhy.layers(model, **text)
    names = [i.name for i in infos]
    tower = "visual." if family == "open_clip" else "vision_model."
    assert names and all(n.startswith(tower) for n in names)  # no text-tower layer
    ex = quiet(seewhy.explain, model, PICTURE, target=Prompt(TEXTS[0]), **text)
    assert default == ex.layer and default in names
    (top,) = quiet(seewhy.predict, model, PICTURE, labels=TEXTS, top_k=3, **text)
    expected = _zero_shot_by_hand(model, tokenizer, _fed(model, **text))[0]
    got = {p.label: p.probability for p in top}
    assert np.allclose([got[t] for t in TEXTS], expected, atol=1e-4)
    with pytest.raises(InvalidInput, match=r"^predict: .*labels=\['a cat'"):
        quiet(seewhy.predict, model, PICTURE, **text)


@pytest.mark.parametrize("family", ["open_clip", "hf-clip"])
def test_metrics_score_the_recorded_prompt_again(
    family: str, clip: Any, hf: tuple[Any, Any]
) -> None:
    """Each faithfulness metric's untouched picture scores what the explanation scored (the
    prompt's softmax among the texts), rebuilt from the Explanation's JSON record alone."""
    model, tokenizer = (clip, None) if family == "open_clip" else hf
    text = {} if tokenizer is None else {"tokenizer": tokenizer}
    target = Prompt(TEXTS[0], against=TEXTS[1:])
    ex = quiet(seewhy.explain, model, PICTURE, "gradcam", target=target, **text)
    assert ex.params["model_family"] == family
    wanted = ["deletion", "insertion", "average_drop"]
    scores = seewhy.metrics.evaluate(model, ex, wanted, steps=2, **text)
    shown = float(ex.extras["target_score"][0])
    assert np.isclose(scores["deletion"]["mean_curve"][0], shown, atol=1e-4)
    assert np.isclose(scores["insertion"]["mean_curve"][-1], shown, atol=1e-4)
    road = seewhy.metrics.road(model, ex, fractions=(0.5,), **text)
    assert np.isclose(road.original[0], shown, atol=1e-4)
    assert np.isclose(scores["average_drop"]["original"][0], shown, atol=1e-4)
    assert scores["deletion"]["params"]["target"] == target.to_json()
    with pytest.raises(InvalidInput, match=r"^deletion: targets: .*explained"):
        seewhy.metrics.deletion(_other(family, clip, hf), ex, steps=2)


def _other(family: str, clip: Any, hf: tuple[Any, Any]) -> Any:
    return hf[0] if family == "open_clip" else clip


def test_metrics_score_a_llavas_answer_given_or_generated(llava: tuple[Any, Any]) -> None:
    """An Answer's teacher-forced log-probability is scored again, and a generated answer by
    its recorded tokens (not its decoded text re-tokenised)."""
    model, processor = llava
    given = quiet(
        seewhy.explain,
        model,
        PICTURE,
        target=Answer("a cat", prompt="what is this ?"),
        processor=processor,
    )
    made = quiet(seewhy.explain, model, PICTURE, prompt="what is this ?", processor=processor)
    assert made.params["target"]["generated"]
    for ex in (given, made):
        curve = seewhy.metrics.deletion(model, ex, steps=2, processor=processor)
        assert np.isclose(curve.scores[0, 0], ex.extras["target_score"][0], atol=1e-3)
    with pytest.raises(InvalidInput, match="answers in words"):
        quiet(seewhy.predict, model, PICTURE, processor=processor)


def _state(model: Any) -> dict[str, bytes]:
    return {k: v.detach().numpy().tobytes() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("family", ["open_clip", "hf-clip"])
def test_sanity_check_randomises_copies_of_the_tower_only(
    family: str, clip: Any, hf: tuple[Any, Any], llava: tuple[Any, Any]
) -> None:
    """The original maps are explain's; every step re-draws a layer of the image tower in a
    copy; the user's model is byte-identical afterwards."""
    model, tokenizer = (clip, None) if family == "open_clip" else hf
    text = {} if tokenizer is None else {"tokenizer": tokenizer}
    before = _state(model)
    target = Prompt(TEXTS[0], against=TEXTS[1:])
    result = quiet(seewhy.metrics.sanity_check, model, PICTURE, target=target, steps=2, **text)
    ex = quiet(seewhy.explain, model, PICTURE, target=target, **text)
    assert np.allclose(result.original, ex.maps, atol=1e-5)
    tower = ("visual.",) if family == "open_clip" else ("vision_model.", "visual_projection")
    assert all(step.startswith(tower) for step in result.steps), result.steps
    assert not np.allclose(result.randomized[-1], ex.maps, atol=1e-3)
    assert _state(model) == before
    with pytest.raises(InvalidInput, match="sanity check does not serve llava"):
        seewhy.metrics.sanity_check(
            llava[0], PICTURE, target=Answer("a cat", prompt="what"), processor=llava[1]
        )


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved CLIP folder with its processor, and class folders named after two texts."""
    root = tmp_path_factory.mktemp("entry")
    hf_dual_encoder("clip").save_pretrained(root / "clip")
    image = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor = transformers.CLIPProcessor(image_processor=image, tokenizer=word_tokenizer(WORDS))
    processor.save_pretrained(root / "clip")
    rng = np.random.default_rng(1)
    for name in TEXTS[:2]:
        (root / "data" / name).mkdir(parents=True)
        for i in range(2):
            picture = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(picture).save(root / "data" / name / f"{i}.png")
    return root


def test_audit_explains_a_prompt_in_every_image_zero_shot(place: Path, tmp_path: Path) -> None:
    """Predictions and accuracy are zero-shot among the texts (class folders matched to them by
    name) and agree with predict; without a prompt the audit refuses before writing a file."""
    model = quiet(transformers.CLIPModel.from_pretrained, place / "clip").eval()
    tokenizer = transformers.CLIPProcessor.from_pretrained(place / "clip").tokenizer
    with pytest.raises(InvalidInput, match=r"^target_from: .*Prompt\('a cat'"):
        quiet(audit, place / "data", model, out=tmp_path / "refused", tokenizer=tokenizer)
    assert not (tmp_path / "refused" / "results.csv").exists()
    target = Prompt(TEXTS[0], against=[TEXTS[1]])
    result = quiet(
        audit, place / "data", model, out=tmp_path / "run", target_from=target, tokenizer=tokenizer
    )
    assert result.summary["explained"] == 4 and result.summary["with_truth"] == 4
    with (tmp_path / "run" / "results.csv").open(newline="") as table:
        records = list(csv.DictReader(table))
    pictures = [str(place / "data" / r["name"]) for r in records]
    shares = quiet(seewhy.predict, model, pictures, labels=TEXTS[:2], tokenizer=tokenizer)
    for record, top in zip(records, shares, strict=True):
        assert record["true_label"] == Path(record["name"]).parent.name
        assert record["pred_label"] == top[0].label
        assert np.isclose(float(record["confidence"]), top[0].probability, atol=1e-4)
    manifest = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert manifest["config"]["target"] == target.to_json()  # what a resumed run must match


def test_audit_asks_a_generative_model_and_refuses_what_it_cannot_keep(
    place: Path, tmp_path: Path, llava: tuple[Any, Any]
) -> None:
    """With prompt= each image's own answer is explained (the whole folder, no failure);
    without one, or with one map per answer token, one line before any file is written."""
    model, processor = llava
    data = place / "data" / TEXTS[0]
    with pytest.raises(InvalidInput, match=r"^target_from: .*prompt="):
        quiet(audit, data, model, out=tmp_path / "no", processor=processor)
    per_token = Answer("a cat", prompt="what", per_token=True)
    with pytest.raises(InvalidInput, match=r"^target_from: .*per_token"):
        audit(data, model, out=tmp_path / "no", processor=processor, target_from=per_token)
    assert not (tmp_path / "no").exists() or not any((tmp_path / "no").iterdir())
    result = quiet(
        audit, data, model, out=tmp_path / "run", processor=processor, prompt="what is this ?"
    )
    assert result.summary["explained"] == 2 and result.failed == 0


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_command_line_reaches_a_clip_folder_everywhere(
    place: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """layers marks the tower's layer, evaluate scores the prompt, sanity runs, the audit
    takes prompt:A|B; a dual encoder without a prompt is one line and exit 1; the user's
    folder is byte-identical afterwards."""
    before = _digests(place / "clip")
    model = ["--model", str(place / "clip")]
    photo = str(place / "data" / TEXTS[0] / "0.png")
    assert main(["layers", *model]) == 0
    listed = capsys.readouterr().out
    assert "* vision_model.encoder.layers.1.layer_norm1" in listed and "text_model" not in listed
    zero_shot = "prompt:" + "|".join(TEXTS[:2])
    scored = tmp_path / "scores.json"
    argv = ["evaluate", photo, *model, "--target", zero_shot, "--metrics", "deletion"]
    assert main([*argv, "--steps", "2", "--json", str(scored)]) == 0, capsys.readouterr().err
    entry = json.loads(scored.read_text())["methods"]["gradcam"]
    assert entry["target_spec"]["text"] == TEXTS[0]
    assert 0.0 < entry["metrics"]["deletion"]["mean_curve"][0] < 1.0  # the prompt's share
    plot = tmp_path / "sanity.png"
    sanity = ["sanity", photo, *model, "--target", zero_shot, "--steps", "2", "--out", str(plot)]
    assert main(sanity) == 0, capsys.readouterr().err
    assert plot.exists()
    out = tmp_path / "audit"
    run = ["audit", str(place / "data"), *model, "--out", str(out), "--quiet"]
    assert main([*run, "--target-from", zero_shot]) == 0, capsys.readouterr().err
    assert main([*run[:-2], str(tmp_path / "refused"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("seewhy: error")] == [
        err.splitlines()[-1]
    ]
    assert "prompt:a cat|a dog" in err.splitlines()[-1]
    assert _digests(place / "clip") == before
