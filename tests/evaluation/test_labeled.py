"""Labeled-folder reading (1-based head points, ROI), range parsing, error metrics, result CSVs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from crowdwatch.evaluation.counting import ImageResult, read_results_csv, write_results_csv
from crowdwatch.evaluation.labeled import open_folder, parse_ranges, points_in_mask
from crowdwatch.evaluation.metrics import CountErrors


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("3", [3]),
        ("1-3", [1, 2, 3]),
        ("1-2,5,7-8", [1, 2, 5, 7, 8]),
        (" 4 - 5 , ", [4, 5]),
    ],
)
def test_parse_ranges(spec: str, expected: list[int]) -> None:
    assert parse_ranges(spec) == expected


def test_parse_ranges_rejects_backwards_range() -> None:
    with pytest.raises(ValueError, match="ends before"):
        parse_ranges("9-3")


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        ((2.0, 1.0), True),  # pixel (col 2, row 1) is set
        ((2.49, 1.49), True),  # still that pixel
        ((2.5, 1.0), False),  # the next pixel to the right
        ((-0.6, 0.0), False),  # left of the image
        ((9.0, 9.0), False),  # beyond the image
    ],
)
def test_points_in_mask(point: tuple[float, float], inside: bool) -> None:
    mask = np.zeros((4, 5), dtype=bool)
    mask[1, 2] = True
    assert points_in_mask(np.array([point]), mask).tolist() == [inside]


def _write_folder(root: Path, with_roi: bool) -> None:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    items = []
    for n, points in ((1, [[1, 1], [10, 10]]), (2, [[20, 20]]), (3, [])):
        name = f"seq_{n:06d}"
        cv2.imwrite(str(root / "images" / f"{name}.png"), np.zeros((20, 20), np.uint8))
        ann = {"image": f"{name}.png", "count": len(points), "points": points, "width": 20, "height": 20}
        (root / "annotations" / f"{name}.json").write_text(json.dumps(ann))
        items.append(
            {"image": f"images/{name}.png", "annotation": f"annotations/{name}.json", "count": len(points)}
        )
    (root / "index.json").write_text(json.dumps({"meta": {"dataset": "toy"}, "items": items}))
    if with_roi:
        roi = np.zeros((20, 20), np.uint8)
        roi[:10, :10] = 255  # 1-based (1, 1) and (10, 10) are pixels (0, 0) and (9, 9): inside
        cv2.imwrite(str(root / "roi_mask.png"), roi)


@pytest.mark.parametrize(("with_roi", "counts"), [(False, [2, 1, 0]), (True, [2, 0, 0])])
def test_open_folder_counts_heads_inside_the_roi(tmp_path: Path, with_roi: bool, counts: list[int]) -> None:
    _write_folder(tmp_path, with_roi)
    folder = open_folder(tmp_path)
    assert folder.dataset == "toy"
    assert [folder.true_count(it) for it in folder] == counts
    assert [it.frame_number for it in folder.select([2, 3])] == [2, 3]
    assert len(folder.select(limit=1)) == 1
    image = folder.items[0].load_image()
    assert image.shape == (20, 20, 3)  # greyscale files come back as three channels


def test_count_errors() -> None:
    e = CountErrors.of([12.0, 8.0, 10.0], [10, 10, 10])
    assert e.n == 3
    assert e.mae == pytest.approx(4 / 3)
    assert e.mse == pytest.approx(8 / 3)
    assert e.mean_signed_error == 0.0
    assert e.rmse == pytest.approx((8 / 3) ** 0.5)
    with pytest.raises(ValueError, match="no images"):
        CountErrors.of([], [])


def test_results_csv_round_trip(tmp_path: Path) -> None:
    results = [ImageResult("seq_000001", 1, 29, 30.25, 812.0), ImageResult("IMG_3", None, 5, 7.5, 90.0)]
    path = tmp_path / "out" / "density.csv"
    write_results_csv(path, results, [r.raw for r in results])
    assert read_results_csv(path) == results
