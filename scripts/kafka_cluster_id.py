"""Print a random Kafka cluster id for `kafka-storage format -t`, in Kafka's own form: the
base64url text (no padding) of 16 random bytes.

An id that starts with '-' is drawn again: StorageTool's argument parser would read it as an
option ("argument --cluster-id/-t: expected one argument"): one start in 64, and it happened
in CI here. Kafka's Uuid.randomUuid skips those ids for the same reason. Standard library only: run by
scripts/services with the system python3, before any virtual environment exists.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable


def cluster_id(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    while True:
        text = base64.urlsafe_b64encode(random_bytes(16)).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


if __name__ == "__main__":
    print(cluster_id())
