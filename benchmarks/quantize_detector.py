"""Static int8 quantisation of the YOLOv8s person detector: build it from training frames, then
compare it with the fp32 model on held-out frames, interleaved (same frames, same load).

    .venv/bin/python benchmarks/quantize_detector.py \\
        --calibrate ../shared/data/mall --frames 1-279 --limit 100 \\
        --eval ../shared/data/mall --eval-frames 441-800 --eval-limit 60 \\
        --out /tmp/yolov8s-person-int8.onnx --json /tmp/quantize.json

People are counted as in benchmarks/accuracy.py's `detector` method: boxes whose head point
(top centre, a tenth of the box height down) lies in the ROI. Box agreement is the fraction of
fp32 boxes matched one-to-one by an int8 box with IoU > 0.5.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crowdwatch.config.detector import OnnxDetectorConfig
from crowdwatch.core.types import Detections
from crowdwatch.detectors.catalog import ResolvedModel, default_models_dir, resolve
from crowdwatch.detectors.onnx import OnnxDetector
from crowdwatch.detectors.quantize import quantize_detector, quantized_op_counts
from crowdwatch.evaluation.counting import head_points
from crowdwatch.evaluation.labeled import LabeledItem, open_folder, parse_ranges, points_in_mask

MODEL = "yolov8s-person-onnx"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calibrate", type=Path, required=True, help="labeled folder for calibration (training)")
    p.add_argument("--frames", default="1-279", help="calibration frame ranges (default 1-279)")
    p.add_argument("--limit", type=int, default=100, help="calibration frames, spread evenly over --frames")
    p.add_argument("--eval", type=Path, required=True, help="labeled folder for evaluation (held out)")
    p.add_argument("--eval-frames", default="441-800")
    p.add_argument("--eval-limit", type=int, default=60, help="evaluation frames, spread evenly")
    p.add_argument("--out", type=Path, required=True, help="where to write the int8 model")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--method", choices=["minmax", "percentile", "entropy"], default="minmax")
    p.add_argument("--activations", choices=["quint8", "qint8"], default="quint8")
    p.add_argument("--no-per-channel", action="store_true")
    p.add_argument("--quantize-head", action="store_true", help="also quantise the box-decoding tail")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = ONNX Runtime default)")
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--reuse", action="store_true", help="skip quantisation when --out exists")
    return p


def spread(items: list[LabeledItem], limit: int) -> list[LabeledItem]:
    """`limit` items evenly spaced over `items` (all when fewer)."""
    if limit <= 0 or len(items) <= limit:
        return items
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in idx]


def iou_matrix(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    x1 = np.maximum(a64[:, None, 0], b64[None, :, 0])
    y1 = np.maximum(a64[:, None, 1], b64[None, :, 1])
    x2 = np.minimum(a64[:, None, 2], b64[None, :, 2])
    y2 = np.minimum(a64[:, None, 3], b64[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a64[:, 2] - a64[:, 0]) * (a64[:, 3] - a64[:, 1])
    area_b = (b64[:, 2] - b64[:, 0]) * (b64[:, 3] - b64[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def matched(reference: Detections, other: Detections, threshold: float = 0.5) -> int:
    """Reference boxes matched one-to-one (greedy, highest IoU first) by an `other` box."""
    if len(reference) == 0 or len(other) == 0:
        return 0
    iou = iou_matrix(reference.xyxy, other.xyxy)
    n = 0
    while True:
        i, j = np.unravel_index(int(np.argmax(iou)), iou.shape)
        if iou[i, j] <= threshold:
            return n
        n += 1
        iou[i, :] = -1.0
        iou[:, j] = -1.0


def roi_count(detections: Detections, roi: npt.NDArray[np.bool_] | None) -> int:
    if roi is None:
        return len(detections)
    return int(np.count_nonzero(points_in_mask(head_points(detections), roi)))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    models_dir = args.models_dir or default_models_dir()
    fp32 = resolve(MODEL, models_dir, "onnx")

    calib_folder = open_folder(args.calibrate)
    calib_items = spread(calib_folder.select(parse_ranges(args.frames)), args.limit)
    if not calib_items:
        print(f"no calibration frames in {args.calibrate} for {args.frames}", file=sys.stderr)
        return 2
    quant_s = None
    if args.reuse and args.out.is_file():
        print(f"reusing {args.out}")
    else:
        print(f"calibrating on {len(calib_items)} frames of {args.calibrate} ({args.frames}) ...", flush=True)
        start = time.perf_counter()
        quantize_detector(
            fp32.path,
            args.out,
            (it.load_image() for it in calib_items),
            per_channel=not args.no_per_channel,
            method=args.method,
            activation_type=args.activations,
            keep_head_float=not args.quantize_head,
        )
        quant_s = time.perf_counter() - start
        print(f"quantised in {quant_s:.1f} s -> {args.out}")

    eval_folder = open_folder(args.eval)
    eval_items = spread(eval_folder.select(parse_ranges(args.eval_frames)), args.eval_limit)
    config = OnnxDetectorConfig(model=str(fp32.path), threads=args.threads)
    detectors = {
        "fp32": OnnxDetector(config, fp32),
        "int8": OnnxDetector(
            config.model_copy(update={"model": str(args.out)}), ResolvedModel(args.out, fp32.entry)
        ),
    }
    warm = eval_items[0].load_image()
    for det in detectors.values():
        det.detect(warm)

    counts: dict[str, list[int]] = {k: [] for k in detectors}
    ms: dict[str, list[float]] = {k: [] for k in detectors}
    true: list[int] = []
    fp32_boxes = int8_boxes = agree = 0
    print(f"evaluating on {len(eval_items)} frames of {args.eval} ({args.eval_frames}) ...", flush=True)
    for n, item in enumerate(eval_items):
        image = item.load_image()
        true.append(eval_folder.true_count(item))
        order = ["fp32", "int8"] if n % 2 == 0 else ["int8", "fp32"]  # alternate: no order bias
        dets: dict[str, Detections] = {}
        for key in order:
            start = time.perf_counter()
            dets[key] = detectors[key].detect(image)
            ms[key].append((time.perf_counter() - start) * 1000.0)
            counts[key].append(roi_count(dets[key], eval_folder.roi))
        fp32_boxes += len(dets["fp32"])
        int8_boxes += len(dets["int8"])
        agree += matched(dets["fp32"], dets["int8"])
    for det in detectors.values():
        det.close()

    t = np.asarray(true, dtype=np.float64)
    rows: dict[str, dict[str, float]] = {}
    for key in detectors:
        c = np.asarray(counts[key], dtype=np.float64)
        rows[key] = {
            "mae": float(np.mean(np.abs(c - t))),
            "signed_error": float(np.mean(c - t)),
            "mean_count": float(np.mean(c)),
            "ms_median": float(np.median(ms[key])),
            "ms_p90": float(np.percentile(ms[key], 90)),
        }
    count_diff = np.abs(np.asarray(counts["int8"]) - np.asarray(counts["fp32"]))
    agreement = agree / fp32_boxes if fp32_boxes else float("nan")
    sizes = {"fp32": fp32.path.stat().st_size, "int8": args.out.stat().st_size}

    print()
    print(f"{'model':<6} {'MAE':>7} {'signed':>8} {'mean cnt':>9} {'ms med':>8} {'ms p90':>8} {'size MB':>8}")
    for key, r in rows.items():
        print(
            f"{key:<6} {r['mae']:>7.2f} {r['signed_error']:>+8.2f} {r['mean_count']:>9.2f} "
            f"{r['ms_median']:>8.1f} {r['ms_p90']:>8.1f} {sizes[key] / 1e6:>8.1f}"
        )
    print(f"mean true count {t.mean():.2f} over {len(t)} frames")
    print(f"speed-up (median) x{rows['fp32']['ms_median'] / rows['int8']['ms_median']:.2f}")
    print(
        f"box agreement: {agree}/{fp32_boxes} fp32 boxes matched by int8 at IoU>0.5 = {agreement:.3f} "
        f"(int8 boxes: {int8_boxes}); |int8-fp32| ROI count: "
        f"mean {count_diff.mean():.2f}, max {count_diff.max()}"
    )

    if args.json:
        result = {
            "model": MODEL,
            "fp32_path": str(fp32.path),
            "int8_path": str(args.out),
            "sizes_bytes": sizes,
            "quantization": {
                "method": args.method,
                "activations": args.activations,
                "weights": "qint8",
                "per_channel": not args.no_per_channel,
                "head_float": not args.quantize_head,
                "format": "QDQ",
                "seconds": quant_s,
                "ops": quantized_op_counts(args.out),
            },
            "calibration": {"folder": str(args.calibrate), "frames": [it.name for it in calib_items]},
            "evaluation": {"folder": str(args.eval), "frames": [it.name for it in eval_items]},
            "results": rows,
            "box_agreement": {
                "fp32_boxes": fp32_boxes,
                "int8_boxes": int8_boxes,
                "matched": agree,
                "fraction": agreement,
            },
            "count_abs_diff_mean": float(count_diff.mean()),
            "count_abs_diff_max": int(count_diff.max()),
            "speedup_median": rows["fp32"]["ms_median"] / rows["int8"]["ms_median"],
            "per_frame": {"true": true, "counts": counts, "ms": ms},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
