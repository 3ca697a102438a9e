"""Issue 23.7, as the accident: a model is explained while another thread trains it.

Before the twin (``backends/torch/twin.py``), a pass put the user's modules in
eval mode for its duration, so the training thread's steps ran in eval mode
(50 of 300 steps in one try: BatchNorm stopped counting, dropout went off),
and an optimizer step in the middle of a pass gave autograd's raw "modified by
an inplace operation" traceback. Here the training thread checks, from inside
its own steps, that every module it runs is in training mode and that
BatchNorm counts each step; a weight changed mid-pass gives one line.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import seewhy
from models import bn_dropout_cnn
from seewhy.backends.model_lock import model_lock
from seewhy.errors import BackendError

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

# Grad-CAM and Guided Backprop take gradients (Guided routes every ReLU); Score-CAM
# and Ablation-CAM edit a layer's output; saliency takes input gradients.
METHODS = ("gradcam", "guided-backprop", "score-cam", "ablation-cam", "saliency")
WEIGHTS_CHANGED = "its weights changed while seewhy was explaining it"


def training_cnn(seed: int = 3) -> Any:
    """:func:`models.bn_dropout_cnn` with this file's sizes: 4 classes, in training mode, fresh
    BatchNorm statistics (with drawn ones a training step can leave a Grad-CAM map all zero)."""
    return bn_dropout_cnn(4, seed, widths=(8, 12), dropout=0.3, drawn_statistics=False)


def images(n: int = 2, size: int = 16, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(np.float32)


def no_hooks_anywhere(model: Any) -> bool:
    """No hook on any module of ``model``, and none registered for every module."""
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    module_hooks = any(len(getattr(m, name)) for m in model.modules() for name in names)
    global_hooks = nn.modules.module._global_forward_pre_hooks
    return not module_hooks and not global_hooks and not nn.modules.module._global_forward_hooks


class Trainer:
    """Trains ``model`` in its own thread and checks each step from inside it.

    Every module the step runs must be in training mode when it runs, each
    BatchNorm must count the step, dropout must drop, and a ReLU's gradient
    must be the plain one (Guided Backprop's rule, active in the explaining
    thread, must not reach this one). ``lock`` holds seewhy's model lock
    around ``optimizer.step()``, as the README advises.
    """

    def __init__(self, model: Any, *, lock: bool) -> None:
        self.model, self.lock = model, lock
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        self.norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        self.steps = 0
        self.overlapping = 0  # steps run while an explanation was in progress
        self.explaining = threading.Event()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.modes: list[tuple[str, bool]] = []
        self.dropped: list[float] = []

    def hooks(self) -> list[Any]:
        """The user's own hooks: they see only this thread's forwards (the test's filter)."""

        def note_mode(module: Any, args: Any) -> None:
            if threading.current_thread() is self.thread:
                self.modes.append((type(module).__name__, module.training))

        def note_dropout(module: Any, args: Any, output: Any) -> None:
            if threading.current_thread() is self.thread:
                self.dropped.append(float((output == 0).float().mean()))

        handles = [m.register_forward_pre_hook(note_mode) for m in self.model.modules()]
        handles.append(self.model[7].register_forward_hook(note_dropout))
        return handles

    def run(self, min_steps: int) -> int:
        self.thread = threading.current_thread()
        x = torch.from_numpy(images(8, seed=1))
        y = torch.arange(8) % 4
        handles = self.hooks()
        try:
            while self.steps < min_steps or not self.stop.is_set():
                counted = [int(bn.num_batches_tracked) for bn in self.norms]
                self.modes.clear()
                busy = self.explaining.is_set()
                loss = F.cross_entropy(self.model(x), y)
                self.optimizer.zero_grad()
                loss.backward()
                if self.lock:
                    with model_lock(self.model):
                        self.optimizer.step()
                else:
                    self.optimizer.step()
                self.overlapping += busy or self.explaining.is_set()
                eval_modules = [name for name, training in self.modes if not training]
                assert not eval_modules, f"step {self.steps} ran {eval_modules} in eval mode"
                assert len(self.modes) == len(list(self.model.modules()))
                after = [int(bn.num_batches_tracked) for bn in self.norms]
                assert after == [c + 1 for c in counted], f"step {self.steps}: BN did not count"
                assert self.dropped[-1] > 0.05, f"step {self.steps}: dropout did not drop"
                self.check_plain_relu()
                self.steps += 1
        finally:
            for handle in handles:
                handle.remove()
        return self.steps

    @staticmethod
    def check_plain_relu() -> None:
        x = torch.tensor([1.0, 2.0], requires_grad=True)
        (grad,) = torch.autograd.grad(F.relu(x), x, torch.tensor([-1.0, 1.0]))
        assert grad.tolist() == [-1.0, 1.0], "a guided ReLU ran in the training thread"


def explain_while(trainer: Trainer, x: np.ndarray, rounds: int) -> list[Any]:
    """Each method ``rounds`` times from this thread; an explanation or the error it raised."""
    outcomes: list[Any] = []
    for _ in range(rounds):
        for method in METHODS:
            trainer.explaining.set()
            try:
                outcomes.append(seewhy.explain(trainer.model, x, method))
            except BackendError as exc:
                outcomes.append(exc)
            finally:
                trainer.explaining.clear()
    trainer.stop.set()
    return outcomes


def race(model: Any, *, lock: bool, rounds: int = 2) -> tuple[Trainer, list[Any]]:
    trainer = Trainer(model, lock=lock)
    x = images()
    with ThreadPoolExecutor(2) as pool:
        steps = pool.submit(trainer.run, 20)
        try:
            outcomes = explain_while(trainer, x, rounds)
        finally:
            trainer.stop.set()
        steps.result(timeout=300)  # re-raises the training thread's assertion
    return trainer, outcomes


def test_training_steps_stay_in_training_mode_while_another_thread_explains() -> None:
    model = training_cnn()
    trainer, outcomes = race(model, lock=True)
    assert trainer.steps >= 20 and trainer.overlapping > 0, (trainer.steps, trainer.overlapping)
    # the step under seewhy's lock never lands inside a pass: every explanation ran
    assert all(isinstance(o, seewhy.Explanation) for o in outcomes), outcomes
    assert len(outcomes) == 2 * len(METHODS)
    for outcome in outcomes:
        assert outcome.maps.shape == (2, 16, 16) and np.isfinite(outcome.maps).all()
        assert outcome.maps.max() > 0
    assert all(m.training for m in model.modules())
    assert no_hooks_anywhere(model)


def test_without_the_lock_a_pass_gets_its_map_or_one_line_on_the_changed_weights() -> None:
    model = training_cnn(seed=5)
    trainer, outcomes = race(model, lock=False)
    assert trainer.steps >= 20 and trainer.overlapping > 0
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    for error in errors:  # never autograd's traceback, always the same line
        assert WEIGHTS_CHANGED in str(error) and "\n" not in str(error)
    assert len(errors) < len(outcomes), "no explanation got through between the steps"
    assert all(m.training for m in model.modules())
    assert no_hooks_anywhere(model)


# -- a weight changed in the middle of a pass, deterministically ------------------------


class StepsInForward(nn.Module):
    """A model whose forward ends with an optimizer step (as if another thread stepped
    while seewhy's pass is between its forward and its gradient), ``steps_left`` times;
    with ``graded_only``, only in forwards that keep a graph (a gradient follows)."""

    def __init__(self, steps_left: int, graded_only: bool = False) -> None:
        super().__init__()
        torch.manual_seed(11)
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(6, 3)
        for p in self.parameters():
            p.grad = torch.full_like(p, 0.1)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=0.01)
        self.steps_left = [steps_left]  # a list: shared by seewhy's twin of this module
        self.forwards = [0]
        self.graded_only = graded_only

    def forward(self, x: Any) -> Any:
        out = self.head(self.body(x))
        self.forwards[0] += 1
        if self.steps_left[0] > 0 and (torch.is_grad_enabled() or not self.graded_only):
            self.steps_left[0] -= 1
            self.optimizer.step()  # in place: autograd saved the old head weight
        return out


@pytest.mark.parametrize("method", ["gradcam", "saliency", "score-cam", "occlusion"])
def test_a_step_in_every_pass_gives_one_line_not_autograds_traceback(method: str) -> None:
    model = StepsInForward(steps_left=10**9).eval()
    with pytest.raises(BackendError) as caught:
        seewhy.explain(model, images(size=12), method)
    message = str(caught.value)
    assert message.startswith("model: " + WEIGHTS_CHANGED)
    assert "\n" not in message and "inplace" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert model.forwards[0] >= 3  # tried again before giving up
    assert no_hooks_anywhere(model)


def test_a_pass_a_step_interrupted_runs_again_on_the_new_weights() -> None:
    model = StepsInForward(steps_left=1, graded_only=True).eval()
    x = images(size=12)
    got = seewhy.explain(model, x, "gradcam")
    assert model.steps_left[0] == 0
    settled = seewhy.explain(model, x, "gradcam")  # no step any more
    np.testing.assert_allclose(got.maps, settled.maps, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.logits, settled.logits, rtol=1e-5, atol=1e-6)


# -- what the twin follows, and where it gives up ----------------------------------------


def pooled(pool: Any, x: Any) -> Any:
    return pool(x).flatten(1)


class Referrer(nn.Module):
    """Reaches its submodules through a plain list, a bound method, a closure, a partial and
    an alias (dropout in training mode shows a call that reached the user's module)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.drop = nn.Dropout(0.5)
        self.drop_more = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)
        self.head = self.fc  # an alias, as timm and HF models have
        self.__dict__["stages"] = [self.body]  # a plain list: not in _modules
        self.drop_fn = self.drop.forward  # a bound method: runs without __call__
        self.pool_fn = functools.partial(pooled, self.pool)
        drop_more = self.drop_more
        self.closure = lambda x: drop_more(x)

    def forward(self, x: Any) -> Any:
        return self.head(self.pool_fn(self.closure(self.drop_fn(self.stages[0](x)))))


def reference_maps(model: Any, x: np.ndarray, method: str) -> np.ndarray:
    frozen = copy.deepcopy(model).eval()
    return seewhy.explain(frozen, x, method).maps


@contextlib.contextmanager
def calls_reaching(model: Any) -> Iterator[list[str]]:
    """A user's hook on every module, noting the calls that reach an original module (the
    twin's copy of the hook is called with the twin's module)."""
    originals = list(model.modules())
    reached: list[str] = []

    def note(module: Any, args: Any) -> None:
        if any(module is m for m in originals):
            reached.append(type(module).__name__)

    handles = [m.register_forward_pre_hook(note) for m in originals]
    try:
        yield reached
    finally:
        for handle in handles:
            handle.remove()


def test_submodules_held_outside_the_module_tree_are_explained_on_the_twin() -> None:
    model = Referrer().train()
    x = images(size=12)
    plain = nn.Sequential(model.body, model.pool, nn.Flatten(), model.fc)  # dropout is off
    expected = {m: reference_maps(plain, x, m) for m in ("gradcam", "saliency")}
    stats = model.body[1].running_mean.clone()
    with calls_reaching(model) as reached, warnings.catch_warnings():
        warnings.simplefilter("error")  # no "explained in place" warning
        for method, want in expected.items():
            for _ in range(2):  # dropout reached through the bound method would differ
                got = seewhy.explain(model, x, method).maps
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert reached == [], f"the pass ran the user's own modules {reached}"
    assert all(m.training for m in model.modules())
    torch.testing.assert_close(model.body[1].running_mean, stats)
    assert no_hooks_anywhere(model)


class Stem:
    """Not a module: an object of the user's holding two modules as its attributes."""

    def __init__(self, conv: Any, bn: Any) -> None:
        self.conv, self.bn = conv, bn

    def __call__(self, x: Any) -> Any:
        return F.relu(self.bn(self.conv(x)))


class Hidden(nn.Module):
    """Calls its stem through an object of its own, which the twin cannot follow."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(9)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)
        self.stem = Stem(self.conv, self.bn)

    def forward(self, x: Any) -> Any:
        return self.fc(F.adaptive_avg_pool2d(self.stem(x), 1).flatten(1))


def test_a_reference_the_twin_cannot_follow_is_explained_in_place_and_said_once() -> None:
    model = Hidden().train()
    x = images(size=12)
    plain = nn.Sequential(  # the same modules, reached through the tree
        model.conv, model.bn, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), model.fc
    )
    expected = seewhy.explain(plain, x, "saliency").maps
    stats = model.bn.running_mean.clone()
    said = "explains this Hidden in place: its Stem holds the Conv2d 'conv'"
    with pytest.warns(UserWarning, match=said):
        got = seewhy.explain(model, x, "saliency").maps
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = seewhy.explain(model, x, "saliency").maps
    np.testing.assert_allclose(again, expected, rtol=1e-5, atol=1e-6)
    assert all(m.training for m in model.modules())  # eval mode was put back
    torch.testing.assert_close(model.bn.running_mean, stats)
    assert no_hooks_anywhere(model)


def test_parametrized_weights_are_read_without_a_power_iteration_on_the_users_model() -> None:
    from torch.nn.utils import parametrizations

    torch.manual_seed(2)
    model = nn.Sequential(
        parametrizations.spectral_norm(nn.Conv2d(3, 8, 3, padding=1)),
        nn.ReLU(),
        parametrizations.weight_norm(nn.Conv2d(8, 8, 3, padding=1)),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).train()
    x = images(size=12)
    expected = reference_maps(model, x, "gradcam")
    u = model[0].parametrizations.weight[0]._u.clone()
    got = seewhy.explain(model, x, "gradcam").maps
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[0].parametrizations.weight[0]._u, u)  # no iteration ran
    assert all(m.training for m in model.modules())


def test_a_layer_the_user_swaps_between_explanations_is_the_one_explained() -> None:
    model = training_cnn().eval()
    x = images()
    first = seewhy.explain(model, x, "gradcam")
    torch.manual_seed(21)
    model[10] = nn.Linear(12, 4)  # a new head, as after reset_classifier
    second = seewhy.explain(model, x, "gradcam")
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(second.logits, logits, rtol=1e-5, atol=1e-5)
    assert not np.allclose(first.logits, second.logits)


def test_running_statistics_read_by_a_pass_are_a_copy_that_follows_the_model() -> None:
    model = training_cnn().eval()
    x = images()
    before = seewhy.explain(model, x, "saliency")
    with torch.no_grad():
        model[1].running_mean.add_(1.0)  # as a training step's BatchNorm does, in place
    after = seewhy.explain(model, x, "saliency")
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(after.logits, logits, rtol=1e-5, atol=1e-5)
    assert not np.allclose(before.logits, after.logits)


def test_a_model_explained_under_inference_mode_still_gives_gradients_afterwards() -> None:
    """The twin's buffer copies made inside ``torch.inference_mode`` must not be inference
    tensors: a later gradient through BatchNorm saves them."""
    model = training_cnn().eval()
    x = images()
    with torch.inference_mode():
        seewhy.explain(model, x, "occlusion")
    got = seewhy.explain(model, x, "saliency")
    assert np.isfinite(got.maps).all() and got.maps.max() > 0


@pytest.mark.parametrize("method", ["ablation-cam", "score-cam"])
def test_a_locked_step_never_lands_between_the_passes_of_one_explanation(method: str) -> None:
    """Ablation-CAM compares edited passes with a base pass: a step between them once
    gave a map of all zeros. Every pass of one explanation sees one set of weights."""
    model = training_cnn(seed=9)
    explaining = threading.current_thread()
    seen: list[float] = []

    def note_weights(module: Any, args: Any) -> None:
        if threading.current_thread() is explaining:
            seen.append(float(sum(p.detach().sum() for p in model.parameters())))

    trainer = Trainer(model, lock=True)
    handle = model.register_forward_pre_hook(note_weights)
    try:
        with ThreadPoolExecutor(1) as pool:
            steps = pool.submit(trainer.run, 5)
            try:
                explainer = seewhy.Explainer(model, method)  # its size found by trying, once
                versions = []
                for _ in range(3):
                    seen.clear()
                    explainer.explain(images())
                    versions.append(set(seen))
            finally:
                trainer.stop.set()
            steps.result(timeout=300)
    finally:
        handle.remove()
    assert trainer.steps >= 5
    assert all(len(v) == 1 for v in versions), [len(v) for v in versions]
