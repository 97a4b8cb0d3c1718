"""Density models trained here, not downloaded: CSRNet with its last layers fine-tuned on labeled
pictures of one kind of scene (a camera, a dataset).

Their weights derive from research-only data, so they can never be a catalog artifact. Each one
is a recipe instead, and `crowdwatch models train NAME --data FOLDER` makes it reproducibly
(seeded, deterministic) on the machine that uses it, writing `<models_dir>/<NAME>/csrnet.onnx`
and `trained.json` (what it learnt from, the seed, the code version, its held-out error). A
config names it like any model (`counting.density.model: csrnet-mall`). Nothing here imports
torch: resolving a trained model costs no more than resolving a catalog one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crowdwatch.detectors.catalog import ModelNotFetchedError, default_models_dir, resolve

TRAINED_ONNX = "csrnet.onnx"
TRAINED_INFO = "trained.json"
BASE_MODEL = "csrnet-density"
"""The catalog model whose frozen layers every recipe reuses."""


@dataclass(frozen=True, slots=True)
class TrainRecipe:
    name: str
    description: str
    dataset: str
    """The labeled folder's name under the data dir (e.g. `mall`); `--data` may point elsewhere."""
    train_frames: str
    """Pictures trained on, as frame ranges (`1-269,451-800`); empty = every picture."""
    held_out_frames: str
    """Pictures never trained on, scored after training and written to trained.json."""
    every: int = 1
    """Train on every n-th selected picture (consecutive video frames are near-duplicates)."""
    input_scale: float = 1.0
    """Pictures are enlarged by this before the network, in training and at run time (the model
    carries it): far-away people become big enough for CSRNet to see."""
    augment_scales: tuple[float, ...] = ()
    """Each training picture is also shown enlarged by each of these factors instead of
    `input_scale` (in training only): the same crowds at other sizes, so that the head meets
    small, packed people (a far crowd) not only where the training frames happen to hold them."""
    epochs: int = 30
    lr: float = 1e-4
    sigma_cells: float = 1.5
    """Gaussian spread of one head in the density target, in map cells (8 px)."""
    count_weight: float = 1.0
    """Weight of the per-picture count error in the loss, next to the per-cell error."""
    crop: float = 1.0
    """Random crops of this fraction of the feature map's sides (augmentation); 1 = whole maps."""
    block: int = 1
    """Side, in cells, of the blocks whose counts the spatial part of the loss compares."""
    batch: int = 1
    """Pictures per optimiser step."""
    rescale: bool = True
    """Fold the least-squares count factor on the training pictures into the last layer."""
    seed: int = 0
    split: str = "backend.6"
    """The last frozen layer: every conv layer after it is trained (backend.6: the last three)."""

    @property
    def train_command(self) -> str:
        return f"crowdwatch models train {self.name} --data ../shared/data/{self.dataset}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.augment_scales:
            out["augment_scales"] = list(self.augment_scales)  # as JSON reads it back (is_current)
        else:  # a field added later: models trained before it stay current
            del out["augment_scales"]
        return out


RECIPES: Mapping[str, TrainRecipe] = MappingProxyType(
    {
        r.name: r
        for r in (
            TrainRecipe(
                name="csrnet-mall",
                description="CSRNet seeing frames at 1.5x, its last three layers fine-tuned on the Mall "
                "dataset's camera (every 5th of frames 1-269 and 451-800; 270-450 never seen)",
                dataset="mall",
                train_frames="1-269,451-800",
                held_out_frames="280-440",
                every=5,
                input_scale=1.5,
                epochs=20,
                lr=3e-4,
                count_weight=5.0,
                crop=0.5,
                block=5,
                batch=4,
            ),
            TrainRecipe(
                name="csrnet-shtb",
                description="CSRNet with its last three layers fine-tuned on ShanghaiTech Part B "
                "(elevated street views; all 200 training pictures)",
                dataset="shanghaitech_partB_train",
                train_frames="",
                held_out_frames="",
                epochs=150,
                lr=3e-4,
                count_weight=5.0,
                crop=0.5,
                block=5,
                batch=4,
            ),
        )
    }
)


class ModelNotTrainedError(ModelNotFetchedError):
    """A trained model's recipe is known but it has not been trained in this models dir."""


@dataclass(frozen=True, slots=True)
class ResolvedDensityModel:
    path: Path
    name: str
    """What events report as the model."""


def trained_dir(name: str, models_dir: Path) -> Path:
    return models_dir / name


def read_info(name: str, models_dir: Path) -> dict[str, Any] | None:
    """The trained.json of a trained model, None when it has not been trained here."""
    path = trained_dir(name, models_dir) / TRAINED_INFO
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else None


def resolve_density_model(
    model_ref: str, models_dir: Path, *, recipes: Mapping[str, TrainRecipe] = RECIPES
) -> ResolvedDensityModel:
    """A trained model's ONNX (a clear error naming the train command when it is missing), else
    whatever `catalog.resolve` makes of the reference for a density backend."""
    recipe = recipes.get(model_ref)
    if recipe is not None:
        path = trained_dir(recipe.name, models_dir) / TRAINED_ONNX
        if not path.is_file():
            hint = "" if models_dir == default_models_dir() else f" --models-dir {models_dir}"
            raise ModelNotTrainedError(
                f"model '{recipe.name}' is trained on this machine from labeled research data, never "
                f"downloaded, and it is not in {models_dir}: run `{recipe.train_command}{hint}` "
                "(point --data at your copy of that folder)"
            )
        return ResolvedDensityModel(path, recipe.name)
    resolved = resolve(model_ref, models_dir, "density")
    name = resolved.entry.name if resolved.entry is not None else resolved.path.stem
    return ResolvedDensityModel(resolved.path, name)
