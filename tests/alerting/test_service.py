"""AlertingService end to end over the memory bus and store, with a fake clock."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from crowdwatch.alerting.metrics import AlertingMetrics
from crowdwatch.alerting.service import DEFAULT_GROUP, AlertingService
from crowdwatch.bus.base import CAMERA_STATUS, CROWD_EVENTS, CROWD_EVENTS_DLQ, Consumer, Message
from crowdwatch.bus.memory import MemoryBus
from crowdwatch.core import codec
from crowdwatch.core.alerts import Action, AlertChange
from crowdwatch.core.routing import CenterDirectory, CenterInfo, Router
from crowdwatch.core.types import AlertState, CameraStatusEvent, CrowdEvent, EventType
from crowdwatch.store.base import PendingEvents, RouteFn, StoreUpdate, apply_each
from crowdwatch.store.memory import MemoryAlertStore

from .builders import (
    IN_C1,
    T0,
    WEST_OF_S1_1KM,
    FakeClock,
    camera_event,
    crowd_event,
    world_router,
)

STARTED, UPDATED, ENDED = EventType.GATHERING_STARTED, EventType.GATHERING_UPDATED, EventType.GATHERING_ENDED
ALERT_ID = "cam-1:gate:1700000000000"
DEADLINE_S = 5.0


class FlakyStore(MemoryAlertStore):
    """Fails the first `failures` batches whole, as a Redis timeout would (the transaction
    never ran), without saying how far it got."""

    def __init__(self, failures: int = 1) -> None:
        super().__init__()
        self.failures = failures

    def apply_events(
        self, events: Sequence[CrowdEvent], decide: RouteFn, now: float
    ) -> list[AlertChange | None]:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("store unreachable")
        return super().apply_events(events, decide, now)


class FailAt(MemoryAlertStore):
    """Stores event by event and fails at its `fail_at`-th event (from 1), saying so with a
    BatchApplyError, as a store that writes a prefix would."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.calls = 0

    def apply_events(
        self, events: Sequence[CrowdEvent], decide: RouteFn, now: float
    ) -> list[AlertChange | None]:
        return apply_each(self._apply_one, events, decide, now)

    def _apply_one(self, event: CrowdEvent, decide: RouteFn, now: float) -> AlertChange | None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise TimeoutError("slow store")
        return self.apply_event(event, decide, now)


@dataclass
class Rig:
    bus: MemoryBus
    store: MemoryAlertStore
    clock: FakeClock
    registry: CollectorRegistry
    service: AlertingService
    errors: list[tuple[Exception, Message | None]] = field(default_factory=list)

    def publish(self, event: CrowdEvent | CameraStatusEvent) -> None:
        topic = CROWD_EVENTS if isinstance(event, CrowdEvent) else CAMERA_STATUS
        self.bus.publish(topic, event.camera_id, codec.encode(event))

    def process(self, expected: int) -> int:
        """run_once until `expected` messages are done or the deadline passes."""
        done = 0
        deadline = time.monotonic() + DEADLINE_S
        while done < expected and time.monotonic() < deadline:
            done += self.service.run_once(0.05)
        return done

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(f"crowdwatch_alerting_{name}", labels or None)
        return 0.0 if value is None else value


def make_rig(store: MemoryAlertStore | None = None, router: Router | None = None) -> Rig:
    registry = CollectorRegistry()
    bus, store, clock = MemoryBus(), store or MemoryAlertStore(), FakeClock(T0)
    rig = Rig(bus, store, clock, registry, None)  # type: ignore[arg-type]  # set just below
    rig.service = AlertingService(
        bus,
        store,
        router or world_router(),
        clock,
        on_error=lambda exc, msg: rig.errors.append((exc, msg)),
        metrics=AlertingMetrics.create(registry),
    )
    return rig


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def test_episode_makes_one_alert_with_center_and_audit(rig: Rig) -> None:
    rig.publish(crowd_event(STARTED, seq=0))
    rig.publish(crowd_event(UPDATED, seq=1, count=55.0, peak=55.0))
    rig.publish(crowd_event(ENDED, seq=2, count=5.0))
    rig.clock.advance(2.0)
    assert rig.process(3) == 3

    (alert,) = rig.store.list_alerts()
    assert (alert.id, alert.center_id, alert.route_reason) == (ALERT_ID, "c1", "inside:community")
    assert (alert.peak, alert.gathering_ended, alert.state) == (55.0, True, AlertState.NEW)
    assert [e.action for e in rig.store.audit(ALERT_ID)] == [
        "created",
        "crowd.gathering.updated",
        "crowd.gathering.ended",
    ]
    assert rig.bus.committed(DEFAULT_GROUP, CROWD_EVENTS) == 3
    assert rig.metric("events_consumed_total", type="crowd.gathering.started") == 1
    assert rig.metric("alerts_created_total") == 1
    assert rig.metric("processing_latency_seconds_count") == 3
    assert rig.metric("processing_latency_seconds_sum") == pytest.approx(2.0 + 1.0 + 0.0)
    assert rig.errors == []


def test_redelivered_and_out_of_order_events(rig: Rig) -> None:
    rig.publish(crowd_event(UPDATED, seq=2, count=70.0))  # started lost or late
    rig.publish(crowd_event(STARTED, seq=0, count=35.0))
    rig.publish(crowd_event(UPDATED, seq=2, count=70.0))  # producer retry
    assert rig.process(3) == 3
    (alert,) = rig.store.list_alerts()
    assert (alert.count, alert.last_event_seq) == (70.0, 2)
    assert len(rig.store.audit(ALERT_ID)) == 1
    assert rig.metric("alerts_created_total") == 1


def test_routing_uses_the_event_location(rig: Rig) -> None:
    rig.publish(crowd_event(location=WEST_OF_S1_1KM))
    rig.process(1)
    (alert,) = rig.store.list_alerts()
    assert (alert.center_id, alert.route_reason) == ("s1", "nearest-street:1.0km")


def test_override_wins() -> None:
    rig = make_rig(router=world_router(overrides={"cam-1": "s2"}))
    rig.publish(crowd_event(location=IN_C1))
    rig.process(1)
    assert [(a.center_id, a.route_reason) for a in rig.store.list_alerts()] == [("s2", "override")]


def _schema_invalid() -> bytes:
    env = codec.to_envelope(crowd_event(seq=7))
    env["data"]["count"] = -3
    return json.dumps(env).encode()


def _id_mismatch() -> bytes:
    env = codec.to_envelope(crowd_event(seq=8))
    env["id"] = "forged"
    return json.dumps(env).encode()


def _with_data(field_name: str, literal: str) -> bytes:
    """A valid event whose data field holds `literal` as written (JSON the encoder never writes)."""
    env = codec.to_envelope(crowd_event(seq=8))
    env["data"][field_name] = 123456.5
    return json.dumps(env).replace("123456.5", literal).encode()


def _lone_surrogate_id() -> bytes:
    env = codec.to_envelope(crowd_event(seq=8))
    env["id"] = "XX"
    return json.dumps(env).replace('"XX"', '"\\ud800"').encode()


@pytest.mark.parametrize(
    ("raw", "reason", "error"),
    [
        (b"\x00\xffnot json at all", "decode", "not UTF-8"),
        (b'{"specversion": "1.0"', "decode", "not valid JSON"),
        (_schema_invalid(), "schema", "data.count: -3 is less than the minimum of 0"),
        (b'{"type": "crowd.gathering.exploded"}', "schema", "unknown event type"),
        (_id_mismatch(), "decode", "id: 'forged' does not match"),
        # Each of these once raised out of decoding: the message came back after every rewind.
        (b"[" * 100_000, "decode", "nested too deeply"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "decode", "nested too deeply"),
        (_with_data("count", "1e400"), "decode", "number 1e400 is out of range"),
        (_with_data("count", "1" + "0" * 400), "decode", "data.count: expected a number in range"),
        (_lone_surrogate_id(), "decode", "id: not valid Unicode text"),
    ],
    ids=[
        "garbage-bytes",
        "truncated-json",
        "schema-invalid",
        "unknown-type",
        "id-mismatch",
        "deep-array",
        "deep-object",
        "overflowing-float",
        "overflowing-integer",
        "lone-surrogate",
    ],
)
def test_bad_messages_go_to_the_dlq_and_the_consumer_continues(
    rig: Rig, raw: bytes, reason: str, error: str
) -> None:
    rig.bus.publish(CROWD_EVENTS, "cam-1", raw, {"trace": b"t-1"})
    rig.publish(crowd_event())
    assert rig.process(2) == 2

    (dead,) = rig.bus.messages(CROWD_EVENTS_DLQ)
    assert dead.value == raw
    assert dead.key == "cam-1"
    assert error in (dead.header("error") or b"").decode()
    assert dead.header("error-reason") == reason.encode()
    assert dead.header("source-topic") == CROWD_EVENTS.encode()
    assert dead.header("source-offset") == b"0"
    assert dead.header("trace") == b"t-1"  # original headers travel along
    assert [a.id for a in rig.store.list_alerts()] == [ALERT_ID]  # the good one behind it
    assert rig.bus.committed(DEFAULT_GROUP, CROWD_EVENTS) == 2
    assert rig.metric("dlq_messages_total", reason=reason) == 1
    assert rig.errors == []


def test_store_failure_is_not_committed_and_is_redelivered() -> None:
    rig = make_rig(store=FlakyStore(failures=1))
    rig.publish(crowd_event(STARTED, seq=0))
    rig.publish(crowd_event(UPDATED, seq=1))

    assert rig.service.run_once(0.05) == 0  # the first message failed: nothing done
    assert rig.bus.committed(DEFAULT_GROUP, CROWD_EVENTS) is None
    ((exc, message),) = rig.errors
    assert isinstance(exc, ConnectionError)
    assert message is not None
    assert message.offset == 0
    assert rig.metric("processing_errors_total") == 1

    assert rig.process(2) == 2  # both again, now stored
    assert [a.id for a in rig.store.list_alerts()] == [ALERT_ID]
    assert [e.action for e in rig.store.audit(ALERT_ID)] == ["created", "crowd.gathering.updated"]
    assert rig.bus.committed(DEFAULT_GROUP, CROWD_EVENTS) == 2


def test_failure_mid_batch_commits_the_finished_prefix() -> None:
    rig = make_rig(store=FailAt(2))
    for seq in range(3):
        rig.publish(crowd_event(UPDATED if seq else STARTED, seq=seq))
    assert rig.service.run_once(0.05) == 1
    assert rig.bus.committed(DEFAULT_GROUP, CROWD_EVENTS) == 1
    assert rig.process(2) == 2
    alert = rig.store.get(ALERT_ID)
    assert alert is not None
    assert alert.last_event_seq == 2


def test_a_failure_leaves_the_rest_of_the_batch_for_the_next_poll() -> None:
    """Dead letters before the failed event are sent and committed; those after it wait for
    the redelivery, so that none is dead-lettered twice."""
    rig = make_rig(store=FailAt(2))
    rig.publish(crowd_event(STARTED, seq=0))
    rig.bus.publish(CROWD_EVENTS, "cam-1", b"first bad")
    rig.publish(crowd_event(UPDATED, seq=1))  # the store fails here
    rig.bus.publish(CROWD_EVENTS, "cam-1", b"second bad")
    rig.publish(crowd_event(UPDATED, seq=2))
    assert rig.service.run_once(0.05) == 2
    assert [m.value for m in rig.bus.messages(CROWD_EVENTS_DLQ)] == [b"first bad"]
    assert rig.bus.committed(DEFAULT_GROUP, CROWD_EVENTS) == 2
    assert rig.process(3) == 3
    assert [m.value for m in rig.bus.messages(CROWD_EVENTS_DLQ)] == [b"first bad", b"second bad"]
    alert = rig.store.get(ALERT_ID)
    assert alert is not None
    assert alert.last_event_seq == 2
    assert rig.bus.committed(DEFAULT_GROUP, CROWD_EVENTS) == 5


def test_a_poll_is_stored_in_one_call_and_counted_per_batch() -> None:
    class Counting(MemoryAlertStore):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[int] = []

        def apply_events(
            self, events: Sequence[CrowdEvent], decide: RouteFn, now: float
        ) -> list[AlertChange | None]:
            self.batches.append(len(events))
            return super().apply_events(events, decide, now)

    store = Counting()
    rig = make_rig(store=store)
    for seq in range(4):
        rig.publish(crowd_event(UPDATED if seq else STARTED, seq=seq))
    rig.publish(crowd_event(UPDATED, seq=2))  # a duplicate: consumed, changes nothing
    rig.publish(camera_event(EventType.CAMERA_OFFLINE))
    assert rig.process(6) == 6
    assert store.batches == [5]
    assert rig.metric("events_consumed_total", type=UPDATED.value) == 4
    assert rig.metric("events_consumed_total", type=STARTED.value) == 1
    assert rig.metric("events_consumed_total", type="camera.offline") == 1
    assert rig.metric("alerts_created_total") == 1
    assert rig.metric("processing_latency_seconds_count") == 4  # one per change


def test_a_restarted_service_resumes_after_the_last_commit() -> None:
    rig = make_rig()
    rig.publish(crowd_event())
    rig.process(1)
    rig.service.close()
    rig.publish(crowd_event(UPDATED, seq=1))
    again = AlertingService(rig.bus, rig.store, world_router(), rig.clock)
    deadline = time.monotonic() + DEADLINE_S
    done = 0
    while done < 1 and time.monotonic() < deadline:
        done += again.run_once(0.05)
    assert done == 1
    assert len(rig.store.audit(ALERT_ID)) == 2


def test_escalation_after_sla_up_to_the_district(rig: Rig) -> None:
    rig.publish(crowd_event())  # c1: SLA 120 s; s1: 300 s; d1: 600 s, no parent
    rig.process(1)
    assert rig.service.tick(T0 + 119) == []

    steps = [
        (T0 + 120, "s1", "escalated"),
        (T0 + 420, "d1", "escalated"),
        (T0 + 1020, "d1", "escalation-exhausted"),
    ]
    for now, center, action in steps:
        rig.clock.now = now
        (change,) = rig.service.tick()
        assert (change.alert.center_id, change.audit[0].action) == (center, action)
        assert change.alert.state is AlertState.ESCALATED

    assert rig.service.tick(T0 + 10**6) == []
    alert = rig.store.get(ALERT_ID)
    assert alert is not None
    assert (alert.origin_center_id, alert.escalation_level) == ("c1", 3)
    assert rig.metric("escalations_total", outcome="escalated") == 2
    assert rig.metric("escalations_total", outcome="exhausted") == 1


def test_acknowledged_alert_does_not_escalate(rig: Rig) -> None:
    rig.publish(crowd_event())
    rig.process(1)
    rig.store.act(ALERT_ID, Action.ACKNOWLEDGE, "op-anna", T0 + 60)
    assert rig.service.tick(T0 + 10_000) == []


def test_escalation_error_is_reported_and_others_continue(rig: Rig) -> None:
    rig.publish(crowd_event(zone_id="a"))
    rig.publish(crowd_event(zone_id="b"))
    rig.process(2)
    # The alerts' center disappeared from the configuration the service now runs with.
    rig.service = AlertingService(
        rig.bus,
        rig.store,
        Router(CenterDirectory([CenterInfo("d9", "D9", "district", None, 60)]), world_router().geo, 2.0),
        rig.clock,
        on_error=lambda exc, msg: rig.errors.append((exc, msg)),
    )
    assert rig.service.tick(T0 + 500) == []
    assert [(type(e).__name__, m) for e, m in rig.errors] == [("KeyError", None), ("KeyError", None)]
    assert "cannot be escalated: unknown center 'c1'" in str(rig.errors[0][0])
    # Said once per alert, not on every tick (the role ticks several times a second).
    assert rig.service.tick(T0 + 501) == []
    assert len(rig.errors) == 2


def test_camera_status_is_kept_and_does_not_resolve_alerts(rig: Rig) -> None:
    rig.publish(crowd_event())
    rig.publish(camera_event(EventType.CAMERA_OFFLINE, ts=T0 + 30))
    assert rig.process(2) == 2
    (status,) = rig.store.camera_statuses()
    assert (status.camera_id, status.type) == ("cam-1", EventType.CAMERA_OFFLINE)
    (alert,) = rig.store.list_alerts()
    assert alert.is_open
    assert rig.bus.committed(DEFAULT_GROUP, CAMERA_STATUS) == 1
    assert rig.metric("events_consumed_total", type="camera.offline") == 1


def test_run_until_stopped(rig: Rig) -> None:
    created = threading.Event()

    def on_change(update: StoreUpdate) -> None:
        if isinstance(update, AlertChange) and update.kind == "created":
            created.set()

    rig.store.subscribe(on_change)
    stop = threading.Event()
    thread = threading.Thread(target=rig.service.run, args=(stop, 0.05))
    thread.start()
    rig.publish(crowd_event())
    assert created.wait(DEADLINE_S)
    stop.set()
    thread.join(DEADLINE_S)
    assert not thread.is_alive()
    rig.service.close()


def test_errors_are_logged_without_a_callback(caplog: pytest.LogCaptureFixture) -> None:
    bus = MemoryBus()
    service = AlertingService(bus, FlakyStore(failures=1), world_router(), FakeClock())
    bus.publish(CROWD_EVENTS, "cam-1", codec.encode(crowd_event()))
    assert service.run_once(0.05) == 0
    assert "store unreachable" in caplog.text


def test_tick_applies_the_retention_once_a_minute() -> None:
    class Purging(MemoryAlertStore):
        def __init__(self) -> None:
            super().__init__(resolved_retention_s=3600.0)
            self.purges: list[float] = []

        def purge(self, now: float) -> int:
            self.purges.append(now)
            return super().purge(now)

    store = Purging()
    rig = make_rig(store=store)
    rig.publish(crowd_event())
    assert rig.process(1) == 1
    rig.store.act(ALERT_ID, Action.RESOLVE, "op-anna", rig.clock())
    rig.service.tick()
    rig.clock.advance(59.0)
    rig.service.tick()
    assert store.purges == [T0]
    assert rig.store.get(ALERT_ID) is not None
    rig.clock.advance(3600.0)
    rig.service.tick()
    assert store.purges == [T0, T0 + 3659.0]
    assert rig.store.get(ALERT_ID) is None
    assert rig.metric("alerts_purged_total") == 1


def test_a_failing_purge_is_reported_and_escalation_goes_on() -> None:
    class Broken(MemoryAlertStore):
        def purge(self, now: float) -> int:
            raise ConnectionError("redis went away")

    rig = make_rig(store=Broken())
    rig.publish(crowd_event())
    assert rig.process(1) == 1
    rig.clock.advance(3600.0)  # past every SLA
    changes = rig.service.tick()
    assert [c.kind for c in changes] == ["escalated"]
    assert [str(exc) for exc, _ in rig.errors] == ["redis went away"]


class Recording(MemoryAlertStore):
    """Logs when batches are submitted and their results taken, into `log`."""

    def __init__(self, log: list[str], failures: int = 0) -> None:
        super().__init__()
        self.log = log
        self.failures = failures

    def submit_events(self, events: Sequence[CrowdEvent], decide: RouteFn, now: float) -> PendingEvents:
        self.log.append(f"submit {[e.seq for e in events]}")
        log, fail = self.log, self.failures > 0
        self.failures -= fail
        done = None if fail else self.apply_events(events, decide, now)

        class Pending:
            def result(self) -> list[AlertChange | None]:
                log.append("result")
                if done is None:
                    raise ConnectionError("store unreachable")  # nothing was stored
                return done

        return Pending()


def recording_rig(log: list[str], failures: int = 0) -> Rig:
    rig = make_rig(store=Recording(log, failures))
    rig.service = AlertingService(
        rig.bus,
        rig.store,
        world_router(),
        rig.clock,
        on_error=lambda exc, msg: rig.errors.append((exc, msg)),
        batch_size=2,
    )
    real_consumer = rig.bus.consumer

    def consumer(topics: Sequence[str], group: str) -> Consumer:
        inner = real_consumer(topics, group)

        class Logged:
            def poll(self, timeout: float, max_messages: int = 500) -> list[Message]:
                got = inner.poll(timeout, max_messages)
                log.append(f"poll {len(got)}")
                return got

            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

        return cast(Consumer, Logged())

    rig.bus.consumer = consumer  # type: ignore[method-assign,assignment]
    return rig


def test_the_next_batch_is_fetched_while_the_store_works() -> None:
    log: list[str] = []
    rig = recording_rig(log)
    for seq in range(5):
        rig.publish(crowd_event(UPDATED if seq else STARTED, seq=seq))
    assert [rig.service.run_once(0.0) for _ in range(3)] == [2, 2, 1]
    assert log == [
        "poll 2",
        "submit [0, 1]",
        "poll 2",  # between submit and result: while the store works
        "result",
        "submit [2, 3]",
        "poll 1",
        "result",
        "submit [4]",  # not a full batch: no backlog to fetch from
        "result",
    ]
    assert rig.bus.committed(DEFAULT_GROUP, CROWD_EVENTS) == 5
    alert = rig.store.get(ALERT_ID)
    assert alert is not None
    assert alert.last_event_seq == 4


def test_a_failed_batch_drops_the_batch_fetched_meanwhile() -> None:
    log: list[str] = []
    rig = recording_rig(log, failures=1)
    for seq in range(4):
        rig.publish(crowd_event(UPDATED if seq else STARTED, seq=seq))
    assert rig.service.run_once(0.0) == 0
    assert rig.bus.committed(DEFAULT_GROUP, CROWD_EVENTS) is None
    assert [str(exc) for exc, _ in rig.errors] == ["store unreachable"]
    # The rewind delivers the failed batch again, then the one fetched meanwhile, once each.
    assert rig.process(4) == 4
    assert log[:4] == ["poll 2", "submit [0, 1]", "poll 2", "result"]
    assert log[4:7] == ["poll 2", "submit [0, 1]", "poll 2"]
    assert [line for line in log if line.startswith("submit")] == [
        "submit [0, 1]",
        "submit [0, 1]",
        "submit [2, 3]",
    ]
    assert rig.bus.committed(DEFAULT_GROUP, CROWD_EVENTS) == 4
    assert len(rig.store.audit(ALERT_ID)) == 4  # created, then three updates: none twice
    alert = rig.store.get(ALERT_ID)
    assert alert is not None
    assert alert.last_event_seq == 3
