"""Video sources: decode, sample, drop stale frames, reconnect, report camera health."""

from crowdwatch.ingest.backoff import Backoff, backoff_delay
from crowdwatch.ingest.base import Source, SourceStats, StatusCallback
from crowdwatch.ingest.capture import Capture, CaptureFactory, SourceOpenError, open_capture
from crowdwatch.ingest.opencv import OpenCVSource

__all__ = [
    "Backoff",
    "Capture",
    "CaptureFactory",
    "OpenCVSource",
    "Source",
    "SourceOpenError",
    "SourceStats",
    "StatusCallback",
    "backoff_delay",
    "open_capture",
]
