"""Cross-validated accuracy of CSRNet with every layer fine-tuned (`crowdwatch.training.full`), on
the folds `train_density_head.py` uses, so the two trainers' errors line up picture for picture.
Meant for a CUDA GPU (~20 min per epoch on a 2-core CPU); `scripts/finetune-gpu` packs what a GPU
machine without network needs and runs this there.

    # ShanghaiTech B, fold 1 of the head's 5-fold split (seed 0), 100 epochs on a GPU
    .venv/bin/python benchmarks/finetune_full.py --data ../shared/data/shanghaitech_partB_train \\
        --cv kfold:5 --folds 1 --epochs 100 --json /tmp/full_shtb.json

    # a smoke run on the CPU: 6 pictures, 1 epoch of small windows
    .venv/bin/python benchmarks/finetune_full.py --data ../shared/data/shanghaitech_partB_train \\
        --cv kfold:3 --folds 1 --limit 6 --epochs 1 --crop 0.125 --context 2 --device cpu

Each fold reports the catalog CSRNet's error on its test pictures next to the fine-tuned one's;
`--eval-every N` also scores the test pictures every N epochs (diagnostics only: the headline is
the last epoch of the run asked for, chosen before it ran).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from crowdwatch.detectors.catalog import default_models_dir, fetch, get_entry, member_path
from crowdwatch.detectors.csrnet_onnx import load_weights
from crowdwatch.detectors.trained import BASE_MODEL
from crowdwatch.evaluation.folds import folds
from crowdwatch.evaluation.labeled import open_folder, parse_ranges
from crowdwatch.evaluation.metrics import CountErrors


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a labeled folder (index.json)")
    p.add_argument("--cv", default="kfold:5", help="blocks:K or kfold:K (default kfold:5)")
    p.add_argument("--seed", type=int, default=0, help="fold shuffle and training seed (default 0)")
    p.add_argument("--margin", type=int, default=10, help="blocks: frames left out around a test block")
    p.add_argument("--folds", default="", help="which folds to run, e.g. 1 or 1,3 (default all; none: no CV)")
    p.add_argument("--train-frames", default="", help="the pool: these frame ranges only (default all)")
    p.add_argument("--every", type=int, default=1, help="thin the pool to every n-th picture")
    p.add_argument("--test", default="", help="frames scored by a model trained on the whole pool")
    p.add_argument("--test-every", type=int, default=1, help="score every n-th of the --test frames")
    p.add_argument("--limit", type=int, default=None, help="use only the first N pictures (smoke runs)")
    p.add_argument(
        "--weights", type=Path, default=None, help="starting state_dict .npz (default the catalog's)"
    )
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--device", default=None, help="cuda or cpu (default cuda when there)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--frontend-lr", type=float, default=1.0, help="front end's lr as a fraction of --lr")
    p.add_argument("--count-weight", type=float, default=5.0)
    p.add_argument("--block", type=int, default=5)
    p.add_argument("--crop", type=float, default=0.5)
    p.add_argument("--context", type=int, default=8, help="cells of context around a window")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--warmup", type=int, default=5, help="epochs of linear learning-rate rise")
    p.add_argument("--no-flip", action="store_true", help="no mirrored windows")
    p.add_argument("--sigma", type=float, default=1.5, help="head spread in map cells")
    p.add_argument("--scale", type=float, default=1.0, help="input scale of the pictures")
    p.add_argument(
        "--no-rescale",
        action="store_true",
        help="leave out the least-squares count factor on the training pictures (the recipes fold it in)",
    )
    p.add_argument(
        "--eval-every", type=int, default=0, metavar="N", help="score the test pictures every N epochs"
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="S",
        help="stop (exit 3) once S seconds have gone, keeping the folds finished so far in --json",
    )
    p.add_argument("--json", type=Path, default=None, help="write the summary here")
    return p


def _errors(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    e = CountErrors.of(predicted, true)
    return {
        "mae": round(e.mae, 3),
        "rmse": round(e.rmse, 3),
        "mean_signed_error": round(e.mean_signed_error, 3),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    from crowdwatch.training.full import FullSettings, load_picture

    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.weights is not None:
        npz = args.weights
    else:
        models_dir = args.models_dir or default_models_dir()
        fetch(BASE_MODEL, models_dir)
        npz = member_path(get_entry(BASE_MODEL), models_dir)
    base = load_weights(npz)
    settings = FullSettings(
        epochs=args.epochs,
        lr=args.lr,
        frontend_lr=args.frontend_lr,
        count_weight=args.count_weight,
        block=args.block,
        crop=args.crop,
        context=args.context,
        batch=args.batch,
        warmup=args.warmup,
        flip=not args.no_flip,
        seed=args.seed,
    )
    folder = open_folder(args.data)
    items = folder.select(parse_ranges(args.train_frames) if args.train_frames else None, limit=args.limit)
    items = items[:: max(args.every, 1)]
    held = folder.select(parse_ranges(args.test))[:: max(args.test_every, 1)] if args.test else []
    if {it.name for it in held} & {it.name for it in items}:
        raise SystemExit("--test frames overlap the training pool")
    started = time.monotonic()
    pictures = [load_picture(folder, it, args.sigma, args.scale) for it in items]
    print(
        f"{len(pictures)} pictures loaded in {time.monotonic() - started:.1f} s; device {device}",
        file=sys.stderr,
    )
    if args.folds == "none":
        wanted: list[int] = []
        split: list[tuple[list[int], list[int]]] = []
    else:
        try:
            split = folds(items, args.cv, args.margin, args.seed)
        except ValueError as exc:
            raise SystemExit(f"--cv: {exc}") from None
        wanted = _fold_numbers(args.folds, len(split))
    summary: dict[str, Any] = {
        "data": str(folder.root),
        "dataset": folder.dataset,
        "cv": args.cv,
        "seed": args.seed,
        "settings": dataclasses.asdict(settings),
        "scale": args.scale,
        "sigma": args.sigma,
        "rescale": not args.no_rescale,
        "device": device if device == "cpu" else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "folds": [],
    }
    deadline = time.monotonic() + args.time_limit if args.time_limit else None
    run = _Runner(base, settings, device, not args.no_rescale, args.eval_every, deadline)
    pooled: dict[str, list[float]] = {"raw": [], "trained": [], "true": []}
    try:
        _run_all(args, summary, pooled, run, split, wanted, items, pictures, held, folder)
    except TimeLimitError as exc:
        summary["stopped"] = str(exc)
        _write(args.json, summary, pooled)
        print(f"stopped: {exc}", file=sys.stderr)
        return 3
    _write(args.json, summary, pooled)
    return 0


def _fold_numbers(spec: str, k: int) -> list[int]:
    """`1,3` -> [1, 3] (every fold when empty); a clear error for anything else."""
    try:
        numbers = [int(f) for f in spec.split(",") if f.strip()]
    except ValueError:
        raise SystemExit(f"--folds {spec!r}: fold numbers like 1 or 1,3, or none") from None
    if any(not 1 <= n <= k for n in numbers):
        raise SystemExit(f"--folds {spec!r}: there are folds 1 to {k}")
    return numbers or list(range(1, k + 1))


class TimeLimitError(Exception):
    """--time-limit reached: a device call must end inside its limit with what it finished."""


def _run_all(
    args: argparse.Namespace,
    summary: dict[str, Any],
    pooled: dict[str, list[float]],
    run: _Runner,
    split: list[tuple[list[int], list[int]]],
    wanted: list[int],
    items: list[Any],
    pictures: list[Any],
    held: list[Any],
    folder: Any,
) -> None:
    from crowdwatch.training.full import load_picture

    """Each wanted fold, then the held-out stretch; `summary` and `pooled` grow as they finish."""
    for number in wanted:
        train_idx, test_idx = split[number - 1]
        fold = run(
            f"fold {number}",
            [pictures[i] for i in train_idx],
            [pictures[i] for i in test_idx],
            [items[i].name for i in test_idx],
        )
        summary["folds"].append({"fold": number, **fold})
        for key in pooled:
            pooled[key] += [t[key] for t in fold["test"]]
        if args.json:  # after every fold: a run cut short keeps what it finished
            _write(args.json, summary, pooled)
    if held:
        held_pictures = [load_picture(folder, it, args.sigma, args.scale) for it in held]
        summary["held_out"] = {
            "frames": args.test,
            "every": args.test_every,
            **run("held-out", pictures, held_pictures, [it.name for it in held]),
        }


class _Runner:
    """Trains on some pictures and scores others, next to the starting network."""

    def __init__(
        self,
        base: dict[str, Any],
        settings: Any,
        device: str,
        rescale: bool,
        eval_every: int,
        deadline: float | None,
    ) -> None:
        self.base, self.settings, self.device = base, settings, device
        self.rescale, self.eval_every, self.deadline = rescale, eval_every, deadline

    def __call__(self, label: str, train: list[Any], test: list[Any], names: list[str]) -> dict[str, Any]:
        from crowdwatch.training.data import predicted_counts
        from crowdwatch.training.full import predict_maps_full, rescale_full, train_full

        true = np.asarray([p.count for p in test])
        raw = predicted_counts(predict_maps_full(self.base, test, device=self.device), test)
        curve = _Curve(label, self.settings.epochs, self.deadline)
        trained = train_full(
            train,
            self.base,
            self.settings,
            device=self.device,
            progress=curve.progress,
            snapshot=_Checkpoints(test, true, self.device, curve.rows),
            snapshot_every=self.eval_every,
        )
        train_s = time.monotonic() - curve.started
        factor = 1.0
        if self.rescale:
            trained, factor = rescale_full(trained, train, device=self.device)
        predicted = predicted_counts(predict_maps_full(trained, test, device=self.device), test)
        result: dict[str, Any] = {
            "n_train": len(train),
            "n_test": len(test),
            "raw": _errors(raw, true),
            "trained": _errors(predicted, true),
            "rescale": round(factor, 4),
            "train_seconds": round(train_s, 1),
            "curve": curve.rows,
            "test": [
                {"name": n, "true": float(t), "raw": round(float(r), 2), "trained": round(float(p), 2)}
                for n, t, r, p in zip(names, true, raw, predicted, strict=True)
            ],
        }
        print(
            f"{label}: MAE catalog {result['raw']['mae']:.2f} -> fine-tuned {result['trained']['mae']:.2f} "
            f"(bias {result['trained']['mean_signed_error']:+.2f}, n={len(test)}, {train_s:.0f} s training)",
            file=sys.stderr,
        )
        return result


class _Curve:
    """Each epoch's mean loss and time, printed every 10 epochs."""

    def __init__(self, label: str, epochs: int, deadline: float | None) -> None:
        self.label, self.epochs, self.deadline = label, epochs, deadline
        self.started = time.monotonic()
        self.rows: list[dict[str, float]] = []

    def progress(self, epoch: int, loss: float) -> None:
        seconds = time.monotonic() - self.started
        if epoch == 1 or epoch % 10 == 0 or epoch == self.epochs:
            print(
                f"  {self.label} epoch {epoch}/{self.epochs} loss {loss:.3f} ({seconds:.0f} s)",
                file=sys.stderr,
            )
        self.rows.append({"epoch": epoch, "loss": round(loss, 4), "seconds": round(seconds, 1)})
        if self.deadline is not None and time.monotonic() > self.deadline and epoch < self.epochs:
            raise TimeLimitError(f"--time-limit reached in {self.label} at epoch {epoch} of {self.epochs}")


class _Checkpoints:
    """Scores the test pictures at a snapshot (diagnostics: nothing is chosen by it)."""

    def __init__(self, test: list[Any], true: np.ndarray, device: str, curve: list[dict[str, float]]) -> None:
        self.test, self.true, self.device, self.curve = test, true, device, curve

    def __call__(self, epoch: int, weights: dict[str, np.ndarray]) -> None:
        from crowdwatch.training.data import predicted_counts
        from crowdwatch.training.full import predict_maps_full

        predicted = predicted_counts(predict_maps_full(weights, self.test, device=self.device), self.test)
        e = _errors(predicted, self.true)
        print(
            f"    epoch {epoch}: test MAE {e['mae']:.2f} (bias {e['mean_signed_error']:+.2f})",
            file=sys.stderr,
        )
        for row in self.curve:
            if row["epoch"] == epoch:
                row["test_mae"] = e["mae"]


def _write(path: Path | None, summary: dict[str, Any], pooled: dict[str, list[float]]) -> None:
    if pooled["true"]:
        true = np.asarray(pooled["true"])
        summary["pooled"] = {
            "n": len(true),
            "raw": _errors(np.asarray(pooled["raw"]), true),
            "trained": _errors(np.asarray(pooled["trained"]), true),
        }
    if path is None:
        print(json.dumps(summary.get("pooled", {}), indent=1))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
