"""Trained density models: resolved by name from the models dir, with an error naming the train
command when missing; the config and the models CLI reach them the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from crowdwatch.config.counting import CountingConfig
from crowdwatch.detectors.catalog import ModelNotFetchedError, UnknownModelError
from crowdwatch.detectors.models_cli import run_models_command
from crowdwatch.detectors.trained import (
    RECIPES,
    TRAINED_ONNX,
    ModelNotTrainedError,
    read_info,
    resolve_density_model,
    trained_dir,
)
from crowdwatch.runtime.models import build_density_estimator


def test_missing_trained_model_names_the_train_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotTrainedError) as info:
        resolve_density_model("csrnet-mall", tmp_path)
    message = str(info.value)
    assert "crowdwatch models train csrnet-mall --data ../shared/data/mall" in message
    assert f"--models-dir {tmp_path}" in message
    assert isinstance(info.value, ModelNotFetchedError)  # the CLI's start-up error path catches it


def test_trained_model_resolves_to_its_onnx(tmp_path: Path) -> None:
    onnx_path = trained_dir("csrnet-mall", tmp_path) / TRAINED_ONNX
    onnx_path.parent.mkdir(parents=True)
    onnx_path.write_bytes(b"not loaded here")
    resolved = resolve_density_model("csrnet-mall", tmp_path)
    assert resolved.path == onnx_path
    assert resolved.name == "csrnet-mall"
    assert read_info("csrnet-mall", tmp_path) is None  # no trained.json written


def test_other_references_go_to_the_catalog(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFetchedError, match="crowdwatch models fetch csrnet-density"):
        resolve_density_model("csrnet-density", tmp_path)
    model = tmp_path / "mine.onnx"
    model.write_bytes(b"x")
    assert resolve_density_model(str(model), tmp_path).name == "mine"
    with pytest.raises(UnknownModelError):
        resolve_density_model("no-such-model", tmp_path)


def test_runtime_density_model_from_config_fails_with_the_train_command(tmp_path: Path) -> None:
    counting = CountingConfig.model_validate({"density": {"model": "csrnet-mall"}})
    with pytest.raises(ModelNotTrainedError, match="models train csrnet-mall"):
        build_density_estimator(counting, tmp_path)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipes_never_train_on_what_they_hold_out(name: str) -> None:
    from crowdwatch.evaluation.labeled import parse_ranges

    recipe = RECIPES[name]
    if recipe.held_out_frames:
        assert not set(parse_ranges(recipe.train_frames)) & set(parse_ranges(recipe.held_out_frames))


def test_models_train_refuses_an_unknown_recipe(tmp_path: Path) -> None:
    assert run_models_command(["train", "nope", "--data", str(tmp_path), "--models-dir", str(tmp_path)]) == 2


def test_models_train_reports_a_folder_that_is_not_labeled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    code = run_models_command(
        ["train", "csrnet-mall", "--data", str(tmp_path / "absent"), "--models-dir", str(tmp_path)]
    )
    assert code == 1
    assert "not a labeled folder" in capsys.readouterr().err
