"""SSD post-processing in numpy: anchors, box decoding, scores, NMS and the stored settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from crowdwatch.core.types import Detections
from crowdwatch.detectors.ssd_config import AnchorLayer, SsdConfig, SsdConfigError
from crowdwatch.detectors.ssd_head import (
    class_scores,
    decode_boxes,
    generate_anchors,
    layer_anchors,
    postprocess,
)

LAYER = AnchorLayer(
    grid=(2, 3), scales=(0.2, 0.4), aspect_ratios=(1.0, 4.0), stride=(0.5, 1 / 3), offset=(0.25, 1 / 6)
)
CONFIG = SsdConfig(
    input_size=(300, 300),
    align_corners=False,
    half_pixel_centers=False,
    base_anchor_size=(1.0, 1.0),
    layers=(
        LAYER,
        AnchorLayer(grid=(1, 1), scales=(0.9,), aspect_ratios=(1.0,), stride=(1, 1), offset=(0.5, 0.5)),
    ),
    scale_factors=(10.0, 10.0, 5.0, 5.0),
    score_fn="sigmoid",
    logit_scale=1.0,
    class_offset=1,
    iou_threshold=0.6,
    score_threshold=1e-8,
    max_per_class=100,
)


# ---- anchors -----------------------------------------------------------------------------------


def test_anchor_order_is_row_column_then_anchor() -> None:
    a = layer_anchors(LAYER, (1.0, 1.0))
    assert a.shape == (2 * 3 * 2, 4)
    centres = np.column_stack([(a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2])
    np.testing.assert_allclose(centres[0], [0.25, 1 / 6], atol=1e-6)
    np.testing.assert_allclose(centres[1], centres[0])  # second anchor of the same cell
    np.testing.assert_allclose(centres[2], [0.25, 0.5], atol=1e-6)  # next column
    np.testing.assert_allclose(centres[6], [0.75, 1 / 6], atol=1e-6)  # next row


@pytest.mark.parametrize(
    ("index", "height", "width"),
    [(0, 0.2, 0.2), (1, 0.4 / 2, 0.4 * 2)],  # h = scale / sqrt(ar), w = scale * sqrt(ar)
)
def test_anchor_sizes_follow_scale_and_aspect_ratio(index: int, height: float, width: float) -> None:
    a = layer_anchors(LAYER, (1.0, 1.0))[index]
    assert a[2] - a[0] == pytest.approx(height, abs=1e-6)
    assert a[3] - a[1] == pytest.approx(width, abs=1e-6)


def test_base_anchor_size_scales_heights_and_widths() -> None:
    a = layer_anchors(LAYER, (0.5, 2.0))[0]
    assert (a[2] - a[0], a[3] - a[1]) == pytest.approx((0.1, 0.4), abs=1e-6)


def test_all_layers_are_concatenated_in_order() -> None:
    anchors = generate_anchors(CONFIG)
    assert anchors.shape == (CONFIG.num_anchors, 4) == (13, 4)
    np.testing.assert_allclose(anchors[-1], [0.05, 0.05, 0.95, 0.95], atol=1e-6)
    assert anchors.dtype == np.float32


# ---- box decoding ------------------------------------------------------------------------------

ANCHOR = np.asarray([[0.2, 0.4, 0.6, 0.6]], np.float32)  # centre (0.4, 0.5), h 0.4, w 0.2


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ([0, 0, 0, 0], [0.2, 0.4, 0.6, 0.6]),  # zero code: the anchor itself
        ([10, 0, 0, 0], [0.6, 0.4, 1.0, 0.6]),  # ty = 10 / 10 anchor heights down
        ([0, -5, 0, 0], [0.2, 0.3, 0.6, 0.5]),  # tx = -5 / 10 anchor widths left
        ([0, 0, 5 * np.log(2), 0], [0.0, 0.4, 0.8, 0.6]),  # th: twice the height, same centre
        ([0, 0, 0, 5 * np.log(0.5)], [0.2, 0.45, 0.6, 0.55]),  # tw: half the width
    ],
)
def test_decode_boxes(encoding: list[float], expected: list[float]) -> None:
    got = decode_boxes(np.asarray([encoding], np.float32), ANCHOR, (10.0, 10.0, 5.0, 5.0))
    np.testing.assert_allclose(got[0], expected, atol=1e-6)


# ---- scores and post-processing ----------------------------------------------------------------


def test_sigmoid_scores_drop_the_background_column() -> None:
    scores = class_scores(np.asarray([[5.0, 0.0], [0.0, 2.0]]), CONFIG)
    np.testing.assert_allclose(scores, [[0.5], [1 / (1 + np.exp(-2.0))]], rtol=1e-6)


def test_softmax_and_logit_scale() -> None:
    config = replace(CONFIG, score_fn="softmax", logit_scale=2.0)
    scores = class_scores(np.asarray([[0.0, 2.0 * np.log(3.0)]]), config)
    np.testing.assert_allclose(scores, [[0.75]], rtol=1e-6)


def _outputs(logits: list[float]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Zero box codes (boxes = anchors) and person logits for the first anchors; the others are
    sure background."""
    n = CONFIG.num_anchors
    lg = np.tile(np.asarray([0.0, -20.0], np.float32), (n, 1))
    lg[: len(logits), 1] = logits
    return np.zeros((n, 4), np.float32), lg


def _post(
    enc: npt.NDArray[np.float32],
    logits: npt.NDArray[np.float32],
    conf: float = 0.5,
    shape: tuple[int, int] = (100, 300),
) -> Detections:
    return postprocess(
        enc,
        logits,
        generate_anchors(CONFIG),
        CONFIG,
        person_classes={0},
        conf_threshold=conf,
        iou_threshold=0.6,
        max_det=100,
        orig_shape=shape,
    )


def test_nms_runs_on_normalised_coordinates() -> None:
    # Anchors 0 (0.2 x 0.2) and 1 (0.2 x 0.8) share a centre: IoU 0.25 in normalised
    # coordinates, so both stay although the 300 x 100 stretch would make them overlap more.
    got = _post(*_outputs([3.0, 2.0]))
    assert len(got) == 2
    assert got.confidence[0] > got.confidence[1]


def test_a_duplicate_box_is_suppressed() -> None:
    enc, logits = _outputs([3.0, 2.0, 1.0])
    # Move anchor 2 (next cell to the right, same size as anchor 0) onto anchor 0:
    # tx / 10 * width 0.2 = -1/3.
    enc[2] = [0.0, -50.0 / 3.0, 0.0, 0.0]
    got = _post(enc, logits)
    assert len(got) == 2
    assert not np.isclose(got.confidence, 1 / (1 + np.exp(-1.0))).any()


def test_boxes_are_scaled_to_the_image_and_clipped() -> None:
    enc, logits = _outputs([])
    logits[12, 1] = 4.0
    enc[12] = [0.0, 0.0, 5 * np.log(2.0), 0.0]  # the full-image anchor, twice as tall: clipped
    got = _post(enc, logits, shape=(100, 300))
    assert len(got) == 1
    np.testing.assert_allclose(got.xyxy[0], [15.0, 0.0, 285.0, 100.0], atol=1e-3)
    assert got.class_id.tolist() == [0]


def test_confidence_threshold_and_empty_result() -> None:
    assert len(_post(*_outputs([0.1]), conf=0.6)) == 0  # sigmoid(0.1) ~ 0.52
    assert len(_post(*_outputs([0.1]), conf=0.5)) == 1


# ---- stored settings ---------------------------------------------------------------------------


def test_config_round_trips_through_json() -> None:
    assert SsdConfig.from_json(CONFIG.to_json()) == CONFIG


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("layers"), "malformed"),
        (lambda d: d.update(score_fn="relu"), "score function"),
        (lambda d: d.update(scale_factors=[1, 2]), "4 scale factors"),
        (lambda d: d["layers"][0].update(scales=[0.1]), "scales for"),
    ],
)
def test_malformed_settings_are_refused(edit: Callable[[dict[str, Any]], object], message: str) -> None:
    data = json.loads(CONFIG.to_json())
    edit(data)
    with pytest.raises(SsdConfigError, match=message):
        SsdConfig.from_json(json.dumps(data))
