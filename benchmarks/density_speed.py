"""Density (CSRNet) speed per backend, and whether the backends count alike, in one run.

    .venv/bin/python benchmarks/density_speed.py --data ../shared/data/mall --model csrnet-mall \
        [--limit 40] [--repeat 3] [--backends onnx-cpu torch-cuda torch-cuda-fp32] [--batch 8]
        [--threads 0] [--json FILE]

Backends: `onnx-cpu` (ONNX Runtime, what CPU workers run), `torch-cpu`, `torch-cuda` (PyTorch,
float16) and `torch-cuda-fp32`. Each runs the same model (a catalog name, a model trained here
or a CSRNet ONNX path) on the same labeled pictures, interleaved so machine load hits all
alike, after a warm-up. Reported per backend: median and p90 ms per picture (`--batch N`: also
N pictures of one size per call, the cost per picture), MAE against the true counts in the
folder's ROI, and the largest count difference from the first backend listed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crowdwatch.config.counting import DensityConfig
from crowdwatch.core.density import DensityMap
from crowdwatch.detectors.catalog import CATALOG, default_models_dir, fetch
from crowdwatch.detectors.density import DensityEstimator
from crowdwatch.detectors.trained import resolve_density_model
from crowdwatch.evaluation.labeled import open_folder
from crowdwatch.evaluation.metrics import CountErrors
from crowdwatch.runtime.models import open_density_model

BACKENDS = ("onnx-cpu", "torch-cpu", "torch-cuda", "torch-cuda-fp32")
Image = npt.NDArray[np.uint8]


def build(backend: str, path: Path, name: str, threads: int) -> DensityEstimator:
    if backend == "onnx-cpu":
        return open_density_model(path, name, DensityConfig(model=name, device="cpu", threads=threads))
    from crowdwatch.detectors.csrnet_torch import CsrnetTorchEstimator

    device = "cpu" if backend == "torch-cpu" else "cuda"
    return CsrnetTorchEstimator.from_onnx(path, device=device, half=backend == "torch-cuda", name=name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="labeled folder (index.json format)")
    p.add_argument("--model", default="csrnet-density", help="catalog name, trained model or ONNX path")
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=["onnx-cpu", "torch-cuda"])
    p.add_argument("--limit", type=int, default=20, help="pictures to use (the folder's first N)")
    p.add_argument("--repeat", type=int, default=3, help="timed passes over the pictures")
    p.add_argument("--batch", type=int, default=1, help="also time torch backends on N pictures per call")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = one per core)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    models_dir = args.models_dir or default_models_dir()
    if args.model in CATALOG:
        fetch(args.model, models_dir)
    as_path = Path(args.model)
    if as_path.suffix == ".onnx" and as_path.is_file():
        path, name = as_path, as_path.stem
    else:
        resolved = resolve_density_model(args.model, models_dir)
        path, name = resolved.path, resolved.name
    folder = open_folder(args.data)
    items = folder.select(limit=args.limit)
    images = [item.load_image() for item in items]
    truth = np.array([folder.true_count(item) for item in items], np.float64)
    roi = folder.roi

    def integrate(density: DensityMap) -> float:
        return density.total() if roi is None else density.integrate_mask(roi)

    estimators = {b: build(b, path, name, args.threads) for b in args.backends}
    for est in estimators.values():  # warm-up: allocation, cuDNN's algorithm search
        est.estimate(images[0])
    times: dict[str, list[float]] = {b: [] for b in estimators}
    counts: dict[str, list[float]] = {b: [0.0] * len(images) for b in estimators}
    for _ in range(args.repeat):
        for i, image in enumerate(images):
            for b, est in estimators.items():
                # The map only, as in the batched rows below: the ROI sum (a few ms on a CPU)
                # is outside the clock in both.
                t0 = time.perf_counter()
                density = est.estimate(image)
                times[b].append((time.perf_counter() - t0) * 1000)
                counts[b][i] = integrate(density)

    if args.batch > 1:
        for b, est in list(estimators.items()):
            estimate_batch = getattr(est, "estimate_batch", None)
            if estimate_batch is None:
                continue
            key = f"{b} x{args.batch}"
            estimate_batch(images[: args.batch])  # warm-up at this batch size
            times[key], counts[key] = [], []
            for _ in range(args.repeat):
                counts[key] = []
                for start in range(0, len(images), args.batch):
                    chunk = images[start : start + args.batch]
                    t0 = time.perf_counter()
                    maps = estimate_batch(chunk)
                    times[key].append((time.perf_counter() - t0) * 1000 / len(chunk))
                    counts[key] += [integrate(m) for m in maps]

    first = args.backends[0]
    results = []
    print(f"model {name} ({path}), {len(images)} pictures of {args.data}, {args.repeat} passes")
    print(f"{'backend':22} {'median ms':>9} {'p90 ms':>7} {'MAE':>6} {'max |diff| vs ' + first:>20}")
    for key, t in times.items():
        t = sorted(t)
        p90 = t[int(0.9 * (len(t) - 1))]
        errors = CountErrors.of(counts[key], truth)
        diff = float(np.max(np.abs(np.array(counts[key]) - np.array(counts[first]))))
        print(f"{key:22} {statistics.median(t):9.1f} {p90:7.1f} {errors.mae:6.2f} {diff:20.3f}")
        results.append(
            {
                "backend": key,
                "median_ms": statistics.median(t),
                "p90_ms": p90,
                "mae": errors.mae,
                "mean_signed_error": errors.mean_signed_error,
                "max_abs_count_diff_vs_first": diff,
                "n": len(images),
            }
        )
    if args.json:
        summary = {"model": name, "data": str(args.data), "results": results}
        args.json.write_text(json.dumps(summary, indent=2))
    for est in estimators.values():
        est.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
