"""OpenCVSource against real small videos (and a scripted capture for stream faults)."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crowdwatch.config.camera import CameraConfig
from crowdwatch.core.types import EventType, Frame
from crowdwatch.ingest import OpenCVSource, Source
from crowdwatch.ingest.capture import Capture, SourceOpenError

from .fakes import BAD_READ, EMPTY, GRAY, WRONG_SIZE, FakeCamera, FakeCapture, good, script
from .media import Recorder, camera, frame_index, make_video, wait_until

OFF, ON, DEG = EventType.CAMERA_OFFLINE, EventType.CAMERA_ONLINE, EventType.CAMERA_DEGRADED
WALL0 = 1_700_000_000.0


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """40 frames at 10 fps: 4 s of video."""
    return make_video(tmp_path / "clip.mp4", frames=40, fps=10)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def sources() -> Iterator[list[OpenCVSource]]:
    """Sources to close after the test, pass or fail."""
    made: list[OpenCVSource] = []
    yield made
    for source in made:
        source.close()


def _start(sources: list[OpenCVSource], source: OpenCVSource) -> OpenCVSource:
    sources.append(source)
    source.start()
    return source


def _drain(source: OpenCVSource, limit: int = 1000) -> list[Frame]:
    frames: list[Frame] = []
    while not source.ended and len(frames) < limit:
        frame = source.read(timeout=5)
        if frame is not None:
            frames.append(frame)
    return frames


def test_is_a_source(video: Path, recorder: Recorder) -> None:
    assert isinstance(OpenCVSource(camera(str(video)), recorder), Source)


@pytest.mark.parametrize(
    ("sample_every_s", "indices"),
    [
        (1.0, [0, 10, 20, 30]),
        (0.25, [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 38]),
        (0.1, list(range(40))),
    ],
)
def test_offline_file_delivers_every_sampled_frame_in_video_time(
    video: Path, recorder: Recorder, sources: list[OpenCVSource], sample_every_s: float, indices: list[int]
) -> None:
    config = camera(video.as_uri(), realtime=False, sample_every_s=sample_every_s)
    source = _start(sources, OpenCVSource(config, recorder, wall_clock=lambda: WALL0))
    frames = _drain(source)

    assert [frame_index(f.image) for f in frames] == indices
    assert [f.ts - WALL0 for f in frames] == pytest.approx([i / 10 for i in indices])
    assert [f.mono - frames[0].mono for f in frames] == pytest.approx([i / 10 for i in indices])
    assert [f.seq for f in frames] == list(range(len(indices)))
    assert all(f.camera_id == "cam-1" and f.image.shape == (120, 160, 3) for f in frames)
    stats = source.stats()
    assert (stats.frames_decoded, stats.frames_delivered, stats.frames_dropped_stale) == (40, len(indices), 0)
    assert (stats.decode_errors, stats.reconnects, stats.last_error) == (0, 0, None)
    assert recorder.events == []  # a healthy start is not news


def test_ended_after_the_last_frame(video: Path, recorder: Recorder, sources: list[OpenCVSource]) -> None:
    source = _start(sources, OpenCVSource(camera(str(video), realtime=False, sample_every_s=1.0), recorder))
    frames = [source.read(timeout=5) for _ in range(4)]
    assert [frame_index(f.image) for f in frames if f is not None] == [0, 10, 20, 30]
    wait_until(lambda: source.ended, what="end of file")
    started = time.monotonic()
    assert source.read(timeout=30) is None
    assert time.monotonic() - started < 15  # at once, not after the timeout


def test_loop_restarts_and_video_time_keeps_growing(
    video: Path, recorder: Recorder, sources: list[OpenCVSource]
) -> None:
    config = camera(str(video), realtime=False, loop=True, sample_every_s=1.0)
    source = _start(sources, OpenCVSource(config, recorder, wall_clock=lambda: WALL0))
    frames = [source.read(timeout=5) for _ in range(10)]

    assert [frame_index(f.image) for f in frames if f is not None] == [0, 10, 20, 30] * 2 + [0, 10]
    assert [f.ts - WALL0 for f in frames if f is not None] == pytest.approx(list(range(10)))
    assert not source.ended
    assert source.stats().reconnects == 0  # a loop is not a reconnect


def test_realtime_file_keeps_only_the_latest_frame(
    tmp_path: Path, recorder: Recorder, sources: list[OpenCVSource]
) -> None:
    video = make_video(tmp_path / "fast.avi", frames=40, fps=50)  # 0.8 s when paced
    config = camera(str(video), realtime=True, sample_every_s=0.02)  # every frame is sampled
    source = _start(sources, OpenCVSource(config, recorder))
    # The consumer does not read until the whole file has played.
    wait_until(lambda: source.stats().frames_dropped_stale == 39, what="all frames offered")

    last = source.read(timeout=5)
    assert last is not None
    assert frame_index(last.image) == 39
    assert last.seq == 39
    stats = source.stats()
    assert (stats.frames_decoded, stats.frames_delivered, stats.frames_dropped_stale) == (40, 1, 39)
    wait_until(lambda: source.ended, what="ended")
    assert source.read(timeout=5) is None


def test_realtime_file_is_stamped_with_capture_times(
    tmp_path: Path, recorder: Recorder, sources: list[OpenCVSource]
) -> None:
    video = make_video(tmp_path / "fast.avi", frames=10, fps=50)
    ticks = iter(range(10_000))
    config = camera(str(video), realtime=True, sample_every_s=0.02)
    source = _start(sources, OpenCVSource(config, recorder, wall_clock=lambda: WALL0 + next(ticks)))
    frame = source.read(timeout=5)
    assert frame is not None
    assert frame.ts > WALL0  # taken from the wall clock at capture, not from the video position


def test_missing_file_goes_offline_once_and_retries(
    tmp_path: Path, recorder: Recorder, sources: list[OpenCVSource]
) -> None:
    source = _start(sources, OpenCVSource(camera(str(tmp_path / "nope.mp4")), recorder))
    wait_until(lambda: source.stats().reconnects >= 3, what="retries")

    assert recorder.types() == [OFF]
    event = recorder.events[0]
    assert "cannot open source: no such file" in event.reason
    assert event.camera_id == "cam-1"
    assert event.location is not None
    assert event.location.lat == 52.0
    stats = source.stats()
    assert not stats.online
    assert stats.last_error is not None
    assert "no such file" in stats.last_error
    assert source.read(timeout=0.05) is None
    assert not source.ended  # a missing file is an outage, not an end


def test_garbage_file_goes_offline_without_crashing(
    tmp_path: Path, recorder: Recorder, sources: list[OpenCVSource]
) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(random.Random(3).randbytes(20_000))
    source = _start(sources, OpenCVSource(camera(str(garbage), realtime=False), recorder))
    wait_until(lambda: source.stats().reconnects >= 2, what="retries")

    assert recorder.types() == [OFF]
    assert "garbage.mp4" in recorder.events[0].reason
    assert source._thread is not None
    assert source._thread.is_alive()


def test_close_is_prompt_during_backoff(tmp_path: Path, recorder: Recorder) -> None:
    config = camera(
        str(tmp_path / "nope.mp4"), reconnect={"initial_s": 60, "max_s": 60, "multiplier": 1, "jitter": 0}
    )
    source = OpenCVSource(config, recorder)
    source.start()
    wait_until(lambda: recorder.count(OFF) == 1, what="offline")  # now waiting 60 s to retry
    started = time.monotonic()
    source.close()
    assert time.monotonic() - started < 30  # well before the 60 s backoff ends
    assert source._thread is not None
    assert not source._thread.is_alive()
    source.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        source.start()


def test_close_is_prompt_while_the_consumer_does_not_read(
    video: Path, recorder: Recorder, sources: list[OpenCVSource]
) -> None:
    source = OpenCVSource(camera(str(video), realtime=False, sample_every_s=0.1), recorder)
    source.start()
    wait_until(lambda: source.stats().frames_decoded >= 2, what="reader blocked on a full mailbox")
    source.close()
    assert source._thread is not None
    assert not source._thread.is_alive()
    assert source.read(timeout=5) is None


def test_online_after_the_file_appears(
    tmp_path: Path, recorder: Recorder, sources: list[OpenCVSource]
) -> None:
    path = tmp_path / "late.mp4"
    source = _start(sources, OpenCVSource(camera(str(path), realtime=False, sample_every_s=1.0), recorder))
    wait_until(lambda: recorder.count(OFF) == 1, what="offline")
    assert source.read(timeout=0.05) is None

    os.replace(make_video(tmp_path / "writing.mp4", frames=40, fps=10), path)  # appears whole
    frame = source.read(timeout=10)
    assert frame is not None
    assert frame_index(frame.image) == 0
    wait_until(lambda: recorder.count(ON) == 1, what="online")
    assert recorder.types() == [OFF, ON]
    assert source.stats().online


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://admin:hunter2@127.0.0.1:1/live?token=t0ps3cret",
        "rtsp://admin:hunter2#@127.0.0.1:1/live?token=t0ps3cret",  # an unescaped '#' in it
    ],
)
def test_unreachable_stream_is_offline_with_a_redacted_reason(
    recorder: Recorder, sources: list[OpenCVSource], caplog: pytest.LogCaptureFixture, url: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="crowdwatch")
    source = _start(sources, OpenCVSource(camera(url, open_timeout_s=1, read_timeout_s=1), recorder))
    wait_until(lambda: source.stats().reconnects >= 2, what="retries")

    assert recorder.types() == [OFF]
    reason = recorder.events[0].reason
    assert "cannot open source" in reason
    assert "rtsp://***:***@127.0.0.1:1/live?token=***" in reason
    texts = [reason, str(source.stats().last_error), caplog.text]
    assert not any("hunter2" in t or "t0ps3cret" in t for t in texts)
    assert "camera.offline" in caplog.text


def test_a_slow_consumer_is_not_an_outage(
    tmp_path: Path, recorder: Recorder, sources: list[OpenCVSource]
) -> None:
    fake = FakeCamera([FakeCapture(script(good(2), [WRONG_SIZE], good(1, start=2)))])
    config = camera(
        str(tmp_path / "v.mp4"), realtime=False, sample_every_s=0.001, read_timeout_s=0.1, offline_after_s=0.2
    )
    source = _start(sources, OpenCVSource(config, recorder, capture_factory=fake))
    wait_until(lambda: source.stats().frames_decoded == 2, what="reader waiting to hand over frame 1")
    time.sleep(0.5)  # the scenario, not synchronisation: a consumer slower than offline_after_s
    frames = _drain(source)

    assert [frame_index(f.image) for f in frames] == [0, 1, 2]
    assert source.stats().decode_errors == 1
    assert source.stats().reconnects == 0
    assert recorder.events == []


# -- stream faults, with a scripted capture ------------------------------------------------


def _stream(fake: FakeCamera, recorder: Recorder, **overrides: object) -> OpenCVSource:
    fields: dict[str, object] = {"sample_every_s": 0.001, "read_timeout_s": 5, "offline_after_s": 60}
    fields.update(overrides)
    return OpenCVSource(camera("rtsp://user:pw@cam.local/live", **fields), recorder, capture_factory=fake)


def test_corrupt_frames_are_skipped_and_counted(recorder: Recorder, sources: list[OpenCVSource]) -> None:
    bad = [BAD_READ, EMPTY, GRAY, WRONG_SIZE]
    fake = FakeCamera([FakeCapture(script(good(5), bad, good(5, start=5), bad, good(5, start=10)))])
    source = _start(sources, _stream(fake, recorder))
    wait_until(lambda: fake.open_calls >= 2, what="end of the script")

    stats = source.stats()
    assert stats.frames_decoded == 15
    assert stats.decode_errors == 8
    assert source.read(timeout=5) is not None  # the latest good frame is still there
    assert recorder.count(DEG) == 0  # 8 of 20 is not degraded


def test_degraded_once_per_spell(recorder: Recorder, sources: list[OpenCVSource]) -> None:
    bad_spell = [BAD_READ, BAD_READ, 0] * 14  # two of three reads fail
    steps = script(good(20), bad_spell, good(30), bad_spell, good(5))
    fake = FakeCamera([FakeCapture(steps)])
    source = _start(sources, _stream(fake, recorder))
    wait_until(lambda: fake.open_calls >= 2, what="end of the script")

    assert recorder.types() == [DEG, DEG]
    assert "of the last 20 reads failed" in recorder.events[0].reason
    assert source.stats().decode_errors == 56


def test_exception_in_the_reader_leads_to_reconnect(
    recorder: Recorder, sources: list[OpenCVSource], caplog: pytest.LogCaptureFixture
) -> None:
    boom = RuntimeError("decoder exploded on rtsp://user:pw@cam.local/live")
    fake = FakeCamera(
        [
            FakeCapture(script(good(3), [boom])),
            RuntimeError("open exploded"),
            FakeCapture(script(good(3, start=100))),
        ]
    )
    source = _start(sources, _stream(fake, recorder, reconnect={"initial_s": 0.01, "max_s": 0.02}))
    wait_until(lambda: fake.open_calls >= 4, what="the third capture read to its end")

    frame = source.read(timeout=5)
    assert frame is not None
    assert frame_index(frame.image) == 102
    stats = source.stats()
    assert stats.frames_decoded == 6
    assert stats.reconnects >= 3
    assert stats.decode_errors == 2  # both exceptions counted
    assert "RuntimeError" in caplog.text
    assert "pw@" not in caplog.text
    assert recorder.events == []  # back within offline_after_s: no outage to report


def test_stalled_stream_goes_offline_then_online(recorder: Recorder, sources: list[OpenCVSource]) -> None:
    stalled = FakeCapture(script(good(5)), open_after=True)  # then every read fails, still "open"
    fake = FakeCamera([stalled, *[FakeCapture(script([BAD_READ] * 3)) for _ in range(3)]])
    source = _start(sources, _stream(fake, recorder, read_timeout_s=0.1, offline_after_s=0.3))
    wait_until(lambda: recorder.count(OFF) == 1, what="offline")

    assert recorder.types() == [OFF]
    assert recorder.events[0].reason.startswith("no frame for 0.3 s")
    assert "pw@" not in recorder.events[0].reason
    assert not source.stats().online

    fake.plug_in(FakeCapture(script(good(5, start=50)), open_after=True))  # the camera is back
    wait_until(lambda: recorder.count(ON) == 1, timeout=10, what="online")
    assert recorder.types() == [OFF, ON]
    frame = source.read(timeout=5)
    assert frame is not None
    assert frame_index(frame.image) >= 50


def test_closing_during_the_first_connect_reports_no_outage(recorder: Recorder) -> None:
    """A camera being stopped (removed, moved to another worker) while its first open is under
    way: the failed open once went out as camera.offline, possibly after the new owner's online."""
    opening, release = threading.Event(), threading.Event()

    def slow_refusal(config: CameraConfig) -> Capture:
        opening.set()
        release.wait(10.0)  # the open blocks until the test has closed the source
        raise SourceOpenError("cannot open source: no answer")

    source = OpenCVSource(camera("rtsp://127.0.0.1:1/live"), recorder, capture_factory=slow_refusal)
    source.start()
    assert opening.wait(10.0)
    closer = threading.Thread(target=source.close)
    closer.start()
    wait_until(lambda: source._stop.is_set(), what="close begun")
    release.set()
    closer.join(15.0)
    assert recorder.types() == []


WALL0 = 1_700_000_000.0


def _with_bad_frames(tmp_path: Path, bad: tuple[int, ...]) -> Path:
    """A 40-frame 10 fps MJPG file whose frames `bad` are zeroed (one JPEG per frame)."""
    clip = make_video(tmp_path / "clip.avi", frames=40, fps=10)
    data = bytearray(clip.read_bytes())
    starts = [i for i in range(len(data) - 3) if data[i : i + 3] == b"\xff\xd8\xff"]
    assert len(starts) == 40
    for k in bad:
        data[starts[k] : starts[k + 1] - 8] = bytes(starts[k + 1] - 8 - starts[k])
    out = tmp_path / "damaged.avi"
    out.write_bytes(bytes(data))
    return out


def test_bad_frames_in_a_file_keep_their_place_on_its_timeline(tmp_path: Path) -> None:
    """Video time counted good frames only: every frame after a bad one was stamped early (by
    0.1 s per bad frame at 10 fps), and the file's end was never seen (20 phantom errors)."""
    path = _with_bad_frames(tmp_path, (10, 11, 12))
    recorder = Recorder()
    source = OpenCVSource(
        camera(str(path), realtime=False, sample_every_s=0.1), recorder, wall_clock=lambda: WALL0
    )
    source.start()
    frames: list[Frame] = []
    try:
        deadline = time.monotonic() + 30.0
        while not source.ended and time.monotonic() < deadline:
            frame = source.read(1.0)
            if frame is not None:
                frames.append(frame)
    finally:
        source.close()
    indices = [frame_index(f.image) for f in frames]
    assert indices == [i for i in range(40) if i not in (10, 11, 12)]
    assert [round((f.ts - WALL0) * 10) for f in frames] == indices  # frame i at i / 10 s
    assert source.stats().decode_errors == 3


class SteppedClock:
    """Monotonic time that moves only when the source sleeps (or by `step` a read)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def test_a_camera_that_drops_right_after_answering_is_retried_ever_more_slowly(
    recorder: Recorder, sources: list[OpenCVSource]
) -> None:
    """Each good frame once reset the waits: a camera that answers, sends a frame and drops
    again was retried at the shortest wait for ever."""
    fake = FakeCamera([FakeCapture(script(good(1))) for _ in range(4)])
    clock = SteppedClock()
    config = camera(
        "rtsp://cam.local/live",
        sample_every_s=0.001,
        offline_after_s=1000,
        reconnect={"initial_s": 1.0, "max_s": 100.0, "multiplier": 2.0, "jitter": 0.0},
    )
    source = _start(
        sources, OpenCVSource(config, recorder, capture_factory=fake, clock=clock, sleep=clock.sleep)
    )
    wait_until(lambda: len(clock.sleeps) >= 5, what="five waits")
    assert clock.sleeps[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert source.stats().frames_decoded == 4
