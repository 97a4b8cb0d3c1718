"""Store records (what Redis keeps) read back exactly, and corrupt ones fail with a clear error."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from crowdwatch.config.backends import RedisStoreConfig
from crowdwatch.config.root import AppConfig
from crowdwatch.core import alerts as lifecycle
from crowdwatch.core.alerts import Action, AlertChange
from crowdwatch.core.routing import RouteDecision
from crowdwatch.core.types import Alert, AlertState, AuditEntry, EventType, Severity
from crowdwatch.store.base import StoreUpdate
from crowdwatch.store.records import (
    OPTIONAL_FIELDS,
    RecordError,
    alert_from_fields,
    alert_to_fields,
    audit_from_fields,
    audit_to_fields,
    update_from_fields,
    update_to_fields,
)
from crowdwatch.store.redis import client_from_config

from .events import T0, camera_event, crowd_event

REPO = Path(__file__).resolve().parents[2]
CREATED = lifecycle.open_alert(crowd_event(), RouteDecision("c1", "inside:community", 120.0), T0 + 0.1)
ALERT = CREATED.alert
DISPATCHED = lifecycle.act(
    lifecycle.act(ALERT, Action.ACKNOWLEDGE, "op", T0 + 1).alert, Action.DISPATCH, "op", T0 + 2, unit="van 3"
)
ESCALATED = lifecycle.escalate(ALERT, "s1", T0 + 200, 300.0)


@pytest.mark.parametrize(
    "alert",
    [
        ALERT,
        DISPATCHED.alert,
        ESCALATED.alert,
        replace(ALERT, density_per_m2=2.0 / 3.0, count=1e-7, peak=1e21, gathering_ended=True),
        replace(ALERT, id="cam:ü:1", route_reason="nearest street (2.3 km) | ✓", method="density"),
    ],
    ids=["new", "dispatched", "escalated", "odd-numbers", "unicode"],
)
def test_alert_round_trip(alert: Alert) -> None:
    assert alert_from_fields(alert_to_fields(alert)) == alert


def test_none_fields_are_left_out() -> None:
    bare = alert_to_fields(replace(ALERT, escalate_at=None, density_per_m2=None, assigned_unit=None))
    full = alert_to_fields(replace(ALERT, escalate_at=T0, density_per_m2=1.5, assigned_unit="van-3"))
    # What the Redis store deletes (HDEL) when one of them becomes None.
    assert set(full) - set(bare) == set(OPTIONAL_FIELDS)


@pytest.mark.parametrize(
    "entry",
    [
        CREATED.audit[0],
        DISPATCHED.audit[0],
        ESCALATED.audit[0],
        AuditEntry("a", "op", "note", T0, None, AlertState.NEW, extra=(("b", "2"), ("a", '1"]')), note=""),
    ],
    ids=["created", "dispatch", "escalated", "extra-order"],
)
def test_audit_round_trip(entry: AuditEntry) -> None:
    assert audit_from_fields(audit_to_fields(entry)) == entry


@pytest.mark.parametrize(
    "update",
    [CREATED, DISPATCHED, ESCALATED, camera_event(EventType.CAMERA_DEGRADED, ts=T0 + 0.001)],
    ids=["created", "transitioned", "escalated", "camera"],
)
def test_update_round_trip(update: StoreUpdate) -> None:
    assert update_from_fields(update_to_fields(update)) == update


def _alert_with(**changes: str) -> dict[str, str]:
    return alert_to_fields(ALERT) | changes


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({k: v for k, v in alert_to_fields(ALERT).items() if k != "center_id"}, r"alert\.center_id: missing"),
        (_alert_with(count="many"), r"alert\.count: expected a number"),
        (_alert_with(state="lost"), r"alert\.state: expected an alert state"),
        (_alert_with(severity="apocalyptic"), r"alert\.severity: expected a severity"),
        (_alert_with(method="guess"), r"unknown method 'guess'"),
        (_alert_with(gathering_ended="yes"), r"alert\.gathering_ended: expected 0 or 1"),
        (_alert_with(lat="95"), r"alert location: latitude 95"),
        (_alert_with(format="2"), r"unknown record format '2'"),
    ],
)
def test_corrupt_alert_records(fields: dict[str, str], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        alert_from_fields(fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "gossip"}, r"unknown update type 'gossip'"),
        (update_to_fields(CREATED) | {"kind": "vanished"}, r"unknown change kind 'vanished'"),
        (update_to_fields(CREATED) | {"audit": "{"}, r"update\.audit: not valid JSON"),
        (update_to_fields(CREATED) | {"alert": '{"id": 1}'}, r"update\.alert: expected an object of strings"),
        ({"type": "camera", "event": "{}"}, r"camera status: specversion: missing"),
    ],
)
def test_corrupt_updates(fields: dict[str, str], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        update_from_fields(fields)


def test_audit_extra_must_be_pairs() -> None:
    with pytest.raises(RecordError, match="pair of strings"):
        audit_from_fields(audit_to_fields(CREATED.audit[0]) | {"extra": '[["a"]]'})


def test_change_kind_is_kept() -> None:
    update = update_from_fields(update_to_fields(ESCALATED))
    assert isinstance(update, AlertChange)
    assert (update.kind, update.alert.severity) == ("escalated", Severity.MEDIUM)


# --- config (no server needed) -------------------------------------------------------------


def test_store_section_picks_redis_by_type() -> None:
    section = {"type": "redis", "url": "redis://cache:6379/2", "password": "s3cret", "key_prefix": "cw-a"}
    shipped = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    config = AppConfig.model_validate(shipped | {"store": section})
    assert isinstance(config.store, RedisStoreConfig)
    assert config.store.key_prefix == "cw-a"
    assert "s3cret" not in repr(config.store)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "http://x"}, "String should match pattern"),
        ({"key_prefix": "cw*"}, "String should match pattern"),
        ({"ssl_ca_certs": "/ca.pem"}, "ssl_ca_certs set, but url is not rediss://"),
        ({"event_dedupe_ttl_s": 1}, "greater than or equal to 60"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_redis_config(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RedisStoreConfig.model_validate(options)


def test_client_from_config_uses_tls_and_credentials() -> None:
    config = RedisStoreConfig(
        url="rediss://cache:6380/1",
        username="alerting",
        password=SecretStr("s3cret"),
        ssl_ca_certs="/etc/ssl/ca.pem",
    )
    client = client_from_config(config)  # connects lazily: nothing is sent here
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["ssl_ca_certs"]) == (
        "alerting",
        "s3cret",
        "/etc/ssl/ca.pem",
    )
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache", 6380, 1)
