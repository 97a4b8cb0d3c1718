"""Value types that flow between the stages. Frozen, typed, no behaviour beyond validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Literal

import numpy as np
import numpy.typing as npt

from crowdwatch.core.fast_init import fast_init

SCHEMA_VERSION = "1.0"

CountMethod = Literal["detector", "tiled", "density"]


@fast_init
@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A WGS84 location. Latitude first, as people say it; GeoJSON order is (lon, lat)."""

    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not -90.0 <= self.lat <= 90.0:
            raise ValueError(f"latitude {self.lat} is outside -90..90")
        if not -180.0 <= self.lon <= 180.0:
            raise ValueError(f"longitude {self.lon} is outside -180..180")


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One decoded picture. `ts` is the wall-clock capture time (epoch seconds, for events);
    `mono` the monotonic capture time (for ordering and intervals)."""

    camera_id: str
    seq: int
    ts: float
    mono: float
    image: npt.NDArray[np.uint8]

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True, slots=True, eq=False)
class Detections:
    """Person boxes from one frame as parallel arrays (pixel xyxy, confidence, class id)."""

    xyxy: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int32]

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        cls = np.asarray(self.class_id, dtype=np.int32).reshape(-1)
        if not len(xyxy) == len(conf) == len(cls):
            raise ValueError(
                f"Detections arrays differ in length: xyxy={len(xyxy)}, "
                f"confidence={len(conf)}, class_id={len(cls)}"
            )
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "class_id", cls)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp] | slice) -> Detections:
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index])

    def feet(self) -> npt.NDArray[np.float32]:
        """Bottom-centre of every box: where the person stands on the ground."""
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2.0
        return np.stack([x, self.xyxy[:, 3]], axis=1).astype(np.float32)

    def heights(self) -> npt.NDArray[np.float32]:
        return (self.xyxy[:, 3] - self.xyxy[:, 1]).astype(np.float32)


@dataclass(frozen=True, slots=True)
class ZoneCount:
    """How many people stand in one zone at one moment. `count` is a float because density
    maps and smoothing give fractional values."""

    camera_id: str
    zone_id: str
    ts: float
    count: float
    density_per_m2: float | None
    method: CountMethod


class Severity(IntEnum):
    """Ordered so that comparisons mean 'worse than'."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, label: str) -> Severity:
        return cls[label.upper()]


class EventType(StrEnum):
    GATHERING_STARTED = "crowd.gathering.started"
    GATHERING_UPDATED = "crowd.gathering.updated"
    GATHERING_ENDED = "crowd.gathering.ended"
    CAMERA_OFFLINE = "camera.offline"
    CAMERA_ONLINE = "camera.online"
    CAMERA_DEGRADED = "camera.degraded"


GATHERING_TYPES = frozenset(
    {EventType.GATHERING_STARTED, EventType.GATHERING_UPDATED, EventType.GATHERING_ENDED}
)
CAMERA_TYPES = frozenset({EventType.CAMERA_OFFLINE, EventType.CAMERA_ONLINE, EventType.CAMERA_DEGRADED})


@fast_init
@dataclass(frozen=True, slots=True)
class CrowdEvent:
    """A change in a zone's gathering episode (DESIGN 3). `seq` numbers the events of one
    episode from 0, so `id` is the same when an event is re-sent."""

    type: EventType
    camera_id: str
    zone_id: str
    ts: float
    seq: int
    episode_start: float
    location: GeoPoint
    count: float
    density_per_m2: float | None
    peak: float
    rise_per_min: float
    severity: Severity
    trigger: str
    method: CountMethod
    model: str
    schema_version: str = SCHEMA_VERSION
    # Formatted once: the alerting path reads both several times per event.
    _episode_key: str = field(init=False, repr=False, compare=False)
    _id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.type not in GATHERING_TYPES:
            raise ValueError(f"{self.type} is not a gathering event type")
        key = f"{self.camera_id}:{self.zone_id}:{round(self.episode_start * 1000)}"
        object.__setattr__(self, "_episode_key", key)
        object.__setattr__(self, "_id", f"{key}:{self.seq}")

    @property
    def episode_key(self) -> str:
        """Same for every event of one episode: the alert dedupe key."""
        return self._episode_key

    @property
    def id(self) -> str:
        return self._id


@fast_init
@dataclass(frozen=True, slots=True)
class CameraStatusEvent:
    """A camera went offline, came back, or is degraded (decode errors, low fps)."""

    type: EventType
    camera_id: str
    ts: float
    reason: str
    location: GeoPoint | None = None
    schema_version: str = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.type not in CAMERA_TYPES:
            raise ValueError(f"{self.type} is not a camera status event type")

    @property
    def id(self) -> str:
        return f"{self.camera_id}:{self.type.value}:{round(self.ts * 1000)}"


class AlertState(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    RESOLVED = "resolved"
    ESCALATED = "escalated"


@fast_init
@dataclass(frozen=True, slots=True)
class Alert:
    """One alert per crowd episode, routed to a center, updated by later events and by
    operator actions. `center_id` is where it is now (after escalation), `origin_center_id`
    where it was routed first."""

    id: str
    camera_id: str
    zone_id: str
    center_id: str
    origin_center_id: str
    route_reason: str
    state: AlertState
    severity: Severity
    count: float
    peak: float
    density_per_m2: float | None
    method: CountMethod
    location: GeoPoint
    episode_start: float
    created_at: float
    updated_at: float
    last_event_id: str
    last_event_seq: int
    escalation_level: int = 0
    escalate_at: float | None = None
    gathering_ended: bool = False
    assigned_unit: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state is not AlertState.RESOLVED


@fast_init
@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An operator action or a system transition, written for every change of an alert."""

    alert_id: str
    actor: str
    action: str
    ts: float
    from_state: AlertState | None
    to_state: AlertState
    note: str = ""
    center_id: str = ""
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)
