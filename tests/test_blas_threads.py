"""numpy's BLAS runs on one thread while seewhy works, and on the user's count everywhere else.

OpenBLAS's threads spin for about 0.1 s after each call; between the model's
passes that took the cores from the next pass (seewhy/_kit/blas.py has the
figures). What must hold: seewhy's own math sees one thread; the count the
user had is back afterwards, also after an error and when several threads
explain at once; a black box's function runs with the user's count.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import seewhy
from seewhy import maps, metrics
from seewhy._kit import blas

threadpoolctl = pytest.importorskip("threadpoolctl", reason="seewhy depends on threadpoolctl")
if not threadpoolctl.threadpool_info() or not any(
    lib["user_api"] == "blas" for lib in threadpoolctl.threadpool_info()
):  # pragma: no cover - numpy always loads a BLAS on the platforms seewhy supports
    pytest.skip("threadpoolctl finds no BLAS library here", allow_module_level=True)


def blas_threads() -> int:
    libs = threadpoolctl.threadpool_info()
    return max(lib["num_threads"] for lib in libs if lib["user_api"] == "blas")


@pytest.fixture
def users_count() -> Iterator[int]:
    """The user's count set to 2 (the suite itself runs with one thread), restored after."""
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        yield blas_threads()


def box(batch: np.ndarray) -> np.ndarray:
    """A black box scoring the mean of the image's left and right halves, and the count it saw."""
    seen.append(blas_threads())
    w = batch.shape[2] // 2
    return np.stack([batch[:, :, :w].mean((1, 2, 3)), batch[:, :, w:].mean((1, 2, 3))], axis=1)


seen: list[int] = []


def test_seewhy_math_on_one_thread_the_users_code_on_the_users_count(
    users_count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert users_count == 2
    during: list[int] = []
    upsample = maps.upsample

    def watched(*args: object, **kwargs: object) -> np.ndarray:
        during.append(blas_threads())
        return upsample(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(maps, "upsample", watched)
    seen.clear()
    images = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    e = seewhy.explain(seewhy.BlackBox(box, classes=2), images, "occlusion", window=8, stride=8)
    assert e.maps.shape == (2, 16, 16)
    assert during and set(during) == {1}  # seewhy's own math
    assert seen and set(seen) == {users_count}  # the black box's function
    assert blas_threads() == users_count  # and back afterwards

    seen.clear()
    curve = metrics.deletion(seewhy.BlackBox(box, classes=2), e, steps=4)
    assert len(curve.auc) == 2
    assert seen and set(seen) == {users_count}
    assert blas_threads() == users_count


def test_a_models_passes_run_with_the_users_count(users_count: int) -> None:
    """Only seewhy's math between the passes is on one thread: a framework may share
    numpy's BLAS (conda's PyTorch links the same MKL or OpenBLAS)."""
    pytest.importorskip("torch")
    from models import tiny_cnn

    model = tiny_cnn(3, 0)
    during: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, a: during.append(blas_threads()))
    try:
        images = np.random.default_rng(2).random((2, 32, 32, 3), dtype=np.float32)
        pre = seewhy.Preprocess(size=(32, 32))
        for method in ("gradcam", "saliency", "occlusion"):
            seewhy.explain(model, images, method, preprocess=pre)
    finally:
        handle.remove()
    assert during and set(during) == {users_count}
    assert blas_threads() == users_count


def test_the_count_is_restored_after_an_error(users_count: int) -> None:
    with pytest.raises(seewhy.SeewhyError):
        seewhy.explain(seewhy.BlackBox(box, classes=2), np.zeros((1, 16, 16, 3)), "gradcam")
    assert blas_threads() == users_count


def test_threads_explaining_at_once_leave_the_users_count(users_count: int) -> None:
    images = np.random.default_rng(1).random((2, 16, 16, 3), dtype=np.float32)
    model = seewhy.BlackBox(box, classes=2)
    start = threading.Barrier(4)

    def one(_: int) -> np.ndarray:
        start.wait()
        return seewhy.explain(model, images, "occlusion", window=8, stride=8).maps

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    assert blas_threads() == users_count


def test_nested_entries_share_one_limit(users_count: int) -> None:
    with blas.one_blas_thread():
        assert blas_threads() == 1
        with blas.one_blas_thread():
            assert blas_threads() == 1
            with blas.users_blas_threads():
                assert blas_threads() == users_count
            assert blas_threads() == 1
        assert blas_threads() == 1
    assert blas_threads() == users_count
