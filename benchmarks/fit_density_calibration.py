"""Fit a DensityCalibration (count = a * raw + b) on labeled pictures and write it as JSON.

    # Mall: fit on frames outside the 280-440 clip that the end-to-end test plays
    .venv/bin/python benchmarks/fit_density_calibration.py --data ../shared/data/mall \
        --exclude-range 280-440 --camera-id mall --out /tmp/acc/mall_calibration.json

Runs CSRNet on the selected pictures, or reuses the raw counts of an accuracy.py CSV
(`--predictions`), which is much faster. The intercept `b` is the background the network
integrates when nobody is there (extrapolated from the fit).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crowdwatch.core.density import DensityCalibration
from crowdwatch.detectors.catalog import default_models_dir, fetch
from crowdwatch.evaluation.counting import ImageResult, density_counter, read_results_csv, run_counter
from crowdwatch.evaluation.labeled import open_folder, parse_ranges
from crowdwatch.evaluation.metrics import CountErrors

MODEL = "csrnet-density"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a labeled folder (with index.json)")
    p.add_argument("--frames", default=None, help="fit on these frame numbers only, e.g. 1-279,441-800")
    p.add_argument("--exclude-range", default=None, help="leave these frame numbers out, e.g. 280-440")
    p.add_argument("--limit", type=int, default=None, help="fit on the first N selected images")
    p.add_argument("--predictions", type=Path, default=None, help="raw counts from an accuracy.py CSV")
    p.add_argument("--robust", action="store_true", help="Huber-weighted fit (outliers count less)")
    p.add_argument("--camera-id", default=None, help="the camera it belongs to (omit for a global fit)")
    p.add_argument("--max-side", type=int, default=None, help="must match the estimator used at run time")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    folder = open_folder(args.data)
    items = folder.select(parse_ranges(args.frames) if args.frames else None)
    if args.exclude_range:
        excluded = set(parse_ranges(args.exclude_range))
        items = [it for it in items if it.frame_number not in excluded]
    items = items[: args.limit] if args.limit is not None else items
    if args.predictions is not None:
        wanted = {it.name for it in items}
        results: list[ImageResult] = [r for r in read_results_csv(args.predictions) if r.name in wanted]
        if len(results) != len(items):
            print(f"warning: the CSV has {len(results)} of {len(items)} selected images", file=sys.stderr)
    else:
        from crowdwatch.detectors.density import CsrnetOnnxEstimator

        path = fetch(MODEL, args.models_dir or default_models_dir())
        counter = density_counter(CsrnetOnnxEstimator(path, threads=args.threads, max_side=args.max_side))
        results = list(run_counter(folder, items, counter))
    raw = [r.raw for r in results]
    true = [r.true for r in results]
    calibration = DensityCalibration.fit(raw, true, robust=args.robust, camera_id=args.camera_id)
    before = CountErrors.of(raw, true)
    after = CountErrors.of(calibration.apply_many(raw), true)
    print(
        f"fitted on {calibration.n} images: count = {calibration.a:.4f} * raw + {calibration.b:.3f}; "
        f"in-sample MAE {before.mae:.2f} -> {after.mae:.2f}, RMSE {before.rmse:.2f} -> {after.rmse:.2f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(calibration.to_dict(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
