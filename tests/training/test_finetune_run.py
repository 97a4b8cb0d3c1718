"""The GPU fine-tuning run end to end on the CPU, on a toy labeled folder: the weights survive the
trip `scripts/gpu_weights.py` packs them for, and `benchmarks/finetune_full.py` trains, scores and
writes every fold. A GPU session has minutes: a crash there must have been caught here."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")  # the training extra (PyTorch) is installed with ultralytics

from benchmark_scripts import load_benchmark
from csrnet_weights import random_weights

ROOT = Path(__file__).resolve().parents[2]


def save(path: Path, weights: dict[str, np.ndarray]) -> None:
    with path.open("wb") as f:
        np.savez(f, *(), **weights)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle


@dataclass(frozen=True)
class Ran:
    returncode: int
    stderr: str


def benchmark() -> ModuleType:
    return load_benchmark("finetune_full")


def run_benchmark(*args: str) -> Ran:
    """`benchmarks/finetune_full.py ARGS` in this process (torch is imported once for all the
    tests), with its exit status and what it wrote to stderr, as a command line would see them."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = benchmark().main(list(args))
        except SystemExit as exc:  # argparse and the checks exit with a message, as a script
            if isinstance(exc.code, str):
                print(exc.code, file=err)
            code = exc.code if isinstance(exc.code, int) else 1
    return Ran(code, err.getvalue())


def toy_folder(root: Path, n: int = 4) -> None:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    items = []
    for i in range(1, n + 1):
        name = f"IMG_{i}"
        image = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
        points = rng.uniform(5, 40, (2 + i, 2)).round(1).tolist()
        for x, y in points:
            image[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3] = 230
        cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        ann = {"image": f"{name}.png", "count": len(points), "points": points, "width": 64, "height": 48}
        (root / "annotations" / f"{name}.json").write_text(json.dumps(ann))
        items.append(
            {"image": f"images/{name}.png", "annotation": f"annotations/{name}.json", "count": len(points)}
        )
    (root / "index.json").write_text(json.dumps({"meta": {"dataset": "toy"}, "items": items}))


def test_packed_weights_come_back_as_the_same_network_in_float16(tmp_path: Path) -> None:
    weights = random_weights(2)
    save(tmp_path / "w.npz", weights)
    script = str(ROOT / "scripts" / "gpu_weights.py")
    subprocess.run(
        [sys.executable, script, "pack", str(tmp_path / "w.npz"), str(tmp_path / "w.xz")], check=True
    )
    subprocess.run(
        [sys.executable, script, "unpack", str(tmp_path / "w.xz"), str(tmp_path / "back.npz")], check=True
    )
    with np.load(tmp_path / "back.npz") as back:
        assert sorted(back.files) == sorted(weights)
        for key, value in weights.items():
            assert back[key].dtype == np.float32
            np.testing.assert_array_equal(back[key], value.astype(np.float16).astype(np.float32))
    assert (tmp_path / "w.xz").stat().st_size < 0.5 * (tmp_path / "w.npz").stat().st_size


def test_the_cross_validated_run_trains_scores_and_writes_every_fold(tmp_path: Path) -> None:
    toy_folder(tmp_path / "toy")
    save(tmp_path / "w.npz", random_weights(0))
    out = tmp_path / "out.json"
    done = run_benchmark(
        *("--data", str(tmp_path / "toy"), "--weights", str(tmp_path / "w.npz"), "--device", "cpu"),
        *("--cv", "kfold:2", "--epochs", "2", "--crop", "0.5", "--context", "1", "--batch", "2"),
        *("--eval-every", "1", "--json", str(out)),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    assert [f["fold"] for f in summary["folds"]] == [1, 2]
    assert sorted(t["name"] for f in summary["folds"] for t in f["test"]) == [
        "IMG_1",
        "IMG_2",
        "IMG_3",
        "IMG_4",
    ]
    assert summary["pooled"]["n"] == 4
    for fold in summary["folds"]:
        assert [row["epoch"] for row in fold["curve"]] == [1, 2]
        assert all("test_mae" in row for row in fold["curve"])
        assert fold["rescale"] > 0
        assert fold["trained"]["mae"] >= 0
    assert summary["settings"]["epochs"] == 2
    assert "fold 2: MAE catalog" in done.stderr


def test_a_held_out_stretch_is_scored_by_a_model_trained_on_the_whole_pool(tmp_path: Path) -> None:
    toy_folder(tmp_path / "toy", n=6)
    save(tmp_path / "w.npz", random_weights(0))
    out = tmp_path / "out.json"
    args = [
        *("--data", str(tmp_path / "toy"), "--weights", str(tmp_path / "w.npz"), "--device", "cpu"),
        *("--folds", "none", "--train-frames", "1-2,5-6", "--test", "3-4", "--epochs", "1", "--crop", "1"),
        "--no-rescale",
        *("--json", str(out)),
    ]
    done = run_benchmark(*args)
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    assert summary["folds"] == []
    assert summary["held_out"]["n_train"] == 4
    assert [t["name"] for t in summary["held_out"]["test"]] == ["IMG_3", "IMG_4"]
    assert summary["rescale"] is False
    assert summary["held_out"]["rescale"] == 1.0
    overlap = run_benchmark(*args[:-2], "--train-frames", "1-4")
    assert overlap.returncode != 0
    assert "overlap the training pool" in overlap.stderr


def test_the_data_packer_keeps_only_the_thinned_frames_and_the_roi(tmp_path: Path) -> None:
    toy_folder(tmp_path / "toy", n=8)
    cv2.imwrite(str(tmp_path / "toy" / "roi_mask.png"), np.full((48, 64), 255, np.uint8))
    script = str(ROOT / "scripts" / "gpu_pack_data.py")
    dst = tmp_path / "packed"
    subprocess.run(
        [sys.executable, script, str(tmp_path / "toy"), str(dst), "--keep", "1-4:2", "--keep", "7-8:1"],
        check=True,
        capture_output=True,
    )
    index = json.loads((dst / "index.json").read_text())
    assert [Path(e["image"]).stem for e in index["items"]] == ["IMG_1", "IMG_3", "IMG_7", "IMG_8"]
    assert sorted(p.name for p in (dst / "images").iterdir()) == [
        "IMG_1.png",
        "IMG_3.png",
        "IMG_7.png",
        "IMG_8.png",
    ]
    assert (dst / "roi_mask.png").is_file()
    assert index["meta"] == {"dataset": "toy"}


def test_a_time_limit_stops_the_run_with_a_summary_that_says_so(tmp_path: Path) -> None:
    toy_folder(tmp_path / "toy")
    save(tmp_path / "w.npz", random_weights(0))
    out = tmp_path / "out.json"
    args = [
        *("--data", str(tmp_path / "toy"), "--weights", str(tmp_path / "w.npz"), "--device", "cpu"),
        *("--cv", "kfold:2", "--epochs", "3", "--crop", "1", "--time-limit", "1e-9", "--json", str(out)),
    ]
    done = run_benchmark(*args)
    assert done.returncode == 3, done.stderr
    summary = json.loads(out.read_text())
    assert summary["stopped"] == "--time-limit reached in fold 1 at epoch 1 of 3"
    assert summary["folds"] == []
    assert "pooled" not in summary


@pytest.mark.parametrize(
    ("folds", "message"), [("7", "there are folds 1 to 2"), ("one", "fold numbers like 1")]
)
def test_folds_that_do_not_exist_are_refused_before_any_training(
    tmp_path: Path, folds: str, message: str
) -> None:
    toy_folder(tmp_path / "toy")
    save(tmp_path / "w.npz", random_weights(0))
    done = run_benchmark(
        *("--data", str(tmp_path / "toy"), "--weights", str(tmp_path / "w.npz"), "--device", "cpu"),
        *("--cv", "kfold:2", "--folds", folds),
    )
    assert done.returncode != 0
    assert message in done.stderr
    assert "epoch" not in done.stderr
