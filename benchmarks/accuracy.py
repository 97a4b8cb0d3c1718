"""Counting accuracy on a labeled folder (head points): MAE, RMSE and timing per method.

    .venv/bin/python benchmarks/accuracy.py --data ../shared/data/mall --method density \
        --out /tmp/acc/mall --json /tmp/acc/mall.json

Only heads inside the folder's `roi_mask.png` count, and the prediction is restricted to it
too (density integrated over the mask; detections by their head point). Writes a per-image
CSV and a predicted-vs-true scatter plot per method to --out. `--raw-from` rescores the raw
counts of an earlier run's CSV (e.g. with a calibration) without running the model again.

`--model NAME` scores another model: any catalog name (`crowdwatch models list`), a model
trained here (`crowdwatch models train`, e.g. csrnet-mall) or a file. It replaces the model of
its kind (detector for detector/tiled, density for density; either for auto);
`--detector-model` / `--density-model` set one kind explicitly.

`--method auto` counts as the product's `auto` zones do: the detector first, and the density map
(with --calibration, as the runtime applies it) when the boxes in the ROI reach
`counting.auto`'s thresholds. Each picture decides alone unless `--auto-fps F`, which plays the
selected pictures as consecutive frames at F fps through one switch (hysteresis and dwell).

    .venv/bin/python benchmarks/accuracy.py --data ../shared/data/mall --frames 280-440 \
        --method detector density auto --density-model csrnet-mall
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from crowdwatch.core.auto_mode import AutoParams
from crowdwatch.core.density import DensityCalibration, DensityMap
from crowdwatch.detectors.base import Detector
from crowdwatch.detectors.catalog import CATALOG, ModelNotFetchedError, default_models_dir, fetch
from crowdwatch.detectors.density import DensityEstimator
from crowdwatch.detectors.trained import RECIPES, resolve_density_model
from crowdwatch.evaluation.counting import (
    AutoCounter,
    Counter,
    ImageResult,
    auto_counter,
    density_counter,
    detector_counter,
    read_results_csv,
    run_counter,
    write_results_csv,
)
from crowdwatch.evaluation.labeled import LabeledFolder, LabeledItem, open_folder, parse_ranges
from crowdwatch.evaluation.metrics import CountErrors

METHODS = ("detector", "tiled", "density", "auto")
DENSITY_MODEL = "csrnet-density"
DETECTOR_MODEL = "yolov8s-person-onnx"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a labeled folder (with index.json)")
    p.add_argument("--method", choices=METHODS, nargs="+", default=["density"], help="counting methods")
    p.add_argument("--limit", type=int, default=None, help="score only the first N selected images")
    p.add_argument("--frames", default=None, help="frame numbers to score, e.g. 280-440 or 1-10,20")
    p.add_argument(
        "--under",
        type=int,
        default=None,
        metavar="N",
        help="score only pictures with fewer than N people (in the ROI), e.g. 20 for sparse scenes",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model to score: catalog name, trained model name or file; replaces the model of its kind",
    )
    p.add_argument(
        "--detector-model", default=None, help=f"detector for detector/tiled/auto ({DETECTOR_MODEL})"
    )
    p.add_argument("--detector-type", default=None, help="detector backend (default: by the model's format)")
    p.add_argument("--density-model", default=None, help=f"density model for density/auto ({DENSITY_MODEL})")
    p.add_argument(
        "--auto-fps", type=float, default=None, help="auto: play the pictures as frames at this rate"
    )
    p.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="DensityCalibration JSON, or a camera's configs/calibration file (density and auto)",
    )
    p.add_argument("--max-side", type=int, default=None, help="density: shrink images to this longest side")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = all cores)")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:N or auto: where ultralytics detectors and density models run "
        "(density on CUDA runs on PyTorch)",
    )
    p.add_argument("--full-precision", action="store_true", help="on CUDA: float32, not float16")
    p.add_argument("--models-dir", type=Path, default=None, help="default: the catalog's models dir")
    p.add_argument("--raw-from", type=Path, default=None, help="rescore raw counts from an earlier CSV")
    p.add_argument("--out", type=Path, default=None, help="folder for <method>.csv and <method>.png")
    p.add_argument("--json", type=Path, default=None, help="write the summary here (list, one per method)")
    p.add_argument("--save-maps", type=Path, default=None, help="density: save each map as <name>.npz here")
    p.add_argument(
        "--allow-trained",
        action="store_true",
        help="also score pictures within a trained density model's training frames (diagnostics only)",
    )
    return p


class _KeepLastMap:
    """Wraps a density estimator to keep its last map, so that maps can be saved for offline
    analysis (thresholds, zones) without running the network again."""

    def __init__(self, inner: DensityEstimator) -> None:
        self.inner = inner
        self.name = inner.name
        self.last: DensityMap | None = None

    def estimate(self, image: npt.NDArray[np.uint8]) -> DensityMap:
        self.last = self.inner.estimate(image)
        return self.last

    def close(self) -> None:
        self.inner.close()


def is_density_model(ref: str) -> bool:
    """Whether a model reference names a density model (catalog format, trained recipe, or an
    ONNX file whose output is a density map) rather than a detector."""
    if ref in CATALOG:
        return CATALOG[ref].format == "density"
    if ref in RECIPES:
        return True
    path = Path(ref).expanduser()
    if path.suffix.lower() == ".onnx" and path.is_file():
        import onnx

        from crowdwatch.detectors.csrnet_onnx import OUTPUT_NAME

        graph = onnx.load(str(path), load_external_data=False).graph
        return [o.name for o in graph.output] == [OUTPUT_NAME]
    return False


def chosen_models(method: str, args: argparse.Namespace) -> tuple[str, str]:
    """(detector, density) model references for `method`, after --model and the explicit flags."""
    detector = args.detector_model or DETECTOR_MODEL
    density = args.density_model or DENSITY_MODEL
    if args.model is not None:
        density_kind = is_density_model(args.model)
        if method == "density" or (method == "auto" and density_kind):
            density = args.model
        elif method != "auto" and density_kind:
            raise SystemExit(f"--model {args.model} is a density model; method {method} needs a detector")
        else:
            detector = args.model
    return detector, density


def build_density(ref: str, args: argparse.Namespace) -> tuple[DensityEstimator, str]:
    from crowdwatch.config.counting import DensityConfig
    from crowdwatch.runtime.models import open_density_model

    models_dir = args.models_dir or default_models_dir()
    if ref in CATALOG:
        fetch(ref, models_dir)  # idempotent; builds the ONNX once
    resolved = resolve_density_model(ref, models_dir)  # names the train command when missing
    cfg = DensityConfig(
        model=ref,
        device=args.device,
        half=not args.full_precision,
        threads=args.threads,
        max_side=args.max_side,
    )
    return open_density_model(resolved.path, resolved.name, cfg), resolved.name


def build_detector_for(ref: str, args: argparse.Namespace) -> tuple[Detector, str, float]:
    """A detector for any catalog name or file: the ONNX backend unless the model exists only as
    PyTorch weights (or --detector-type says otherwise). Returns it, its name and its NMS IoU."""
    from pydantic import TypeAdapter

    from crowdwatch.config.detector import DetectorConfig
    from crowdwatch.detectors.registry import build_detector

    models_dir = args.models_dir or default_models_dir()
    dtype = args.detector_type
    entry = CATALOG.get(ref)
    if entry is not None:
        fetch(ref, models_dir)
        if dtype is None:
            onnx_sibling = entry.sibling is not None and CATALOG[entry.sibling].format == "onnx"
            dtype = "ultralytics" if entry.format == "pt" and not onnx_sibling else "onnx"
    if dtype is None:
        dtype = "ultralytics" if ref.lower().endswith(".pt") else "onnx"
    fields: dict[str, object] = {"type": dtype, "model": ref}
    if dtype == "onnx":
        fields["threads"] = args.threads
    else:
        fields["device"] = args.device
        fields["half"] = not args.full_precision
    config = TypeAdapter(DetectorConfig).validate_python(fields)
    detector = build_detector(config, models_dir)
    return detector, detector.name, config.iou


def _counter(
    method: str, args: argparse.Namespace, calibration: DensityCalibration | None
) -> tuple[Counter, str, _KeepLastMap | None]:
    detector_ref, density_ref = chosen_models(method, args)
    if method == "density":
        estimator, name = build_density(density_ref, args)
        keeper = _KeepLastMap(estimator)
        return density_counter(keeper), name, keeper
    detector, detector_name, iou = build_detector_for(detector_ref, args)
    if method == "detector":
        return detector_counter(detector), detector_name, None
    if method == "auto":
        from crowdwatch.config.counting import CountingConfig
        from crowdwatch.runtime.build import auto_params

        estimator, density_name = build_density(density_ref, args)
        keeper = _KeepLastMap(estimator)
        params: AutoParams = auto_params(CountingConfig())  # the product's default thresholds
        counter = auto_counter(detector, keeper, params, calibration=calibration, fps=args.auto_fps)
        return counter, f"{detector_name}|{density_name}", keeper
    from crowdwatch.config.counting import TilesConfig
    from crowdwatch.detectors.tiled import TiledDetector

    # The runtime's defaults, over the whole picture (the ROI filters by head point after).
    tiles = TilesConfig()
    tiled = TiledDetector(detector, tile=tiles.size, overlap=tiles.overlap, upscale=tiles.upscale, iou=iou)
    return detector_counter(tiled), f"{detector_name}+tiles", None


def scatter_plot(
    true: npt.NDArray[np.float64], predicted: npt.NDArray[np.float64], title: str, size: int = 640
) -> npt.NDArray[np.uint8]:
    """Predicted vs true counts with the y = x line, drawn with OpenCV (no matplotlib here)."""
    margin = 60
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    top = float(max(true.max(initial=1.0), predicted.max(initial=1.0))) * 1.05
    span = size - 2 * margin

    def to_px(x: float, y: float) -> tuple[int, int]:
        return int(margin + x / top * span), int(size - margin - y / top * span)

    black, grey, blue = (0, 0, 0), (190, 190, 190), (200, 90, 30)
    step = _nice_step(top / 5)
    for k in range(int(top // step) + 1):  # grid and tick labels at round numbers
        v = k * step
        cv2.line(img, to_px(v, 0), to_px(v, top), grey, 1)
        cv2.line(img, to_px(0, v), to_px(top, v), grey, 1)
        cv2.putText(img, f"{v:.0f}", (to_px(v, 0)[0] - 12, size - margin + 20), 0, 0.4, black, 1)
        cv2.putText(img, f"{v:.0f}", (8, to_px(0, v)[1] + 4), 0, 0.4, black, 1)
    cv2.line(img, to_px(0, 0), to_px(top, top), (0, 0, 220), 1, cv2.LINE_AA)
    for t, p in zip(true, predicted, strict=True):
        cv2.circle(img, to_px(float(t), float(p)), 3, blue, -1, cv2.LINE_AA)
    cv2.rectangle(img, to_px(0, top), to_px(top, 0), black, 1)
    cv2.putText(img, "true", (size // 2 - 15, size - 15), 0, 0.5, black, 1)
    cv2.putText(img, "predicted", (8, margin - 12), 0, 0.5, black, 1)
    cv2.putText(img, title, (margin, 22), 0, 0.5, black, 1)
    return img


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is at least `raw`."""
    power = 10.0 ** np.floor(np.log10(max(raw, 1e-9)))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _score(
    method: str,
    model: str,
    folder: LabeledFolder,
    results: list[ImageResult],
    calibration: DensityCalibration | None,
    args: argparse.Namespace,
) -> dict[str, object]:
    true = np.asarray([r.true for r in results], dtype=np.float64)
    raw = np.asarray([r.raw for r in results], dtype=np.float64)
    if method == "auto":  # its counts carry the calibration already, where density counted
        calibration = None
    predicted = calibration.apply_many(raw) if calibration is not None else raw
    errors = CountErrors.of(predicted, true)
    summary: dict[str, object] = {
        "dataset": folder.dataset,
        "data": str(folder.root),
        "method": method,
        "model": model,
        "n": errors.n,
        "mae": round(errors.mae, 3),
        "rmse": round(errors.rmse, 3),
        "mse": round(errors.mse, 3),
        "mean_signed_error": round(errors.mean_signed_error, 3),
        "ms_per_image": round(float(np.mean([r.ms for r in results])), 1),
        "mean_true": round(float(true.mean()), 2),
        "max_side": args.max_side if method in ("density", "auto") else None,
        "roi": folder.roi is not None,
    }
    if calibration is not None:
        raw_errors = CountErrors.of(raw, true)
        summary["calibration"] = calibration.to_dict()
        summary["raw"] = {"mae": round(raw_errors.mae, 3), "rmse": round(raw_errors.rmse, 3)}
    if args.out is not None:
        write_results_csv(args.out / f"{method}.csv", results, predicted.tolist())
        title = f"{folder.root.name} {method}: MAE {errors.mae:.1f} RMSE {errors.rmse:.1f} n={errors.n}"
        cv2.imwrite(str(args.out / f"{method}.png"), scatter_plot(true, predicted, title))
    return summary


def _density_refs(args: argparse.Namespace) -> list[str]:
    return sorted({chosen_models(m, args)[1] for m in args.method if m in ("density", "auto")})


def _trained_on(
    folder: LabeledFolder, selected: list[LabeledItem], args: argparse.Namespace
) -> list[LabeledItem]:
    """The selected pictures inside the training frames of a trained density model to be scored
    on the folder it was trained from: every frame of those ranges, not just the ones it took
    (neighbouring video frames are near-duplicates of them)."""
    out: list[LabeledItem] = []
    for ref in _density_refs(args):
        recipe = RECIPES.get(ref)
        if recipe is None or folder.root.name != recipe.dataset:
            continue
        if not recipe.train_frames:  # every picture of the folder
            return list(selected)
        ranges = set(parse_ranges(recipe.train_frames))
        out += [it for it in selected if it.frame_number in ranges and it not in out]
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    folder = open_folder(args.data)
    frames = parse_ranges(args.frames) if args.frames else None
    selected = folder.select(frames, args.limit)
    if args.under is not None:
        selected = [it for it in selected if folder.true_count(it) < args.under]
    trained_on = _trained_on(folder, selected, args)
    if trained_on and not args.allow_trained:
        names = {it.name for it in trained_on}
        selected = [it for it in selected if it.name not in names]
        print(
            f"{len(trained_on)} selected picture(s) skipped: within the training frames of the "
            f"density model {_density_refs(args)} (never score what was trained on; "
            "--allow-trained keeps them)",
            file=sys.stderr,
        )
        if not selected:
            raise SystemExit(
                "no images selected: the density model was trained on all of them (score a "
                "trained recipe by cross-validation: benchmarks/train_density_head.py)"
            )
    calibration = None
    if args.calibration is not None:
        data = json.loads(args.calibration.read_text())
        # A camera's calibration file (configs/calibration/*.json) keeps the fit under "fit".
        calibration = DensityCalibration.from_dict(data.get("fit", data))
    summaries = []
    for method in args.method:
        if calibration is not None and method not in ("density", "auto"):
            raise SystemExit("--calibration applies to the density and auto methods only")
        if args.raw_from is not None:
            if method == "auto":
                raise SystemExit("--raw-from cannot rescore auto (its mode depends on both models)")
            wanted = {it.name for it in selected}
            results = [r for r in read_results_csv(args.raw_from) if r.name in wanted]
            detector_ref, density_ref = chosen_models(method, args)
            model = {"density": density_ref, "tiled": f"{detector_ref}+tiles"}.get(method, detector_ref)
        else:
            try:
                counter, model, keeper = _counter(method, args, calibration)
            except ModelNotFetchedError as exc:  # names the fetch or train command to run
                raise SystemExit(f"error: {exc}") from None
            results = []
            for r in run_counter(folder, selected, counter):
                results.append(r)
                if args.save_maps is not None and keeper is not None and keeper.last is not None:
                    args.save_maps.mkdir(parents=True, exist_ok=True)
                    m = keeper.last
                    np.savez(
                        args.save_maps / f"{r.name}.npz", values=m.values, scale=m.scale, shape=m.image_shape
                    )
                if keeper is not None:
                    keeper.last = None  # auto: a picture counted by boxes has no map of its own
                print(f"{r.name}: true {r.true} raw {r.raw:.1f} ({r.ms:.0f} ms)", file=sys.stderr)
        if not results:
            raise SystemExit("no images selected")
        summary = _score(method, model, folder, results, calibration, args)
        if args.raw_from is None and isinstance(counter, AutoCounter):
            summary["density_share"] = round(counter.modes.count("density") / len(counter.modes), 3)
        print(json.dumps(summary))
        summaries.append(summary)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summaries, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
