"""seewhy.lightning.ExplainCallback: panels while a Lightning model trains, training untouched.

TensorBoard's writer and reader import TensorFlow whenever it is installed,
and TensorFlow must stay out of this (torch) process (keras_helpers), so the
logger tests hide it: TensorBoard then uses its own TensorFlow-free stub.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pl = pytest.importorskip(
    "lightning.pytorch", reason="needs lightning (pip install seewhy[lightning])"
)

from models import tiny_cnn  # noqa: E402
from seewhy.errors import InvalidInput, SeewhyError  # noqa: E402
from seewhy.lightning import ExplainCallback, _training_untouched  # noqa: E402

IMAGES = np.random.default_rng(9).normal(size=(2, 3, 12, 12)).astype(np.float32)
BATCHES_PER_EPOCH = 4


class Classifier(pl.LightningModule):  # type: ignore[misc]
    """tiny_cnn with BatchNorm and Dropout, so a stray train-mode pass or RNG draw would show."""

    def __init__(self) -> None:
        super().__init__()
        net = tiny_cnn(classes=3, seed=0).train()
        self.net = torch.nn.Sequential(
            torch.nn.BatchNorm2d(3), *net[:-1], torch.nn.Dropout(0.5), net[-1]
        )

    def forward(self, x: Any) -> Any:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def _loader() -> Any:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(16, 3, 12, 12)).astype(np.float32))
    y = torch.arange(16) % 3
    data = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(data, batch_size=16 // BATCHES_PER_EPOCH, shuffle=True)


def _fit(
    tmp_path: Path, callbacks: list[Any], *, epochs: int = 2, logger: Any = False, **settings: Any
) -> Classifier:
    _seed(0)
    model = Classifier()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        log_every_n_steps=1,
        **settings,
    )
    trainer.fit(model, _loader())
    return model


def _seed(seed: int) -> None:
    """What ``seed_everything`` does, without leaving environment variables behind."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


class Probe(pl.Callback):  # type: ignore[misc]
    """Records what the callback promises to leave alone, at the hooks it uses."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def _record(self, module: Any) -> None:
        self.seen.append(
            {
                "training": [m.training for m in module.modules()],
                "grad": [None if p.grad is None else p.grad.clone() for p in module.parameters()],
                "requires_grad": [p.requires_grad for p in module.parameters()],
                "rng": torch.get_rng_state().clone(),
                "numpy_rng": np.random.get_state()[1].copy(),
                "random": random.getstate(),
            }
        )

    def on_train_batch_end(self, trainer: Any, module: Any, *args: Any) -> None:
        self._record(module)

    def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
        self._record(module)


def _same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["training"] == b["training"] and a["requires_grad"] == b["requires_grad"]
    assert a["random"] == b["random"]
    np.testing.assert_array_equal(a["numpy_rng"], b["numpy_rng"])
    assert torch.equal(a["rng"], b["rng"])
    for g, h in zip(a["grad"], b["grad"], strict=True):
        assert (g is None) == (h is None)
        if g is not None:
            assert torch.equal(g, h)


@pytest.mark.parametrize("method", ["gradcam", "smoothgrad"])
def test_training_is_the_same_with_and_without_the_callback(tmp_path: Path, method: str) -> None:
    plain = _fit(tmp_path / "plain", [])
    before, after = Probe(), Probe()
    settings = {"samples": 4} if method == "smoothgrad" else {}
    callback = ExplainCallback(
        IMAGES, method, every=1, every_n_steps=3, log_dir=tmp_path / "panels", **settings
    )
    watched = _fit(tmp_path / "watched", [before, callback, after])

    for name, value in plain.state_dict().items():  # weights, BatchNorm statistics, counters
        assert torch.equal(value, watched.state_dict()[name]), name
    assert len(before.seen) == len(after.seen) == 2 * BATCHES_PER_EPOCH + 2
    assert any(s["training"][0] for s in before.seen), "Lightning trains in train mode"
    assert all(g is not None for g in before.seen[-1]["grad"]), "grads are there to keep"
    for a, b in zip(before.seen, after.seen, strict=True):
        _same_state(a, b)

    names = [p.name for p in callback.written]  # steps 3 and 6, epochs 1 and 2, in order
    stems = ["step0000003", "epoch0001", "step0000006", "epoch0002"]
    assert names == [f"seewhy_{method}_{s}_img{i:02d}.png" for s in stems for i in (0, 1)]
    for path in callback.written:
        with Image.open(path) as panel:
            assert panel.mode == "RGB" and panel.width > panel.height  # picture | map | overlay


def test_every_n_epochs_only_with_panel_options(tmp_path: Path) -> None:
    callback = ExplainCallback(
        IMAGES,
        "gradcam",
        every=2,
        log_dir=tmp_path / "panels",
        panel_options={"arrangement": "vertical"},
    )
    _fit(tmp_path, [callback], epochs=3)
    assert sorted(p.name for p in (tmp_path / "panels").iterdir()) == [
        "seewhy_gradcam_epoch0002_img00.png",
        "seewhy_gradcam_epoch0002_img01.png",
    ]
    with Image.open(callback.written[0]) as panel:
        assert panel.height > panel.width  # picture over map over overlay


def test_steps_are_optimizer_steps_under_gradient_accumulation(tmp_path: Path) -> None:
    callback = ExplainCallback(
        IMAGES[:1], "gradcam", every=None, every_n_steps=1, log_dir=tmp_path / "panels"
    )
    _fit(tmp_path, [callback], epochs=2, accumulate_grad_batches=2)
    steps = 2 * BATCHES_PER_EPOCH // 2  # one optimizer step per two batches, none before the first
    expected = [f"seewhy_gradcam_step{s:07d}_img00.png" for s in range(1, steps + 1)]
    assert [p.name for p in callback.written] == expected


def test_tensorboard_logger_gets_the_panels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboard")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # TensorBoard's stub instead
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path / "tb", name="run")
    callback = ExplainCallback(IMAGES, "gradcam", every=2, log_dir=tmp_path / "panels")
    _fit(tmp_path, [callback], epochs=2, logger=logger)

    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["seewhy/gradcam/0", "seewhy/gradcam/1"]
    for i, path in enumerate(callback.written):
        (shown,) = events.Images(f"seewhy/gradcam/{i}")
        assert shown.step == 2 * BATCHES_PER_EPOCH  # the global step, as the loss curves use
        np.testing.assert_array_equal(_decode(shown.encoded_image_string), _pixels(path))


def test_wandb_logger_gets_the_panels_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="seewhy-test")
    callback = ExplainCallback(IMAGES, "gradcam", every=2, log_dir=tmp_path / "panels")
    try:
        _fit(tmp_path, [callback], epochs=2, logger=logger)
    finally:
        logger.experiment.finish()

    run_dirs = list(tmp_path.glob("wandb/offline-run-*"))
    assert len(run_dirs) == 1
    logged = sorted(run_dirs[0].glob("files/media/images/seewhy/gradcam_*.png"))
    assert len(logged) == 2
    expected = sorted(_pixels(p).tobytes() for p in callback.written)
    assert sorted(_pixels(p).tobytes() for p in logged) == expected


def _decode(png: bytes) -> np.ndarray:
    import io

    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_random_streams_are_restored() -> None:
    def draw() -> tuple[float, float, float]:
        return torch.rand(1).item(), float(np.random.rand()), random.random()

    module = torch.nn.Linear(1, 1)  # (made before seeding: its initialisation draws too)
    _seed(1)
    expected = draw()
    _seed(1)
    with _training_untouched(module):
        assert draw() == expected  # the streams are live inside ...
        draw()
    assert draw() == expected  # ... and back where they were afterwards


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"every": 0}, "ExplainCallback: every: expected a positive integer, got 0"),
        ({"every_n_steps": 1.5}, "every_n_steps: expected a positive integer, got 1.5"),
        ({"every": None}, "every: expected a number of epochs"),
    ],
)
def test_bad_settings_are_one_line_errors(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace(".", r"\.")):
        ExplainCallback(IMAGES, **settings)


@pytest.mark.parametrize(
    ("method", "settings", "hint"),
    [
        ("smoothgrad", {"sample": 4}, "samples"),  # a method setting, misspelt
        ("gradcam", {"layr": "net.2"}, "layer"),  # one of explain's own keywords
        ("gradcan", {}, "gradcam"),  # the method itself
    ],
)
def test_a_misspelling_is_refused_where_the_callback_is_made(
    tmp_path: Path, method: str, settings: dict[str, Any], hint: str
) -> None:
    """Not at the first logging point, after an epoch of training was spent."""
    with pytest.raises(SeewhyError) as caught:  # InvalidInput, MethodNotFound
        ExplainCallback(IMAGES, method, log_dir=tmp_path, **settings)
    message = str(caught.value)
    assert "\n" not in message and hint in message
    assert not tmp_path.joinpath("seewhy_logs").exists() and not list(tmp_path.iterdir())


def test_explain_keywords_reach_every_explanation(tmp_path: Path) -> None:
    import seewhy

    chosen = {"target": 2, "score": "probability", "layer": "net.2"}
    callback = ExplainCallback(IMAGES, "gradcam", every=2, log_dir=tmp_path, **chosen)
    model = _fit(tmp_path / "run", [callback], epochs=2).eval()  # logged after the last step

    def panels(**settings: Any) -> list[np.ndarray]:
        ex = seewhy.explain(model, IMAGES, "gradcam", **settings)
        return [np.asarray(ex.panel(i).convert("RGB")) for i in range(len(ex))]

    written = [_pixels(p) for p in callback.written]
    assert len(written) == 2
    for got, want, plain in zip(written, panels(**chosen), panels(), strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.shape != plain.shape or not np.array_equal(got, plain)


def test_is_a_lazy_submodule() -> None:
    import subprocess

    code = (
        "import sys, seewhy; assert 'lightning' not in sys.modules;"
        "seewhy.lightning.ExplainCallback; print('tensorflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"  # and it pulls no TensorFlow in next to torch


def test_the_settings_are_still_readable_by_their_old_attribute_names(tmp_path: Path) -> None:
    """``target``, ``layer``, ``score``... were attributes of the callback; reading them still
    works now that they travel in ``explain_settings``."""
    callback = ExplainCallback(
        IMAGES, "occlusion", log_dir=tmp_path, target=2, layer="net.2", window=(4, 4)
    )
    assert (callback.target, callback.layer, callback.score) == (2, "net.2", "logit")
    assert (callback.preprocess, callback.labels) == (None, None)
    assert callback.method_params == {"window": (4, 4)}
    assert ExplainCallback(IMAGES, "gradcam", log_dir=tmp_path, score="probability").score == (
        "probability"
    )
