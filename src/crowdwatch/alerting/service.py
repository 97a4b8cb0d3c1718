"""Consume events, validate, route, store; escalate overdue alerts (DESIGN 1, 5, 6).

Delivery: offsets are committed only after the store has the result (at-least-once; the store
dedupes by event id). A message that cannot be decoded or breaks the schema goes to the
dead-letter topic, with the reason in its headers, and is committed: one bad message must not
stop the stream. A failure while storing commits nothing from that message on and rewinds the
consumer, so the message comes again on the next poll; `on_error` hears about it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast

from crowdwatch.alerting.dead_letter import dead_letter
from crowdwatch.alerting.fastdecode import decode_valid
from crowdwatch.alerting.metrics import AlertingMetrics
from crowdwatch.alerting.validate import InvalidEventError, validate_envelope
from crowdwatch.bus.base import CAMERA_STATUS, CROWD_EVENTS, CROWD_EVENTS_DLQ, Consumer, EventBus, Message
from crowdwatch.core import codec
from crowdwatch.core.alerts import AlertChange
from crowdwatch.core.routing import RouteDecision, Router
from crowdwatch.core.types import CameraStatusEvent, CrowdEvent
from crowdwatch.store.base import AlertStore, BatchApplyError

log = logging.getLogger(__name__)

DEFAULT_GROUP: Final = "crowdwatch-alerting"
# Messages per poll, stored in one transaction and committed at once: the per-batch costs (a
# Kafka commit, Redis round trips) shrink per event as batches grow; 1000 leaves each
# transaction a few milliseconds long.
DEFAULT_BATCH_SIZE: Final = 1000
# How often tick() applies the store's retention (a few index reads when nothing is due).
PURGE_EVERY_S: Final = 60.0

# Called with the exception and the message being processed (None for escalation errors).
# It decides what else happens: log, count, or raise to stop the service.
ErrorHandler = Callable[[Exception, Message | None], None]


class AlertingService:
    """One member of the alerting consumer group. Drive it from one thread (`run`, or
    `run_once` + `tick`); scale out by running more services with the same `group`."""

    def __init__(
        self,
        bus: EventBus,
        store: AlertStore,
        router: Router,
        clock: Callable[[], float],
        *,
        group: str = DEFAULT_GROUP,
        on_error: ErrorHandler | None = None,
        metrics: AlertingMetrics | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        purge_every_s: float = PURGE_EVERY_S,
    ) -> None:
        self._bus = bus
        self._store = store
        self._router = router
        self._clock = clock
        self._group = group
        self._on_error = on_error
        self._metrics = metrics
        self._batch_size = batch_size
        self._purge_every_s = purge_every_s
        self._next_purge: float | None = None  # the first tick purges
        # Overdue alerts this process could not escalate (their center is gone from the config):
        # reported once each, not on every tick.
        self._stuck: set[str] = set()
        self._consumer: Consumer | None = None
        self._prefetched: _Batch | None = None  # fetched while the store worked on the last batch

    def run_once(self, timeout: float) -> int:
        """Poll once (waiting up to `timeout` s) and process what came. Returns how many
        messages were finished and committed (stored or dead-lettered).

        The poll is one batch: every message is decoded first, the crowd events are stored in
        one store transaction, then camera statuses and dead letters follow, up to the first
        failure; one commit covers the finished prefix. When the batch is full (a backlog), the
        next one is fetched and decoded while the store runs this one's transaction (without
        waiting for more messages), to be processed by the next call; a failure drops it, since
        the rewind delivers it again."""
        consumer = self._get_consumer()
        batch, self._prefetched = self._prefetched or self._fetch(consumer, timeout), None
        if batch is None:
            return 0
        messages, decoded = batch
        crowd_at = [i for i, d in enumerate(decoded) if isinstance(d, CrowdEvent)]
        crowd = [cast(CrowdEvent, decoded[i]) for i in crowd_at]
        failed_at, failure = len(messages), None
        fetch_error: Exception | None = None
        changes: list[AlertChange | None] = []
        if crowd:
            pending = self._store.submit_events(crowd, self.route, self._clock())
            # A full batch means a backlog; otherwise the next messages are not there yet, and
            # a fetch would only delay this batch's commit.
            if len(messages) >= self._batch_size:
                try:
                    self._prefetched = self._fetch(consumer, 0.0)
                except Exception as exc:  # the bus's own failure: raised once this batch is done
                    fetch_error = exc
            try:
                changes = pending.result()
            except BatchApplyError as exc:
                changes, failure = exc.applied, exc.cause
                failed_at = crowd_at[len(changes)]
            except Exception as exc:  # a store that cannot say how far it got: nothing is stored
                failed_at, failure = crowd_at[0], exc
        dead_lettered = False
        for i in range(failed_at):
            item = decoded[i]
            try:
                if isinstance(item, CameraStatusEvent):
                    # Status only: an offline camera leaves its open alerts as they are.
                    self._store.record_camera_status(item)
                elif isinstance(item, _Rejected):
                    self._dead_letter(messages[i], item.error, item.reason)
                    dead_lettered = True
            except Exception as exc:
                failed_at, failure = i, exc
                break
        self._commit(consumer, messages[:failed_at], dead_lettered)
        self._count(decoded[:failed_at], crowd, changes)
        if failure is not None:
            # The finished prefix is committed; rewind so the failed message (and whatever was
            # fetched after it) comes again.
            self._prefetched = None
            if self._metrics:
                self._metrics.processing_errors.inc()
            try:
                consumer.seek_to_committed()
            finally:  # heard of even when the rewind fails (the bus's error is raised then)
                self._report(failure, messages[failed_at])
        if fetch_error is not None:
            raise fetch_error
        return failed_at

    def tick(self, now: float | None = None) -> list[AlertChange]:
        """Escalate every overdue alert one level up (or mark it at a district); every
        `purge_every_s`, apply the store's retention (`AlertStore.purge`)."""
        now = self._clock() if now is None else now
        if self._next_purge is None or now >= self._next_purge:
            self._next_purge = now + self._purge_every_s
            try:
                purged = self._store.purge(now)
            except Exception as exc:  # retention can wait for the next round; alerts cannot
                self._report(exc, None)
            else:
                if self._metrics and purged:
                    self._metrics.alerts_purged.inc(purged)
        changes: list[AlertChange] = []
        directory = self._router.directory
        for alert in self._store.due_escalations(now):
            if alert.id in self._stuck:
                continue
            try:
                parent = directory.parent_of(alert.center_id)
                sla_s = None if parent is None else directory.get(parent).ack_sla_s
            except KeyError as exc:  # a center removed from the config: nowhere to pass it
                self._stuck.add(alert.id)
                problem = (
                    f"alert {alert.id} is overdue but cannot be escalated: {exc.args[0]} (not said "
                    "again; configure the center and restart the alerting role)"
                )
                self._report(KeyError(problem), None)
                continue
            try:
                change = self._store.escalate(alert.id, parent, now, sla_s)
            except Exception as exc:  # the store's failure: tried again next tick; keep the others going
                self._report(exc, None)
                continue
            if change is not None:
                changes.append(change)
                if self._metrics:
                    outcome = "exhausted" if parent is None else "escalated"
                    self._metrics.escalations.labels(outcome=outcome).inc()
        return changes

    def run(self, stop: threading.Event, poll_timeout: float = 1.0) -> None:
        """Process and escalate until `stop` is set. An exception raised by `on_error` (or by
        the bus itself) ends the loop: the caller decides whether to restart."""
        while not stop.is_set():
            self.run_once(poll_timeout)
            self.tick()

    def close(self) -> None:
        self._prefetched = None  # not committed: delivered again to whoever consumes next
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def route(self, event: CrowdEvent) -> RouteDecision:
        return self._router.route(event.camera_id, event.location)

    # --- per batch ------------------------------------------------------------------------

    def _fetch(self, consumer: Consumer, timeout: float) -> _Batch | None:
        messages = consumer.poll(timeout, self._batch_size)
        return (messages, [_decode(m) for m in messages]) if messages else None

    def _count(
        self,
        finished: list[CrowdEvent | CameraStatusEvent | _Rejected],
        crowd: list[CrowdEvent],
        changes: list[AlertChange | None],
    ) -> None:
        """Metrics for a batch, one update per label rather than one per event."""
        if self._metrics is None:
            return
        types = Counter(d.type for d in finished if not isinstance(d, _Rejected))
        for event_type, n in types.items():
            self._metrics.events_consumed.labels(type=event_type.value).inc(n)
        created = sum(1 for c in changes if c is not None and c.kind == "created")
        if created:
            self._metrics.alerts_created.inc(created)
        now = self._clock()
        self._metrics.processing_latency.observe_many(
            max(0.0, now - event.ts)
            for event, change in zip(crowd, changes, strict=False)
            if change is not None
        )

    def _dead_letter(self, message: Message, exc: Exception, reason: str) -> None:
        log.warning("dead-lettering %s[%d]@%d: %s", message.topic, message.partition, message.offset, exc)
        letter = dead_letter(message, exc, reason)
        if "truncated-from" in letter.headers or "dropped-headers" in letter.headers:
            log.warning(
                "dead letter of %s[%d]@%d cut to %d bytes to fit one record",
                message.topic,
                message.partition,
                message.offset,
                letter.size,
            )
        self._bus.publish(CROWD_EVENTS_DLQ, letter.key, letter.value, letter.headers)
        if self._metrics:
            self._metrics.dlq_messages.labels(reason=reason).inc()

    def _commit(self, consumer: Consumer, done: list[Message], dead_lettered: bool) -> None:
        if not done:
            return
        if dead_lettered:
            # The dead letter must be durable before its source offset is committed.
            self._bus.flush()
        consumer.commit(done)

    def _get_consumer(self) -> Consumer:
        # Joined on first use rather than in __init__: constructing the service does no I/O.
        if self._consumer is None:
            self._consumer = self._bus.consumer([CROWD_EVENTS, CAMERA_STATUS], self._group)
        return self._consumer

    def _report(self, exc: Exception, message: Message | None) -> None:
        if self._on_error is not None:
            self._on_error(exc, message)
            return
        where = "escalation" if message is None else f"{message.topic}[{message.partition}]@{message.offset}"
        log.error("alerting failed at %s: %s", where, exc, exc_info=exc)


@dataclass(frozen=True, slots=True)
class _Rejected:
    """A message that goes to the dead-letter topic: why (`decode` or `schema`) and the error."""

    error: Exception
    reason: str


_Batch = tuple[list[Message], list[CrowdEvent | CameraStatusEvent | _Rejected]]


def _decode(message: Message) -> CrowdEvent | CameraStatusEvent | _Rejected:
    try:
        # Well-formed events take one typed decode; anything else the reference path judges.
        event = decode_valid(message.value)
        if event is not None:
            return event
        envelope = codec.loads(message.value)
        validate_envelope(envelope)
        return codec.from_envelope(envelope)
    except codec.DecodeError as exc:
        return _Rejected(exc, "decode")
    except InvalidEventError as exc:
        return _Rejected(exc, "schema")
    except Exception as exc:
        # A message the decoder did not foresee is still one bad message: raised, it would
        # come back after every rewind and stop its partition for good.
        log.error(
            "unexpected error decoding %s[%d]@%d; dead-lettered",
            message.topic,
            message.partition,
            message.offset,
            exc_info=exc,
        )
        return _Rejected(exc, "decode")
