"""`crowdwatch models train NAME --data FOLDER`: the command-line side of `training.train`."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from rich.console import Console

from crowdwatch.detectors.catalog import ModelNotFetchedError, UnknownModelError
from crowdwatch.detectors.trained import RECIPES, TRAINED_ONNX, trained_dir
from crowdwatch.detectors.wheels import FetchError


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    names = ", ".join(sorted(RECIPES))
    p = sub.add_parser(
        "train",
        parents=[common],
        help=f"train a density model here from labeled pictures ({names})",
        description="Fine-tune CSRNet's last layers on a labeled folder, reproducibly (seeded, "
        "deterministic for a thread count). Writes <models-dir>/NAME/csrnet.onnx and trained.json. "
        "The pictures are research data: the result stays on this machine.",
    )
    p.add_argument("name", choices=sorted(RECIPES), metavar="NAME", help=f"the recipe: {names}")
    p.add_argument("--data", type=Path, required=True, help="the labeled folder the recipe trains on")
    p.add_argument(
        "--features-dir",
        type=Path,
        default=None,
        help="cache of the frozen layers' output (default $CROWDWATCH_FEATURES_DIR, "
        "else ~/.cache/crowdwatch/features)",
    )
    p.add_argument("--threads", type=int, default=2, help="CPU threads (results depend on it; default 2)")
    p.add_argument("--force", action="store_true", help="train again even when the model is there")
    p.add_argument(
        "--held-out-every",
        type=int,
        default=4,
        metavar="N",
        help="score every N-th of the recipe's held-out pictures into trained.json (0 = skip; default 4)",
    )


def run_train(args: argparse.Namespace, models_dir: Path, out: Console, err: Console) -> int:
    from crowdwatch.training.train import is_current, train_recipe

    recipe = RECIPES[args.name]
    existing = trained_dir(recipe.name, models_dir) / TRAINED_ONNX
    current = is_current(recipe, models_dir)
    if existing.is_file() and current and not args.force:
        out.print(f"[bold]{recipe.name}[/] is already trained: {existing} (--force trains it again)")
        return 0
    if existing.is_file() and not current:
        out.print(
            f"{recipe.name}: the model there was made by another recipe or trainer version; training again"
        )
    if importlib.util.find_spec("torch") is None:  # torch comes with the `ultralytics` extra
        err.print("[red]error:[/] training needs PyTorch: install the `ultralytics` extra")
        return 1
    try:
        train_recipe(
            recipe,
            args.data,
            models_dir,
            features_dir=args.features_dir,
            threads=args.threads,
            held_out_every=args.held_out_every,
            say=out.print,
        )
    except (FileNotFoundError, ValueError, UnknownModelError, FetchError, ModelNotFetchedError) as exc:
        err.print(f"[red]error:[/] {exc}")
        return 1
    out.print(f"  use it with `counting: {{density: {{model: {recipe.name}}}}}`")
    out.print("  trained on research-only data: keep it on this machine, do not redistribute")
    return 0
