"""`crowdwatch models list|fetch|quantize`: see the model catalog, fetch weights into the models
dir, make int8 copies of detectors."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crowdwatch.detectors.catalog import (
    CATALOG,
    UnknownModelError,
    default_models_dir,
    fetch_models,
    list_models,
)
from crowdwatch.detectors.quantize_cli import add_parser as add_quantize_parser
from crowdwatch.detectors.quantize_cli import make_int8
from crowdwatch.detectors.quantized import RECIPES, quantized_path
from crowdwatch.detectors.trained import RECIPES as TRAINED_RECIPES
from crowdwatch.detectors.trained import TRAINED_ONNX, trained_dir
from crowdwatch.detectors.wheels import FetchError
from crowdwatch.training.cli import add_parser as add_train_parser
from crowdwatch.training.cli import run_train


def _parser() -> argparse.ArgumentParser:
    # --models-dir is accepted before or after the subcommand; SUPPRESS keeps a subcommand's
    # absent option from overwriting one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--models-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="where model files live (default: $CROWDWATCH_MODELS_DIR, else ~/.cache/crowdwatch/models)",
    )
    parser = argparse.ArgumentParser(
        prog="crowdwatch models", description="List and fetch detector model weights.", parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[common], help="show the catalog and what is fetched")
    fetch = sub.add_parser("fetch", parents=[common], help="download, verify and store models")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="catalog model names")
    add_quantize_parser(sub, common)
    add_train_parser(sub, common)
    return parser


def _list(models_dir: Path, out: Console) -> int:
    table = Table(title=f"models in {models_dir}")
    table.add_column("name", no_wrap=True)
    table.add_column("format")
    table.add_column("licence")
    table.add_column("package", overflow="fold")
    table.add_column("fetched", overflow="fold")
    for status in list_models(models_dir):
        e = status.entry
        fetched = f"[green]yes[/] {status.path}" if status.fetched else "[yellow]no[/]"
        table.add_row(e.name, e.format, e.licence, e.requirement, fetched)
    for recipe in RECIPES.values():
        path = quantized_path(recipe.name, models_dir)
        made = f"[green]yes[/] {path}" if path.is_file() else "[yellow]no[/] (crowdwatch models quantize)"
        parent = CATALOG[recipe.parent]
        source = f"{parent.requirement}, quantised here"
        table.add_row(recipe.name, "onnx int8", parent.licence, source, made)
    for trained in TRAINED_RECIPES.values():
        path = trained_dir(trained.name, models_dir) / TRAINED_ONNX
        made = f"[green]yes[/] {path}" if path.is_file() else f"[yellow]no[/] ({trained.train_command})"
        base = CATALOG["csrnet-density"]
        source = f"{base.requirement}, fine-tuned here on {trained.dataset} (research data)"
        table.add_row(trained.name, "density", base.licence, source, made)
    out.print(table)
    return 0


def _fetch(names: list[str], models_dir: Path, out: Console, err: Console) -> int:
    # Models made on this machine are listed beside the fetched ones, but never downloaded.
    for name in names:
        made = TRAINED_RECIPES[name].train_command if name in TRAINED_RECIPES else None
        made = RECIPES[name].command if name in RECIPES else made
        if made is not None:
            err.print(f"[red]error:[/] '{name}' is made on this machine, never downloaded: run `{made}`")
            return 1
    try:
        fetched = fetch_models(names, models_dir)
    except (UnknownModelError, FetchError) as exc:
        err.print(f"[red]error:[/] {exc}")
        return 1
    for f in fetched:
        how = "written" if f.written else "already there"
        out.print(f"[bold]{f.entry.name}[/] -> {f.path} ({how})")
        out.print(f"  sha256 OK {f.entry.sha256}")
        out.print(f"  licence: {f.entry.licence} — from {f.entry.requirement}")
    return 0


def _quantize(args: argparse.Namespace, models_dir: Path, out: Console, err: Console) -> int:
    try:
        result = make_int8(
            args.parent, models_dir, args.calibration_data, frames=args.frames, limit=args.limit
        )
    except (UnknownModelError, FetchError, FileNotFoundError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        return 1
    r = result.recipe
    out.print(
        f"[bold]{r.name}[/] -> {result.path} ({result.frames} calibration frames, {result.seconds:.0f} s)"
    )
    out.print(f"  from {r.parent}; use it with `detector: {{type: onnx, model: {r.name}}}`")
    out.print("  made from research-only calibration data: keep it on this machine, do not redistribute")
    return 0


def run_models_command(argv: list[str], out: Console | None = None, err: Console | None = None) -> int:
    """Run `crowdwatch models ...` with `argv` (the words after `models`); returns the exit code."""
    out = out or Console()
    err = err or Console(stderr=True)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else 2
    models_dir: Path = getattr(args, "models_dir", None) or default_models_dir()
    if args.command == "list":
        return _list(models_dir, out)
    if args.command == "quantize":
        return _quantize(args, models_dir, out, err)
    if args.command == "train":
        return run_train(args, models_dir, out, err)
    return _fetch(args.names, models_dir, out, err)
