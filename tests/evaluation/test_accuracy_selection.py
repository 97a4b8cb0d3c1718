"""benchmarks/accuracy.py never scores a trained density model on its own training frames: on
the folder a recipe was trained from, every picture inside the recipe's training ranges is
skipped (neighbouring video frames are near-duplicates of the ones it took), and a model trained
on every picture of a folder is refused there."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from benchmark_scripts import load_benchmark
from crowdwatch.detectors.trained import RECIPES


def _accuracy() -> ModuleType:
    return load_benchmark("accuracy")


def _folder(root: Path, frames: list[int]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    items = []
    for n in frames:
        name = f"seq_{n:06d}"
        cv2.imwrite(str(root / "images" / f"{name}.png"), np.zeros((8, 8), np.uint8))
        ann = {"image": f"{name}.png", "count": 0, "points": [], "width": 8, "height": 8}
        (root / "annotations" / f"{name}.json").write_text(json.dumps(ann))
        items.append({"image": f"images/{name}.png", "annotation": f"annotations/{name}.json", "count": 0})
    (root / "index.json").write_text(json.dumps({"meta": {"dataset": root.name}, "items": items}))
    return root


@pytest.mark.parametrize(
    ("folder_name", "args", "skipped"),
    [
        # csrnet-mall trains on 1-269 and 451-800 (every 5th); 280-440 is its held-out stretch.
        ("mall", ["--method", "auto", "--density-model", "csrnet-mall"], [1, 2, 269, 451, 800]),
        ("mall", ["--method", "density", "--model", "csrnet-mall"], [1, 2, 269, 451, 800]),
        ("mall", ["--method", "detector", "auto"], []),  # the generic CSRNet was never trained here
        ("other", ["--method", "auto", "--density-model", "csrnet-mall"], []),  # another folder
    ],
)
def test_training_frames_of_a_trained_model_are_not_scored(
    tmp_path: Path, folder_name: str, args: list[str], skipped: list[int]
) -> None:
    accuracy = _accuracy()
    assert RECIPES["csrnet-mall"].train_frames == "1-269,451-800"
    root = _folder(tmp_path / folder_name, [1, 2, 269, 280, 300, 440, 451, 800])
    parsed = accuracy._parser().parse_args(["--data", str(root), *args])
    folder = accuracy.open_folder(root)
    got = accuracy._trained_on(folder, folder.select(None), parsed)
    assert [it.frame_number for it in got] == skipped


def test_a_model_trained_on_every_picture_is_refused_on_its_folder(tmp_path: Path) -> None:
    accuracy = _accuracy()
    assert RECIPES["csrnet-shtb"].train_frames == ""
    root = _folder(tmp_path / RECIPES["csrnet-shtb"].dataset, [1, 2, 3])
    with pytest.raises(SystemExit, match="trained on all of them"):
        accuracy.main(["--data", str(root), "--method", "density", "--model", "csrnet-shtb"])
