"""The rich live table: cameras, zones, open alerts. Rendering only; no state of its own."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text

from crowdwatch.core.analysis import ZoneState
from crowdwatch.core.crowd import Phase
from crowdwatch.core.types import Alert, AlertState, Severity
from crowdwatch.runtime.live import CameraView

_STATUS_STYLE = {
    "online": "green",
    "starting": "yellow",
    "degraded": "yellow",
    "offline": "bold red",
    "ended": "dim",
}
_SEVERITY_STYLE = {
    Severity.LOW: "cyan",
    Severity.MEDIUM: "yellow",
    Severity.HIGH: "bold red",
    Severity.CRITICAL: "bold white on red",
}
_PHASE_STYLE = {
    Phase.IDLE: "dim",
    Phase.PENDING: "yellow",
    Phase.ACTIVE: "bold red",
    Phase.CLEARING: "magenta",
    Phase.COOLDOWN: "cyan",
}


def render(
    cameras: Sequence[CameraView],
    zones: Sequence[ZoneState],
    alerts: Sequence[Alert],
    center_names: Mapping[str, str],
    now: float | None = None,
) -> Group:
    now = time.time() if now is None else now
    return Group(_cameras(cameras), _zones(zones), _alerts(alerts, center_names, now))


def _cameras(cameras: Sequence[CameraView]) -> Table:
    t = Table(title="Cameras", title_justify="left", expand=True)
    for col in ("camera", "status", "decode fps", "analysed", "stale dropped", "errors", "detect ms"):
        t.add_column(col, justify="left" if col in ("camera", "status") else "right")
    for c in cameras:
        status = Text(c.status, style=_STATUS_STYLE.get(c.status, ""))
        if c.reason and c.status != "online":
            status.append(f" ({c.reason})", style="dim")
        t.add_row(
            c.name if c.name == c.camera_id else f"{c.camera_id} · {c.name}",
            status,
            f"{c.decode_fps:.1f}",
            str(c.analysed),
            str(c.stale_dropped),
            str(c.decode_errors),
            f"{c.detect_ms:.0f}",
        )
    return t


def _zones(zones: Sequence[ZoneState]) -> Table:
    t = Table(title="Zones", title_justify="left", expand=True)
    for col in ("camera / zone", "people", "raw", "density p/m²", "method", "state"):
        t.add_column(col, justify="left" if col in ("camera / zone", "method", "state") else "right")
    for z in zones:
        t.add_row(
            f"{z.camera_id} / {z.zone_id}",
            f"{z.count:.0f}",
            f"{z.raw_count:.0f}",
            "-" if z.density_per_m2 is None else f"{z.density_per_m2:.2f}",
            z.method,
            Text(z.phase.value, style=_PHASE_STYLE.get(z.phase, "")),
        )
    return t


def _alerts(alerts: Sequence[Alert], center_names: Mapping[str, str], now: float) -> Table:
    t = Table(title="Alerts", title_justify="left", expand=True)
    for col in ("alert", "center", "severity", "state", "people", "peak", "age", "gathering"):
        t.add_column(col, justify="right" if col in ("people", "peak", "age") else "left")
    for a in sorted(alerts, key=lambda a: (a.state is AlertState.RESOLVED, -a.severity, -a.created_at)):
        center = center_names.get(a.center_id, a.center_id)
        if a.escalation_level:
            center += f" ↑{a.escalation_level}"
        t.add_row(
            f"{a.camera_id}/{a.zone_id}",
            center,
            Text(a.severity.label, style=_SEVERITY_STYLE[a.severity]),
            a.state.value,
            f"{a.count:.0f}",
            f"{a.peak:.0f}",
            _age(now - a.created_at),
            "ended" if a.gathering_ended else "ongoing",
        )
    if not alerts:
        t.add_row("—", "no alerts", "", "", "", "", "", "")
    return t


def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
