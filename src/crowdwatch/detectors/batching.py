"""Batching frames across cameras: each camera thread calls `detect(image)` as usual and blocks;
one dispatcher thread gathers what arrives within a short window into one batched inference.

On a GPU one batch of N frames costs far less than N single frames (the kernels are launch-
and memory-bound at batch 1), so a worker running many cameras over one model gains throughput
for a few milliseconds of added latency. On a CPU it gains nothing: keep `batch_size: 1` there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from crowdwatch.core.types import Detections
from crowdwatch.detectors.base import Detector, DetectorClosedError, check_image

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]


@runtime_checkable
class BatchDetector(Detector, Protocol):
    def detect_batch(self, images: Sequence[Image]) -> list[Detections]:
        """`detect` for several images in one inference; results in the same order."""
        ...


@dataclass(slots=True)
class _Request:
    image: Image
    result: Future[Detections] = field(default_factory=Future)


# Told the size of every batch run (for a histogram), so the batcher needs no metrics library.
BatchObserver = Callable[[int], None]


class MicroBatcher:
    """A Detector that forwards to `inner.detect_batch` in batches of up to `max_batch`,
    waiting at most `max_wait_s` after the first queued frame for others to join it.

    An error in a batch is raised in every caller of that batch; later batches go on."""

    def __init__(
        self,
        inner: BatchDetector,
        *,
        max_batch: int,
        max_wait_s: float,
        on_batch: BatchObserver | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative, got {max_wait_s}")
        self.name = inner.name
        self._inner = inner
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: list[_Request] = []
        self._cond = threading.Condition()
        self._closed = False
        # Started lazily: building a detector must not start threads nobody asked for yet.
        self._thread: threading.Thread | None = None

    def detect(self, image: Image) -> Detections:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[Image]) -> list[Detections]:
        """Queue all `images` at once (the tiles of one frame, say): they share batches with
        each other and with other cameras' frames, never more than `max_batch` per inference."""
        for image in images:
            check_image(image)  # a bad frame fails its own caller, not the whole batch
        requests = [_Request(image) for image in images]
        with self._cond:
            if self._closed:
                raise DetectorClosedError(f"detector {self.name} is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._dispatch, name="detect-batcher", daemon=True)
                self._thread.start()
            self._queue.extend(requests)
            self._cond.notify_all()
        return [r.result.result() for r in requests]

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._inner.close()

    def _dispatch(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                results = self._inner.detect_batch([r.image for r in batch])
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"detector {self.name} returned {len(results)} results for {len(batch)} images"
                    )
            except Exception as exc:
                for r in batch:
                    r.result.set_exception(exc)
                continue
            for r, detections in zip(batch, results, strict=True):
                r.result.set_result(detections)
            if self._on_batch is not None:
                try:
                    self._on_batch(len(batch))
                except Exception:  # a metric must not stop every camera's detections
                    log.exception("detector %s: the batch observer failed", self.name)

    def _next_batch(self) -> list[_Request] | None:
        """Wait for a first frame, then up to `max_wait_s` for the batch to fill. None once
        closed with nothing left: frames queued before `close` are still served."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            # A monotonic deadline, not a sleep: the wait ends early as soon as the batch is full.
            deadline = time.monotonic() + self._max_wait_s
            while len(self._queue) < self._max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            return batch
