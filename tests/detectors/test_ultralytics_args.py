"""The half-precision argument given to Ultralytics is one the installed version knows."""

from __future__ import annotations

import pytest

from crowdwatch.detectors.ultralytics import half_precision_args


def test_half_precision_argument_is_known_to_the_installed_ultralytics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YOLO_OFFLINE", "1")  # its import would otherwise check the network
    cfg = pytest.importorskip("ultralytics.cfg")
    args = half_precision_args()
    assert args in ({"quantize": 16}, {"half": True})
    assert set(args) <= set(cfg.DEFAULT_CFG_DICT)  # a key Ultralytics takes, so no warning per call
