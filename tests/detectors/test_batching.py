"""MicroBatcher: frames from several camera threads become one batched inference."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from crowdwatch.config.counting import CountingConfig
from crowdwatch.config.detector import OnnxDetectorConfig, UltralyticsDetectorConfig
from crowdwatch.core.types import Detections
from crowdwatch.detectors.base import DetectorClosedError
from crowdwatch.detectors.batching import MicroBatcher
from crowdwatch.runtime.models import ModelSet

Image = npt.NDArray[np.uint8]
DEADLINE_S = 20.0  # generous: only a hang gets near it


def frame(value: int) -> Image:
    return np.full((8, 8, 3), value, dtype=np.uint8)


class FakeBatchDetector:
    """Answers each image with one box whose confidence encodes the image's pixel value, so a
    caller can tell its own answer from another camera's."""

    name = "fake"

    def __init__(self, fail_when: Callable[[Sequence[Image]], bool] = lambda _: False) -> None:
        self.batches: list[int] = []
        self.closed = False
        self._fail_when = fail_when

    def detect(self, image: Image) -> Detections:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[Image]) -> list[Detections]:
        self.batches.append(len(images))
        if self._fail_when(images):
            raise RuntimeError("CUDA out of memory")
        return [
            Detections(
                np.array([[0, 0, 4, 4]], dtype=np.float32),
                np.array([im[0, 0, 0] / 255], dtype=np.float32),
                np.zeros(1, dtype=np.int32),
            )
            for im in images
        ]

    def close(self) -> None:
        self.closed = True


def run_callers(batcher: MicroBatcher, values: Sequence[int]) -> dict[int, float | Exception]:
    """Each value from its own thread, all released at once; what each caller got back."""
    got: dict[int, float | Exception] = {}
    barrier = threading.Barrier(len(values))

    def call(v: int) -> None:
        barrier.wait()
        try:
            got[v] = float(batcher.detect(frame(v)).confidence[0])
        except Exception as exc:
            got[v] = exc

    threads = [threading.Thread(target=call, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    assert not any(t.is_alive() for t in threads), "a caller never got its answer"
    return got


def test_callers_arriving_together_share_one_batch_and_get_their_own_answer() -> None:
    inner = FakeBatchDetector()
    # A wait far longer than the deadline: the batch must run as soon as it is full.
    batcher = MicroBatcher(inner, max_batch=4, max_wait_s=60.0)
    got = run_callers(batcher, [10, 20, 30, 40])
    assert inner.batches == [4]
    assert got == {v: pytest.approx(v / 255) for v in (10, 20, 30, 40)}
    batcher.close()


def test_a_lone_frame_runs_after_the_wait() -> None:
    inner = FakeBatchDetector()
    batcher = MicroBatcher(inner, max_batch=8, max_wait_s=0.01)
    assert batcher.detect(frame(7)).confidence[0] == pytest.approx(7 / 255)
    assert inner.batches == [1]
    batcher.close()


def test_batches_never_exceed_the_maximum() -> None:
    inner = FakeBatchDetector()
    batcher = MicroBatcher(inner, max_batch=2, max_wait_s=0.05)
    got = run_callers(batcher, [1, 2, 3, 4, 5])
    assert sorted(got) == [1, 2, 3, 4, 5]
    assert all(not isinstance(v, Exception) for v in got.values())
    assert sum(inner.batches) == 5
    assert max(inner.batches) <= 2
    batcher.close()


def test_many_frames_from_one_caller_are_batched_and_answered_in_order() -> None:
    # The tiles of one frame: queued together, split at max_batch, answers in the caller's order.
    inner = FakeBatchDetector()
    batcher = MicroBatcher(inner, max_batch=4, max_wait_s=0.05)
    got = batcher.detect_batch([frame(v) for v in range(1, 11)])
    assert [float(d.confidence[0]) for d in got] == pytest.approx([v / 255 for v in range(1, 11)])
    assert inner.batches == [4, 4, 2]  # all ten were queued at once
    batcher.close()


def test_a_failed_batch_fails_its_callers_and_the_next_batch_works() -> None:
    inner = FakeBatchDetector(fail_when=lambda images: any(im[0, 0, 0] == 99 for im in images))
    batcher = MicroBatcher(inner, max_batch=2, max_wait_s=60.0)
    got = run_callers(batcher, [99, 50])
    assert all(isinstance(v, RuntimeError) and "out of memory" in str(v) for v in got.values())
    assert run_callers(batcher, [60, 70]) == {60: pytest.approx(60 / 255), 70: pytest.approx(70 / 255)}
    batcher.close()


def test_a_failing_batch_observer_does_not_stop_the_detector(caplog: pytest.LogCaptureFixture) -> None:
    """The observer (a metric) once ran before the answers were set, outside the dispatcher's
    error handling: one failure killed the dispatcher and every later caller waited forever."""

    def broken_metric(size: int) -> None:
        raise ValueError("metric exploded")

    batcher = MicroBatcher(FakeBatchDetector(), max_batch=2, max_wait_s=0.0, on_batch=broken_metric)
    with ThreadPoolExecutor(1) as pool:  # a regression fails on the timeout instead of hanging
        for value in (10, 20):
            got = pool.submit(batcher.detect, frame(value)).result(timeout=10.0)
            assert got.confidence[0] == pytest.approx(value / 255)
    assert "the batch observer failed" in caplog.text
    batcher.close()


def test_a_bad_frame_fails_only_its_own_caller() -> None:
    inner = FakeBatchDetector()
    batcher = MicroBatcher(inner, max_batch=4, max_wait_s=0.0)
    with pytest.raises(ValueError, match="BGR uint8"):
        batcher.detect(np.zeros((8, 8), dtype=np.uint8))
    assert inner.batches == []
    assert batcher.detect(frame(3)).confidence[0] == pytest.approx(3 / 255)
    batcher.close()


def test_a_detector_answering_the_wrong_number_of_frames_is_an_error() -> None:
    class Short(FakeBatchDetector):
        def detect_batch(self, images: Sequence[Image]) -> list[Detections]:
            return super().detect_batch(images)[:-1]

    batcher = MicroBatcher(Short(), max_batch=1, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="0 results for 1 images"):
        batcher.detect(frame(1))
    batcher.close()


def test_close_closes_the_model_and_refuses_more_frames() -> None:
    inner = FakeBatchDetector()
    batcher = MicroBatcher(inner, max_batch=2, max_wait_s=0.0)
    batcher.detect(frame(1))
    batcher.close()
    batcher.close()  # idempotent
    assert inner.closed
    with pytest.raises(DetectorClosedError):
        batcher.detect(frame(1))


@pytest.mark.parametrize(
    ("max_batch", "max_wait_s", "problem"), [(0, 0.01, "max_batch"), (2, -1.0, "max_wait_s")]
)
def test_bad_settings_are_refused(max_batch: int, max_wait_s: float, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        MicroBatcher(FakeBatchDetector(), max_batch=max_batch, max_wait_s=max_wait_s)


@pytest.mark.parametrize(
    ("config", "batched"),
    [
        (UltralyticsDetectorConfig(batch_size=4), True),
        (UltralyticsDetectorConfig(), False),
        (OnnxDetectorConfig(), False),
    ],
)
def test_model_set_batches_only_when_configured(
    config: UltralyticsDetectorConfig | OnnxDetectorConfig, batched: bool, tmp_path: Path
) -> None:
    inner = FakeBatchDetector()
    sizes: list[int] = []
    models = ModelSet(config, CountingConfig(), tmp_path, detector=inner, on_batch=sizes.append)
    assert models.detect(frame(5)).confidence[0] == pytest.approx(5 / 255)
    assert sizes == ([1] if batched else [])
    models.close()
    assert inner.closed
