"""A camera or video file read by OpenCV in a background thread (DESIGN 6).

Modes:
- live streams, and files with realtime=True: latest-frame semantics. A sampled frame not
  taken before the next one is replaced and counted as stale. Realtime files are paced at
  their own frame rate, as a live camera would deliver them.
- files with realtime=False (offline analysis): no pacing and no dropping; the reader waits
  until the consumer took each sampled frame. Times are video times: Frame.ts = wall time at
  start + position in the video, Frame.mono = monotonic time at start + position.

Files are sampled on their own timeline (frame index / fps), streams on the capture clock.
Status events (see health.py) are sent from the reader thread through `on_status`.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from crowdwatch.config.camera import CameraConfig
from crowdwatch.core.redact import redact_url
from crowdwatch.core.types import CameraStatusEvent, EventType, Frame
from crowdwatch.ingest.backoff import Backoff
from crowdwatch.ingest.base import SourceStats, StatusCallback
from crowdwatch.ingest.capture import Capture, CaptureFactory, SourceOpenError, open_capture
from crowdwatch.ingest.health import Health, StatusChange
from crowdwatch.ingest.mailbox import Mailbox
from crowdwatch.ingest.sampling import Sampler

logger = logging.getLogger(__name__)

# A stream whose reads fail this many times in a row is treated as lost and reopened; for a
# file it means the rest is unreadable (a truncated file) and counts as its end.
MAX_FAILED_READS_IN_A_ROW = 20
# Used when a file does not say its frame rate.
FALLBACK_FPS = 25.0
# How long a connection must have delivered frames before the reconnect waits start over.
STABLE_AFTER_S = 10.0
# A paced file more than this far behind its own clock stops trying to catch up.
_MAX_PACING_LAG_S = 1.0
_FPS_WINDOW = 32


class _Outcome(enum.Enum):
    ENDED = "ended"  # a non-looping file was read to its end
    LOOP = "loop"  # a looping file reached its end: start again at once
    FAILED = "failed"  # open failed or the capture was lost: back off, then reconnect
    STOPPED = "stopped"  # close() was called


class _LostError(Exception):
    """The open capture stopped delivering; the message is the (redacted) reason."""


class OpenCVSource:
    """Implements `Source`. Use as a context manager, or call start() and close()."""

    def __init__(
        self,
        config: CameraConfig,
        on_status: StatusCallback,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
        rng: random.Random | None = None,
        capture_factory: CaptureFactory = open_capture,
    ) -> None:
        """`sleep(seconds)` is used for pacing and backoff; the default waits on the stop
        event so that close() interrupts it. `capture_factory` opens the source (tests pass
        fakes); it raises SourceOpenError with a redacted reason."""
        self.camera_id = config.id
        self._config = config
        self._url = redact_url(config.url)
        self._on_status = on_status
        self._clock = clock
        self._wall_clock = wall_clock
        self._stop = threading.Event()
        self._sleep: Callable[[float], object] = sleep if sleep is not None else self._stop.wait
        self._open_capture = capture_factory
        self._backoff = Backoff(config.reconnect, rng if rng is not None else random.Random())
        self._opened_at = 0.0  # when the current capture was opened (self._clock)
        self._health = Health(config.offline_after_s)
        self._sampler = Sampler(config.sample_every_s)
        self._mailbox: Mailbox[Frame] = Mailbox()
        self._is_file = config.kind == "file"
        self._no_drop = self._is_file and not config.realtime
        self._thread: threading.Thread | None = None
        self._closed = False
        self._file_ended = False

        # Reader-thread state.
        self._seq = 0
        self._video_offset = 0.0  # seconds of video in earlier loop passes
        self._pass_frames = 0  # frames of the current file pass handled (resumed after a failure)
        self._wall_start: float | None = None
        self._mono_start: float | None = None

        # Counters, read by stats() from other threads.
        self._lock = threading.Lock()
        self._decoded = 0
        self._delivered = 0
        self._dropped_stale = 0
        self._decode_errors = 0
        self._reconnects = 0
        self._last_error: str | None = None
        self._decode_times: deque[float] = deque(maxlen=_FPS_WINDOW)

    # -- Source -------------------------------------------------------------------------

    def start(self) -> None:
        if self._closed:
            raise RuntimeError(f"source {self.camera_id} is closed")
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"ingest-{self.camera_id}", daemon=True)
        self._thread.start()

    def read(self, timeout: float) -> Frame | None:
        frame = self._mailbox.take(timeout)
        if frame is not None:
            with self._lock:
                self._delivered += 1
        return frame

    @property
    def ended(self) -> bool:
        return self._file_ended and self._mailbox.empty

    def stats(self) -> SourceStats:
        with self._lock:
            times = self._decode_times
            span = times[-1] - times[0] if len(times) >= 2 else 0.0
            online = self._health.online
            fps = (len(times) - 1) / span if online and span > 0 else 0.0
            return SourceStats(
                online=online,
                fps=fps,
                frames_decoded=self._decoded,
                frames_delivered=self._delivered,
                frames_dropped_stale=self._dropped_stale,
                decode_errors=self._decode_errors,
                reconnects=self._reconnects,
                last_error=self._last_error,
                degraded=self._health.degraded,
            )

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        self._mailbox.close()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        # A blocking OpenCV call cannot be interrupted; it returns within its own timeouts.
        thread.join(timeout=self._config.open_timeout_s + self._config.read_timeout_s + 1.0)
        if thread.is_alive():
            logger.warning("camera %s: reader thread still busy in OpenCV after close()", self.camera_id)

    def __enter__(self) -> OpenCVSource:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reader thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._reconnect_loop()
        except BaseException as exc:  # last resort: the thread must not die silently
            logger.error("camera %s (%s): reader stopped: %s", self.camera_id, self._url, self._describe(exc))
        finally:
            self._mailbox.finish()

    def _reconnect_loop(self) -> None:
        retry = False
        while not self._stop.is_set():
            if retry:
                with self._lock:
                    self._reconnects += 1
            outcome = self._attempt()
            if outcome is _Outcome.ENDED:
                self._file_ended = True
                logger.info("camera %s: end of file %s", self.camera_id, self._url)
                return
            if outcome is _Outcome.STOPPED:
                return
            retry = outcome is _Outcome.FAILED
            if retry:
                self._wait(self._backoff.next_delay())

    def _attempt(self) -> _Outcome:
        """One open, then reading until the source ends, fails or is stopped."""
        try:
            capture = self._open_capture(self._config)
        except SourceOpenError as exc:
            self._fail(str(exc))
            return _Outcome.FAILED
        except Exception as exc:
            self._crash(exc)
            return _Outcome.FAILED
        try:
            return self._pump(capture)
        except _LostError as exc:
            self._fail(str(exc))
            return _Outcome.FAILED
        except Exception as exc:
            self._crash(exc)
            return _Outcome.FAILED
        finally:
            try:
                capture.release()
            except Exception as exc:
                logger.warning("camera %s: release failed: %s", self.camera_id, self._describe(exc))

    def _pump(self, capture: Capture) -> _Outcome:
        self._health.opened()
        self._opened_at = self._clock()
        fps = (capture.fps() or FALLBACK_FPS) if self._is_file else 0.0
        if self._is_file and capture.fps() is None:
            logger.warning("camera %s: %s has no frame rate; assuming %g fps", self.camera_id, self._url, fps)
        frame_count = capture.frame_count()
        # After a failure in the middle of a file, skip what was already handled.
        skip, self._pass_frames = self._pass_frames, 0
        index = 0  # frames of this file pass read so far
        failed_in_a_row = 0
        shape: tuple[int, ...] | None = None
        last_good = self._clock()
        pass_start = last_good - skip / fps if self._is_file else last_good
        if self._wall_start is None:
            self._wall_start, self._mono_start = self._wall_clock(), last_good

        while not self._stop.is_set():
            ok, image = capture.read()
            now = self._clock()
            if ok and image is not None and _is_image(image) and (shape is None or image.shape == shape):
                shape = image.shape
                failed_in_a_row = 0
                last_good = now
                index += 1
                self._good_frame(now)
                if index <= skip:
                    continue
                if not self._is_file:
                    delivered = self._handle(image, now)
                else:
                    self._pass_frames = index
                    position = (index - 1) / fps
                    if self._config.realtime:
                        pass_start = self._pace(pass_start, position)
                    delivered = not self._stop.is_set() and self._handle(image, self._video_offset + position)
                if not delivered:
                    return _Outcome.STOPPED
                # Time spent handing the frame over (backpressure, pacing) is not a stall.
                last_good = self._clock()
                self._health.touch(last_good)
                continue

            if self._is_file and not ok and _at_end(capture, frame_count, index):
                return self._end_of_pass(index, fps)
            if not ok and not capture.is_open():
                raise _LostError(f"stream closed: {self._url}")
            self._decode_error(_read_error(ok, image, shape))
            if self._is_file:
                # A bad frame of a file still took its place on the timeline: the frames after
                # it are that much later (counting good frames only put them early, for ever).
                index += 1
            failed_in_a_row += 1
            if failed_in_a_row >= MAX_FAILED_READS_IN_A_ROW:
                if self._is_file:
                    return self._end_of_pass(index, fps)
                raise _LostError(f"{failed_in_a_row} failed reads in a row: {self._url}")
            if now - last_good >= self._config.read_timeout_s:
                raise _LostError(f"no frame for {self._config.read_timeout_s:g} s: {self._url}")
            self._emit(self._health.tick(now))
        return _Outcome.STOPPED

    def _good_frame(self, now: float) -> None:
        with self._lock:
            self._decoded += 1
            self._decode_times.append(now)
        # The waits start over only once the connection has held a while: a camera that
        # answers, sends a frame and drops again would otherwise be retried at the shortest
        # wait for ever.
        if now - self._opened_at >= STABLE_AFTER_S:
            self._backoff.reset()
        self._emit(self._health.frame(now))

    def _handle(self, image: npt.NDArray[np.uint8], t: float) -> bool:
        """Sample and hand over one good frame taken at time `t` (video time for files).
        False when stopped while waiting for the consumer."""
        if not self._sampler.take(t):
            return True
        if self._no_drop:
            assert self._wall_start is not None
            assert self._mono_start is not None
            ts, mono = self._wall_start + t, self._mono_start + t
        else:
            ts, mono = self._wall_clock(), self._clock()
        frame = Frame(camera_id=self.camera_id, seq=self._seq, ts=ts, mono=mono, image=image)
        self._seq += 1
        if self._no_drop:
            return self._mailbox.put(frame)
        if self._mailbox.offer(frame):
            with self._lock:
                self._dropped_stale += 1
        return True

    def _pace(self, pass_start: float, position: float) -> float:
        """Wait until `position` s of video have played since `pass_start`; returns the
        (possibly moved) pass start."""
        lag = self._clock() - (pass_start + position)
        if lag > _MAX_PACING_LAG_S:
            return pass_start + lag  # decoding fell behind: carry on from here, no burst
        if lag < 0:
            self._sleep(-lag)
        return pass_start

    def _end_of_pass(self, frames: int, fps: float) -> _Outcome:
        if frames == 0:
            raise _LostError(f"no frame could be decoded from {self._url}")
        self._pass_frames = 0
        if not self._config.loop:
            return _Outcome.ENDED
        self._video_offset += frames / fps
        return _Outcome.LOOP

    # -- bookkeeping ---------------------------------------------------------------------

    def _decode_error(self, reason: str) -> None:
        self._health.decode_error()
        with self._lock:
            self._decode_errors += 1
            self._last_error = reason
        logger.debug("camera %s: %s", self.camera_id, reason)

    def _fail(self, reason: str) -> None:
        """The capture could not be opened or was lost (`reason` is already redacted)."""
        with self._lock:
            self._last_error = reason
        # Once the outage is reported, each further failed retry is only worth a debug line.
        log = logger.debug if self._health.offline_reported else logger.info
        log("camera %s: %s", self.camera_id, reason)
        self._emit(self._health.failed(self._clock(), reason))

    def _crash(self, exc: Exception) -> None:
        """An unexpected exception: count it, log it redacted, reconnect."""
        reason = f"error reading {self._url}: {self._describe(exc)}"
        with self._lock:
            self._decode_errors += 1
        logger.warning("camera %s: %s", self.camera_id, reason)
        # The traceback only at debug level, and redacted like everything else.
        logger.debug("camera %s: %s", self.camera_id, self._redact("".join(traceback.format_exception(exc))))
        self._fail(reason)

    def _wait(self, seconds: float) -> None:
        """Back off for `seconds`, reporting the outage when its deadline falls inside."""
        end = self._clock() + seconds
        while not self._stop.is_set():
            now = self._clock()
            self._emit(self._health.tick(now))
            remaining = end - now
            if remaining <= 0:
                return
            deadline = self._health.offline_deadline()
            if deadline is not None and deadline > now:
                remaining = min(remaining, deadline - now)
            self._sleep(remaining)

    def _emit(self, changes: list[StatusChange]) -> None:
        if self._stop.is_set():
            # Closing (e.g. the camera moved to another worker): an outage seen now is this
            # worker letting go, and must not arrive after the new owner's camera.online.
            return
        for change in changes:
            log = logger.info if change.type is EventType.CAMERA_ONLINE else logger.warning
            log("camera %s: %s: %s", self.camera_id, change.type.value, change.reason)
            event = CameraStatusEvent(
                type=change.type,
                camera_id=self.camera_id,
                ts=self._wall_clock(),
                reason=change.reason,
                location=self._config.location.point(),
            )
            try:
                self._on_status(event)
            except Exception as exc:
                logger.error("camera %s: status callback failed: %s", self.camera_id, self._describe(exc))

    def _describe(self, exc: BaseException) -> str:
        return self._redact(f"{type(exc).__name__}: {exc}")

    def _redact(self, text: str) -> str:
        # Exception texts may quote the URL (an OpenCV error, a path): never let it through.
        return text.replace(self._config.url, self._url) if self._config.url else text


def _is_image(image: object) -> bool:
    return (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and image.shape[0] > 0
        and image.shape[1] > 0
    )


def _read_error(ok: bool, image: npt.NDArray[np.uint8] | None, shape: tuple[int, ...] | None) -> str:
    if not ok:
        return "read failed"
    if image is None or not _is_image(image):
        got = "nothing" if image is None else f"{getattr(image, 'dtype', '?')} {getattr(image, 'shape', '?')}"
        return f"bad frame: expected a colour image, got {got}"
    return f"bad frame: size changed from {shape} to {image.shape}"


def _at_end(capture: Capture, frame_count: int | None, frames_read: int) -> bool:
    """A failed read of a file is its end unless the file says more frames follow. The reader's
    position counts decoded frames only, so the frames read in this pass (bad ones included)
    are checked too: without them, a file with bad frames never reached its end."""
    position = capture.position()
    return frame_count is None or position is None or max(position, frames_read) >= frame_count
