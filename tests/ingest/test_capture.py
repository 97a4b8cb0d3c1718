from pathlib import Path

import pytest

from crowdwatch.ingest.capture import SourceOpenError, file_path, open_capture

from .media import camera, make_video


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/videos/a.mp4", "/videos/a.mp4"),
        ("videos/a.mp4", "videos/a.mp4"),
        ("file:///videos/a.mp4", "/videos/a.mp4"),
        ("FILE:///videos/a%20b.mp4", "/videos/a b.mp4"),
        ("file://localhost/videos/a.mp4", "/videos/a.mp4"),
    ],
)
def test_file_path(url: str, path: str) -> None:
    assert file_path(url) == path


def test_opens_a_file_url(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.avi", frames=5, fps=10)
    capture = open_capture(camera(video.as_uri()))
    try:
        assert capture.fps() == pytest.approx(10)
        assert capture.frame_count() == 5
        assert capture.read()[0] is True
    finally:
        capture.release()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceOpenError, match="no such file"):
        open_capture(camera(str(tmp_path / "missing.mp4")))


def test_unreachable_stream_reason_is_redacted() -> None:
    with pytest.raises(SourceOpenError) as info:
        open_capture(camera("rtsp://admin:hunter2@127.0.0.1:1/live", open_timeout_s=1, read_timeout_s=1))
    assert "cannot open source" in str(info.value)
    assert "hunter2" not in str(info.value)
    assert "rtsp://***:***@127.0.0.1:1/live" in str(info.value)
