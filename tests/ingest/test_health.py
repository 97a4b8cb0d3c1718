from crowdwatch.core.types import EventType
from crowdwatch.ingest.health import Health

OFF, ON, DEG = EventType.CAMERA_OFFLINE, EventType.CAMERA_ONLINE, EventType.CAMERA_DEGRADED


def _types(changes: list) -> list[EventType]:  # type: ignore[type-arg]
    return [c.type for c in changes]


def test_first_open_failure_is_reported_at_once_and_once() -> None:
    h = Health(offline_after_s=20)
    first = h.failed(0.0, "cannot open source: no such file /x.mp4")
    assert _types(first) == [OFF]
    assert "no such file" in first[0].reason
    assert h.failed(1.0, "again") == []
    assert h.tick(100.0) == []
    assert not h.online


def test_healthy_start_is_not_news() -> None:
    h = Health(offline_after_s=20)
    assert h.frame(0.0) == []
    assert h.online


def test_loss_after_frames_waits_for_offline_after_s() -> None:
    h = Health(offline_after_s=20)
    h.frame(10.0)
    assert h.failed(11.0, "stream closed: rtsp://***:***@h/x") == []
    assert h.offline_deadline() == 30.0
    assert h.tick(29.9) == []
    changes = h.tick(30.0)
    assert _types(changes) == [OFF]
    assert changes[0].reason == "no frame for 20 s (stream closed: rtsp://***:***@h/x)"
    assert h.tick(60.0) == []  # once per outage
    assert h.offline_deadline() is None


def test_online_only_after_an_offline_report() -> None:
    h = Health(offline_after_s=5)
    h.frame(0.0)
    h.failed(1.0, "lost")
    assert h.frame(2.0) == []  # back before the deadline: no outage was reported
    h.failed(3.0, "lost")
    assert _types(h.tick(8.0)) == [OFF]
    back = h.frame(12.0)
    assert _types(back) == [ON]
    assert "4 s" in back[0].reason
    h.failed(13.0, "lost")
    assert _types(h.tick(17.0)) == [OFF]  # a second outage is reported again


def test_degraded_once_per_spell() -> None:
    h = Health(offline_after_s=20, window=20)
    out: list[EventType] = []

    def run(pattern: str) -> None:
        for c in pattern:
            if c == "x":
                h.decode_error()
            else:
                out.extend(_types(h.frame(0.0)))

    run("." * 20)
    assert out == []
    run("xx." * 12)  # 2 of 3 fail
    assert out == [DEG]
    run("xx." * 6)  # still bad: same spell
    assert out == [DEG]
    run("." * 20)  # recovered
    run("xx." * 12)
    assert out == [DEG, DEG]


def test_a_dying_capture_is_not_degraded() -> None:
    h = Health(offline_after_s=20)
    for _ in range(20):
        h.frame(0.0)
    for _ in range(20):
        h.decode_error()
    assert h.failed(0.5, "stream closed") == []


def test_new_capture_clears_the_read_history() -> None:
    h = Health(offline_after_s=20, window=4)
    for _ in range(3):
        h.decode_error()
    h.opened()
    assert [h.frame(0.0) for _ in range(4)] == [[], [], [], []]


def test_time_spent_handing_over_a_frame_is_not_an_outage() -> None:
    h = Health(offline_after_s=20)
    h.frame(0.0)
    h.touch(100.0)  # the consumer took 100 s to take the frame
    assert h.tick(110.0) == []
    assert _types(h.tick(120.0)) == [OFF]
