"""Held-out accuracy of a trained density head (`crowdwatch models train`), next to raw CSRNet and
a per-camera linear calibration fitted on exactly the same training pictures.

    # Mall: 5 contiguous blocks of the recipe's (thinned) training frames, 10-frame margins left
    # out of training around each test block; then the shipped recipe scored on the e2e clip
    .venv/bin/python benchmarks/train_density_head.py --data ../shared/data/mall --recipe csrnet-mall \\
        --cv blocks:5 --test 280-440 --json /tmp/acc/head_mall.json

    # ShanghaiTech B: 5-fold cross-validation (seeded shuffle); the all-200 head on SHT-A and UCF
    .venv/bin/python benchmarks/train_density_head.py --data ../shared/data/shanghaitech_partB_train \\
        --recipe csrnet-shtb --cv kfold:5 --also ../shared/data/shanghaitech_partA_train \\
        ../shared/data/ucf_cc_50

Everything runs on the frozen trunk's cached features (`crowdwatch.training.features`), so the
network's expensive part runs once per picture; the head on those features is what the built
ONNX computes (tests/training/test_head.py checks the split). `--set key=value` overrides a
recipe field for experiments (epochs, lr, count_weight, crop, block, sigma_cells, every, seed,
augment_scales=1.0,1.2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from crowdwatch.core.density import DensityCalibration, DensityMap
from crowdwatch.detectors.catalog import default_models_dir, fetch, get_entry, member_path
from crowdwatch.detectors.csrnet_onnx import load_weights
from crowdwatch.detectors.trained import BASE_MODEL, RECIPES, TrainRecipe
from crowdwatch.evaluation.folds import folds as cv_folds
from crowdwatch.evaluation.labeled import LabeledFolder, LabeledItem, open_folder, parse_ranges
from crowdwatch.evaluation.metrics import CountErrors
from crowdwatch.training.data import load_augmented, load_samples, predicted_counts
from crowdwatch.training.features import TrunkFeatures
from crowdwatch.training.head import Sample, fit_recipe, predict_maps

Floats = npt.NDArray[np.float64]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the recipe's labeled folder")
    p.add_argument("--recipe", choices=sorted(RECIPES), required=True)
    p.add_argument("--cv", default=None, help="blocks:K (contiguous, for video) or kfold:K (shuffled)")
    p.add_argument("--margin", type=int, default=10, help="blocks: frames left out on each side")
    p.add_argument("--folds", default="", help="with --cv: only these folds, e.g. 1 or 1,2 (default all)")
    p.add_argument("--test", default=None, help="frames scored with the head trained on every recipe frame")
    p.add_argument("--test-every", type=int, default=1, help="score every n-th of the --test frames")
    p.add_argument("--also", type=Path, nargs="*", default=[], help="other folders to score that head on")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--features-dir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="write the summary here")
    p.add_argument(
        "--auto-under",
        type=int,
        default=None,
        metavar="N",
        help="with --cv, on folders without an ROI: score `auto` (the product's default rule, each "
        "picture alone) on the out-of-fold pictures with fewer than N people, its density count "
        "being the held-out head's, next to the plain detector and `auto` with raw CSRNet",
    )
    p.add_argument("--detector", default="yolov8s-person-onnx", help="detector of --auto-under")
    return p


def with_overrides(recipe: TrainRecipe, pairs: Sequence[str]) -> TrainRecipe:
    fields = {f.name: f for f in dataclasses.fields(recipe)}
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in fields:
            raise SystemExit(f"--set: no recipe field {key!r} (fields: {', '.join(fields)})")
        current = getattr(recipe, key)
        if isinstance(current, tuple):  # augment_scales=1.0,1.2 (empty: none)
            changes[key] = tuple(float(v) for v in value.split(",") if v.strip())
        elif isinstance(current, bool):
            changes[key] = value.lower() in ("1", "true", "yes")
        elif isinstance(current, str):
            changes[key] = value
        else:
            changes[key] = type(current)(value)
    return dataclasses.replace(recipe, **changes)


def folds(
    items: Sequence[LabeledItem], spec: str, margin: int, seed: int
) -> list[tuple[list[int], list[int]]]:
    try:
        return cv_folds(items, spec, margin, seed)
    except ValueError as exc:
        raise SystemExit(f"--cv: {exc}") from None


def errors(predicted: Floats, true: Floats) -> dict[str, float]:
    e = CountErrors.of(predicted, true)
    return {
        "n": e.n,
        "mae": round(e.mae, 3),
        "rmse": round(e.rmse, 3),
        "mean_signed_error": round(e.mean_signed_error, 3),
    }


class Scorer:
    """Raw, linear-calibrated and trained counts of held-out samples for one training set."""

    def __init__(self, base: dict[str, npt.NDArray[np.float32]], recipe: TrainRecipe) -> None:
        self.base = base
        self.recipe = recipe

    def raw(self, samples: Sequence[Sample]) -> Floats:
        maps = predict_maps(self.base, [s.features for s in samples], split=self.recipe.split)
        return predicted_counts(maps, samples)

    def run(
        self,
        train: Sequence[Sample],
        test: Sequence[Sample],
        raw_train: Floats,
        raw_test: Floats,
        augmented: Sequence[Sample] = (),
    ) -> dict[str, Any]:
        """The head and the linear calibration learn from `train` (the head also from `augmented`,
        the same pictures at the recipe's augment_scales); both are scored on `test`."""
        true_train = np.asarray([s.count for s in train])
        true_test = np.asarray([s.count for s in test])
        calibration = DensityCalibration.fit(raw_train, true_train)
        started = time.monotonic()
        head, factor = fit_recipe(train, self.base, self.recipe, augmented=augmented)
        seconds = time.monotonic() - started
        trained = predicted_counts(
            predict_maps(head, [s.features for s in test], split=self.recipe.split), test
        )
        return {
            "raw": errors(raw_test, true_test),
            "linear": {
                **errors(calibration.apply_many(raw_test), true_test),
                "a": calibration.a,
                "b": calibration.b,
            },
            "trained": errors(trained, true_test),
            "train_seconds": round(seconds, 1),
            "n_trained_on": len(train),
            "rescale": round(factor, 4),
            "head": head,
            "predicted": trained,
        }


class _Replay:
    """A density estimator that answers with a count computed beforehand (the held-out head's),
    as a one-cell map: `auto` then decides exactly as it would on the network's map (no ROI:
    it sums the map)."""

    name = "replay"

    def __init__(self) -> None:
        self.count = 0.0

    def estimate(self, image: npt.NDArray[np.uint8]) -> DensityMap:
        h, w = image.shape[:2]
        return DensityMap(np.full((1, 1), self.count, np.float32), (float(w), float(h)), (h, w))

    def close(self) -> None:
        pass


def sparse_auto(
    folder: LabeledFolder, out_of_fold: dict[str, list[Any]], under: int, detector_ref: str, threads: int
) -> dict[str, Any]:
    """`auto` against the plain detector on the sparse out-of-fold pictures, with the density
    count of the held-out head and of raw CSRNet."""
    from pydantic import TypeAdapter

    from crowdwatch.config.counting import CountingConfig
    from crowdwatch.config.detector import DetectorConfig
    from crowdwatch.detectors.registry import build_detector
    from crowdwatch.evaluation.counting import AutoCounter
    from crowdwatch.runtime.build import auto_params

    if folder.roi is not None:
        raise SystemExit(
            "--auto-under: only for folders without an ROI mask (the replayed count is the whole picture's)"
        )
    models_dir = default_models_dir()
    fetch(detector_ref, models_dir)
    fields = {"type": "onnx", "model": detector_ref, "threads": threads}
    config = TypeAdapter(DetectorConfig).validate_python(fields)
    detector = build_detector(config, models_dir)
    params = auto_params(CountingConfig())  # the product's default thresholds
    items = {it.name: it for it in folder.items}
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(out_of_fold["name"]):
        true = out_of_fold["true"][j]
        if true >= under:
            continue
        image = items[name].load_image()
        boxes = float(len(detector.detect(image)))
        row: dict[str, Any] = {"name": name, "true": true, "detector": boxes}
        for method in ("trained", "raw"):
            replay = _Replay()
            replay.count = float(out_of_fold[method][j])
            counter = AutoCounter(detector, replay, params)  # a fresh switch: the picture alone
            row[f"auto_{method}"] = round(counter(image, None), 3)
            row[f"auto_{method}_mode"] = counter.modes[-1]
            row[method] = out_of_fold[method][j]
        rows.append(row)
        print(
            f"  {name:14s} true {true:4.0f}  detector {boxes:4.0f}  auto(trained head) "
            f"{row['auto_trained']:6.1f} [{row['auto_trained_mode']}]  auto(raw) {row['auto_raw']:6.1f} "
            f"[{row['auto_raw_mode']}]",
            file=sys.stderr,
        )
    detector.close()
    if not rows:
        return {"under": under, "n": 0}
    true_counts = np.asarray([r["true"] for r in rows], dtype=np.float64)
    scores = {
        m: errors(np.asarray([r[m] for r in rows], dtype=np.float64), true_counts)
        for m in ("detector", "auto_trained", "auto_raw", "trained", "raw")
    }
    for m, e in scores.items():
        line = f"under {under}: {m:14s} MAE {e['mae']:6.2f} ({e['mean_signed_error']:+6.2f}) n={e['n']}"
        print(line, file=sys.stderr)
    return {"under": under, "detector_model": detector_ref, **scores, "pictures": rows}


def _line(label: str, r: dict[str, Any]) -> str:
    cells = [
        f"{m} {r[m]['mae']:6.2f} ({r[m]['mean_signed_error']:+6.2f})" for m in ("raw", "linear", "trained")
    ]
    return f"{label:28s} n={r['raw']['n']:4d}  " + "   ".join(cells)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    recipe = with_overrides(RECIPES[args.recipe], args.set)
    import torch

    torch.set_num_threads(args.threads)
    models_dir = args.models_dir or default_models_dir()
    fetch(BASE_MODEL, models_dir)
    npz = member_path(get_entry(BASE_MODEL), models_dir)
    base = load_weights(npz)
    trunk = TrunkFeatures(
        npz, args.features_dir, split=recipe.split, threads=args.threads, scale=recipe.input_scale
    )
    folder = open_folder(args.data)
    # The recipe's training pictures, thinned as the recipe thins them (video: near-duplicates).
    # The head and the linear calibration of each fold learn from the same pictures.
    pool_items = folder.select(parse_ranges(recipe.train_frames) if recipe.train_frames else None)
    pool_items = pool_items[:: max(recipe.every, 1)]
    print(f"{recipe.name}: features of {len(pool_items)} pictures (cache {trunk.cache_dir})", file=sys.stderr)
    pool = load_samples(folder, pool_items, trunk, recipe.sigma_cells)
    extra_trunks = [trunk.at_scale(scale) for scale in recipe.augment_scales]
    if extra_trunks:
        print(f"  and at {', '.join(f'{t.scale:g}x' for t in extra_trunks)}", file=sys.stderr)
    views = load_augmented(folder, pool_items, extra_trunks, recipe.sigma_cells)

    def augmented(indices: Sequence[int]) -> list[Sample]:
        return [sample for i in indices for sample in views[i]]

    scorer = Scorer(base, recipe)
    raw_pool = scorer.raw(pool)
    summary: dict[str, Any] = {"recipe": recipe.to_dict(), "data": str(folder.root), "folds": []}
    print("                                      MAE (mean signed error)", file=sys.stderr)

    if args.cv:
        predicted: dict[str, list[float]] = {"raw": [], "linear": [], "trained": [], "true": []}
        oof_names: list[str] = []
        only = {int(f) for f in args.folds.split(",") if f}
        for j, (tr, te) in enumerate(folds(pool_items, args.cv, args.margin, recipe.seed)):
            if only and j + 1 not in only:
                continue
            train = [pool[i] for i in tr]
            test = [pool[i] for i in te]
            r = scorer.run(train, test, raw_pool[tr], raw_pool[te], augmented(tr))
            names = (
                f"{pool_items[te[0]].name}..{pool_items[te[-1]].name}" if args.cv.startswith("blocks") else ""
            )
            print(_line(f"fold {j + 1} {names}", r), file=sys.stderr)
            calibration = DensityCalibration(a=r["linear"]["a"], b=r["linear"]["b"])
            predicted["raw"] += raw_pool[te].tolist()
            oof_names += [pool_items[i].name for i in te]
            predicted["linear"] += calibration.apply_many(raw_pool[te]).tolist()
            predicted["trained"] += r["predicted"].tolist()
            predicted["true"] += [pool[i].count for i in te]
            summary["folds"].append(
                {
                    "test": [pool_items[i].name for i in (te[0], te[-1])],
                    **{k: v for k, v in r.items() if k not in ("head", "predicted")},
                }
            )
        true = np.asarray(predicted["true"])
        pooled = {m: errors(np.asarray(predicted[m]), true) for m in ("raw", "linear", "trained")}
        # Per picture, out of fold: shows whether a method compresses (under high, over low).
        out_of_fold: dict[str, list[Any]] = {
            "name": oof_names,
            **{m: [round(float(v), 3) for v in predicted[m]] for m in predicted},
        }
        summary["cv"] = {"spec": args.cv, "margin": args.margin, **pooled, "out_of_fold": out_of_fold}
        print(
            _line(f"cv {args.cv} ({'folds ' + args.folds if args.folds else 'all folds'})", pooled),
            file=sys.stderr,
        )
        if args.auto_under is not None:
            summary["auto_under"] = sparse_auto(
                folder, out_of_fold, args.auto_under, args.detector, args.threads
            )

    if args.test or args.also:
        test_items = folder.select(parse_ranges(args.test))[:: args.test_every] if args.test else []
        clash = {it.name for it in test_items} & {it.name for it in pool_items}
        if clash:
            raise SystemExit(f"--test frames are training frames of {recipe.name}: {sorted(clash)[:5]}")
        test = load_samples(folder, test_items, trunk, recipe.sigma_cells) if test_items else []
        r = scorer.run(
            pool, test or pool[:1], raw_pool, scorer.raw(test or pool[:1]), augmented(range(len(pool)))
        )
        if test:
            print(_line(f"test {args.test}", r), file=sys.stderr)
            summary["test"] = {
                "frames": args.test,
                **{k: v for k, v in r.items() if k not in ("head", "predicted")},
            }
        summary["also"] = []
        for other_dir in args.also:
            other: LabeledFolder = open_folder(other_dir)
            samples = load_samples(other, list(other.items), trunk, recipe.sigma_cells)
            true = np.asarray([s.count for s in samples])
            raw = scorer.raw(samples)
            maps = predict_maps(r["head"], [s.features for s in samples], split=recipe.split)
            trained = predicted_counts(maps, samples)
            row: dict[str, Any] = {
                "data": str(other.root),
                "raw": errors(raw, true),
                "trained": errors(trained, true),
            }
            summary["also"].append(row)
            print(
                f"{other.root.name:28s} n={len(samples):4d}  raw {row['raw']['mae']:7.2f} "
                f"({row['raw']['mean_signed_error']:+7.2f})   trained {row['trained']['mae']:7.2f} "
                f"({row['trained']['mean_signed_error']:+7.2f})",
                file=sys.stderr,
            )
    trunk.close()
    print(json.dumps({k: v for k, v in summary.items() if k != "recipe"}))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
