"""Detector speed and plaza-clip counts, every backend side by side in one run.

    .venv/bin/python benchmarks/detector_speed.py [--repeat 10] [--threads 0] [--json FILE]
        [--device auto|cpu|cuda] [--batch 8 16 32] [--backends onnx ultralytics] [--tiled]

For each backend (ONNX Runtime and Ultralytics/PyTorch, CPU or CUDA as available) it times
`detect()` on the hand-counted frames of assets/vtest_plaza.mp4 (768x576) after a warm-up,
and counts people in the demo's `plaza` zone against the hand counts that the end-to-end test
uses. The backends run interleaved, so machine load hits all alike. On CUDA, Ultralytics runs
in half precision (`ultralytics`) and in float32 (`ultralytics fp32`). With `--batch N ...`
it also times Ultralytics on N frames per call (cross-camera batching, `detector.batch_size`)
and reports milliseconds per frame beside the single-frame figure of the same run. `--tiled`
times tiled detection of the whole frame (the runtime's tile settings), tiles one by one
against tiles batched, and counts the zone with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import yaml

from crowdwatch.config.detector import OnnxDetectorConfig, UltralyticsDetectorConfig
from crowdwatch.config.root import parse_config
from crowdwatch.core.types import Detections
from crowdwatch.core.zones import Zone, make_zone
from crowdwatch.detectors.base import Detector
from crowdwatch.detectors.registry import build_detector
from crowdwatch.detectors.tiled import TiledDetector
from crowdwatch.detectors.ultralytics import UltralyticsDetector

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "assets" / "vtest_plaza.mp4"
HAND_COUNTS = {100: 6, 300: 6, 500: 4, 700: 7}  # same as tests/e2e/test_plaza_clip.py


def frames(indices: set[int]) -> dict[int, npt.NDArray[np.uint8]]:
    cap = cv2.VideoCapture(str(CLIP))
    out: dict[int, npt.NDArray[np.uint8]] = {}
    i = 0
    while len(out) < len(indices):
        ok, image = cap.read()
        if not ok:
            raise SystemExit(f"{CLIP} ended at frame {i}")
        if i in indices:
            out[i] = np.asarray(image, dtype=np.uint8)
        i += 1
    return out


def time_batches(
    detector: UltralyticsDetector,
    images: dict[int, npt.NDArray[np.uint8]],
    batch_size: int,
    repeat: int,
    zone: Zone,
) -> tuple[list[float], dict[int, int]]:
    """Milliseconds per frame when `batch_size` frames go in one call, and the zone counts
    of the frames in that batch (they must not change with batching)."""
    ids = [list(images)[i % len(images)] for i in range(batch_size)]
    batch = [images[i] for i in ids]
    detector.detect_batch(batch)  # warm-up at this batch size
    per_frame_ms = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        found = detector.detect_batch(batch)
        per_frame_ms.append((time.perf_counter() - t0) * 1000 / batch_size)
    return per_frame_ms, {i: zone.count(d) for i, d in zip(ids, found, strict=True)}


class _OneByOne:
    """A detector seen without `detect_batch`, so tiles go one per inference."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.name = inner.name

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        return self.inner.detect(image)

    def close(self) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=10, help="timed runs per frame and backend")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = all cores)")
    p.add_argument("--json", type=Path, help="write the results here too")
    p.add_argument("--device", default="auto", help="Ultralytics device: auto, cpu, cuda, cuda:N")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="also time Ultralytics N-frame batches")
    p.add_argument("--backends", nargs="+", choices=("onnx", "ultralytics"), default=["onnx", "ultralytics"])
    p.add_argument("--tiled", action="store_true", help="also time tiled detection (one by one, batched)")
    args = p.parse_args(argv)

    cfg = parse_config(yaml.safe_load((REPO / "configs" / "demo.yaml").read_text()))
    zone_cfg = next(z for z in cfg.cameras[0].zones if z.id == "plaza")
    zone = make_zone(zone_cfg.id, zone_cfg.polygon)
    conf = cfg.detector.confidence
    backends: dict[str, Detector] = {}
    if "onnx" in args.backends:
        backends["onnx"] = build_detector(
            OnnxDetectorConfig(model="yolov8s-person-onnx", confidence=conf, threads=args.threads)
        )
    if "ultralytics" in args.backends:
        try:
            pt_cfg = UltralyticsDetectorConfig(model="yolov8s-person", confidence=conf, device=args.device)
            pt_det = build_detector(pt_cfg)
            backends["ultralytics"] = pt_det
            if isinstance(pt_det, UltralyticsDetector) and pt_det.device.startswith("cuda"):
                backends["ultralytics fp32"] = build_detector(pt_cfg.model_copy(update={"half": False}))
        except Exception as exc:  # the extra may be missing on a CPU-only install
            print(f"ultralytics skipped: {exc}", file=sys.stderr)

    images = frames(set(HAND_COUNTS))
    for det in backends.values():  # warm-up: first runs allocate and JIT
        for img in images.values():
            det.detect(img)
    times: dict[str, list[float]] = {name: [] for name in backends}
    counts: dict[str, dict[int, int]] = {name: {} for name in backends}
    for _ in range(args.repeat):
        for i, img in images.items():
            for name, det in backends.items():
                t0 = time.perf_counter()
                d = det.detect(img)
                times[name].append((time.perf_counter() - t0) * 1000)
                counts[name][i] = zone.count(d)

    pt = backends.get("ultralytics")
    for size in args.batch:
        if size > 1 and isinstance(pt, UltralyticsDetector):
            name = f"ultralytics x{size}"
            times[name], counts[name] = time_batches(pt, images, size, args.repeat, zone)
    if args.tiled:
        for name, det in list(backends.items()):
            for batched in (False, True):
                if batched and not isinstance(det, UltralyticsDetector):
                    continue
                key = f"{name} tiled" + (" batched" if batched else "")
                tiled = TiledDetector(
                    det if batched else _OneByOne(det),
                    tile=cfg.counting.tiles.size,
                    overlap=cfg.counting.tiles.overlap,
                    upscale=cfg.counting.tiles.upscale,
                    iou=cfg.detector.iou,
                )
                times[key], counts[key] = [], {}
                tiled.detect(images[next(iter(images))])  # warm-up at the tile batch size
                for _ in range(max(1, args.repeat // 2)):
                    for i, img in images.items():
                        t0 = time.perf_counter()
                        d = tiled.detect(img)
                        times[key].append((time.perf_counter() - t0) * 1000)
                        counts[key][i] = zone.count(d)

    results = []
    print(f"{'backend':26} {'median ms':>9} {'p90 ms':>7}  counts in 'plaza' (hand: {HAND_COUNTS})")
    for name in times:
        t = sorted(times[name])
        p90 = t[int(0.9 * (len(t) - 1))]
        errors = [counts[name][i] - HAND_COUNTS[i] for i in counts[name]]  # a small batch: its frames
        worst = max(map(abs, errors))
        print(f"{name:26} {statistics.median(t):9.1f} {p90:7.1f}  {counts[name]}  max |error| {worst}")
        results.append(
            {
                "backend": name,
                "median_ms": statistics.median(t),
                "p90_ms": p90,
                "counts": counts[name],
                "hand_counts": HAND_COUNTS,
                "max_abs_error": worst,
            }
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    for det in backends.values():
        det.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
