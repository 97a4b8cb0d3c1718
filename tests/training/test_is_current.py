"""A trained model is reused only when it was made by the same recipe and trainer version."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from crowdwatch.detectors.trained import RECIPES, TRAINED_INFO, TRAINED_ONNX, trained_dir
from crowdwatch.training.train import TRAINER_VERSION, is_current

RECIPE = RECIPES["csrnet-mall"]


def write_model(models_dir: Path, recipe: dict[str, object], version: str, onnx: bool = True) -> None:
    out = trained_dir(RECIPE.name, models_dir)
    out.mkdir(parents=True)
    if onnx:
        (out / TRAINED_ONNX).write_bytes(b"onnx")
    (out / TRAINED_INFO).write_text(json.dumps({"recipe": recipe, "trainer_version": version}))


def test_missing_model_is_not_current(tmp_path: Path) -> None:
    assert not is_current(RECIPE, tmp_path)


def test_same_recipe_and_version_is_current(tmp_path: Path) -> None:
    write_model(tmp_path, RECIPE.to_dict(), TRAINER_VERSION)
    assert is_current(RECIPE, tmp_path)


def test_another_recipe_is_not_current(tmp_path: Path) -> None:
    write_model(tmp_path, dataclasses.replace(RECIPE, epochs=RECIPE.epochs + 1).to_dict(), TRAINER_VERSION)
    assert not is_current(RECIPE, tmp_path)


def test_another_trainer_version_is_not_current(tmp_path: Path) -> None:
    write_model(tmp_path, RECIPE.to_dict(), TRAINER_VERSION + "-old")
    assert not is_current(RECIPE, tmp_path)


def test_info_without_its_model_is_not_current(tmp_path: Path) -> None:
    write_model(tmp_path, RECIPE.to_dict(), TRAINER_VERSION, onnx=False)
    assert not is_current(RECIPE, tmp_path)


def test_a_recipe_with_augment_scales_is_current_after_its_json_round_trip(tmp_path: Path) -> None:
    recipe = dataclasses.replace(RECIPE, augment_scales=(0.75, 1.0))
    write_model(tmp_path, recipe.to_dict(), TRAINER_VERSION)  # JSON makes the tuple a list
    assert is_current(recipe, tmp_path)
    assert not is_current(dataclasses.replace(recipe, augment_scales=(1.0,)), tmp_path)


def test_a_model_trained_before_augment_scales_existed_stays_current(tmp_path: Path) -> None:
    assert "augment_scales" not in RECIPE.to_dict()  # the shipped recipes do not augment
    write_model(tmp_path, RECIPE.to_dict(), TRAINER_VERSION)
    assert is_current(RECIPE, tmp_path)
