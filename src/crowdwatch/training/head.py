"""CSRNet's last layers as a torch module, trained on cached trunk features (see `features`).

The head is every layer after the split (by default backend.8: 256 -> 128, backend.10:
128 -> 64, both 3x3 dilation 2 with ReLU, then output_layer: 64 -> 1), initialised from the
pretrained weights; after training its tensors replace those in the state_dict and the same
ONNX builder makes the runtime model, so nothing downstream changes.

Reproducible: one seed drives the shuffling, the crops and torch's initial state; the CPU
kernels used here (convolutions, Adam) are deterministic, so results are bitwise identical for
the same data, seed, torch version and thread count (`torch.set_num_threads`; the training
command pins it). `tests/training/test_head.py` checks it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from crowdwatch.detectors.csrnet_onnx import ConvSpec, csrnet_layers
from crowdwatch.detectors.trained import TrainRecipe
from crowdwatch.training.features import SPLIT

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


def head_specs(split: str = SPLIT) -> list[ConvSpec]:
    """The conv layers after `split`, in order."""
    convs = [layer for layer in csrnet_layers() if isinstance(layer, ConvSpec)]
    keys = [c.key for c in convs]
    if split not in keys:
        raise ValueError(f"no conv layer {split!r} in CSRNet")
    return convs[keys.index(split) + 1 :]


class CsrnetHead(nn.Module):
    def __init__(self, specs: Sequence[ConvSpec]) -> None:
        super().__init__()
        self.specs = list(specs)
        self.convs = nn.ModuleList(
            nn.Conv2d(
                s.in_channels,
                s.out_channels,
                s.kernel,
                padding=s.dilation * (s.kernel // 2),
                dilation=s.dilation,
            )
            for s in self.specs
        )

    def _conv_layers(self) -> list[nn.Conv2d]:
        return [m for m in self.convs if isinstance(m, nn.Conv2d)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for spec, conv in zip(self.specs, self._conv_layers(), strict=True):
            x = conv(x)
            if spec.relu:
                x = torch.relu(x)
        return x

    def load_numpy(self, weights: Mapping[str, npt.NDArray[np.generic]]) -> None:
        with torch.no_grad():
            for spec, conv in zip(self.specs, self._conv_layers(), strict=True):
                conv.weight.copy_(torch.from_numpy(np.asarray(weights[f"{spec.key}.weight"], np.float32)))
                assert conv.bias is not None
                conv.bias.copy_(torch.from_numpy(np.asarray(weights[f"{spec.key}.bias"], np.float32)))

    def to_numpy(self) -> dict[str, FloatArray]:
        out: dict[str, FloatArray] = {}
        for spec, conv in zip(self.specs, self._conv_layers(), strict=True):
            out[f"{spec.key}.weight"] = conv.weight.detach().float().cpu().numpy().copy()
            assert conv.bias is not None
            out[f"{spec.key}.bias"] = conv.bias.detach().float().cpu().numpy().copy()
        return out


@dataclass(frozen=True, slots=True)
class Sample:
    """One training picture: cached trunk features and its target at the same resolution."""

    features: npt.NDArray[np.float16]
    """(C, h, w)."""
    density: FloatArray
    """(h, w) target people per cell."""
    weights: FloatArray
    """(h, w) loss weight per cell (ROI share)."""
    count: float
    """True heads (in the ROI)."""

    def __post_init__(self) -> None:
        if self.features.shape[1:] != self.density.shape or self.density.shape != self.weights.shape:
            raise ValueError(
                f"features {self.features.shape}, target {self.density.shape} and weights "
                f"{self.weights.shape} do not match"
            )


@dataclass(frozen=True, slots=True)
class TrainSettings:
    epochs: int = 30
    lr: float = 1e-4
    count_weight: float = 1.0
    crop: float = 0.5
    seed: int = 0
    weight_decay: float = 0.0
    block: int = 1
    """Side, in cells, of the blocks whose counts the spatial part of the loss compares."""
    batch: int = 1
    """Pictures whose gradients are summed per optimiser step (steadier steps)."""


def _crop(sample: Sample, frac: float, rng: np.random.Generator) -> tuple[slice, slice]:
    """A random window of `frac` of each side, allowed to hang over the map's edges (then cut
    to the map): every cell is covered equally often. Windows kept inside the map would show
    the border cells (often the far, crowded end of a street) only rarely."""
    _, h, w = sample.features.shape
    ch, cw = max(round(h * frac), 1), max(round(w * frac), 1)
    i = int(rng.integers(-(ch - 1), h))
    j = int(rng.integers(-(cw - 1), w))
    return slice(max(i, 0), min(i + ch, h)), slice(max(j, 0), min(j + cw, w))


def block_sums(x: torch.Tensor, block: int) -> torch.Tensor:
    """Sums of `x` (h, w) over `block` x `block` tiles; partial tiles at the edges sum what they hold."""
    h, w = x.shape
    ph, pw = -h % block, -w % block
    padded = torch.nn.functional.pad(x, (0, pw, 0, ph))
    return padded.reshape((h + ph) // block, block, (w + pw) // block, block).sum(dim=(1, 3))


def receptive_radius(specs: Sequence[ConvSpec]) -> int:
    """How many cells away a head output still depends on: the context a crop needs around it."""
    return sum(s.dilation * (s.kernel // 2) for s in specs)


def sample_loss(
    head: CsrnetHead,
    sample: Sample,
    rows: slice,
    cols: slice,
    count_weight: float,
    block: int = 1,
    count_scale: float = 1.0,
) -> torch.Tensor:
    """Squared error of the people in each `block` x `block` cells (block 1: per cell, as
    CSRNet's authors train; larger blocks care less where exactly in a block a head is) plus
    `count_weight` times the squared count error over the crop divided by `count_scale` (the
    training set's typical crop count, so the weight means the same on any dataset). The same
    divisor for every crop keeps it a plain least-squares count term: dividing each crop by its
    own count punished a phantom person in an empty crop far more than a missed one in a crowd
    and taught the head to undercount. Cells are weighted by their ROI share.

    The head runs on the crop plus its receptive radius of context, so that the crop's cells
    get exactly the values the whole map gives them: zero padding at a crop's edge would teach
    the head about edges that do not exist at run time (and made it undercount)."""
    _, h, w = sample.features.shape
    margin = receptive_radius(head.specs)
    r0, r1, _ = rows.indices(h)
    c0, c1, _ = cols.indices(w)
    x0, x1 = max(r0 - margin, 0), min(r1 + margin, h)
    y0, y1 = max(c0 - margin, 0), min(c1 + margin, w)
    feats = torch.from_numpy(np.asarray(sample.features[:, x0:x1, y0:y1], np.float32))[None]
    target = torch.from_numpy(np.ascontiguousarray(sample.density[rows, cols]))
    weights = torch.from_numpy(np.ascontiguousarray(sample.weights[rows, cols]))
    pred = head(feats)[0, 0, r0 - x0 : r1 - x0, c0 - y0 : c1 - y0]
    return window_loss(pred, target, weights, count_weight, block, count_scale)


def window_loss(
    pred: torch.Tensor,
    density: torch.Tensor,
    weights: torch.Tensor,
    count_weight: float,
    block: int,
    count_scale: float,
) -> torch.Tensor:
    """The loss of `sample_loss` on predicted and target cells of one window (any dtype in,
    float32 sums): squared error of the people per `block` x `block` cells plus `count_weight`
    times the window's squared count error over `count_scale`, cells weighted by ROI share."""
    diff = weights * (pred.float() - density)
    if block > 1:
        diff = block_sums(diff, block)
    count_err = diff.sum()
    loss: torch.Tensor = (diff**2).sum() + count_weight * count_err**2 / max(count_scale, 1.0)
    return loss


def train_head(
    samples: Sequence[Sample],
    initial: Mapping[str, npt.NDArray[np.generic]],
    settings: TrainSettings,
    *,
    split: str = SPLIT,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, FloatArray]:
    """Fine-tune the head (initialised from `initial`, the full state_dict or just the head's
    tensors) on `samples`; returns the head's new tensors. Deterministic for a given seed."""
    if not samples:
        raise ValueError("no training samples")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    head = CsrnetHead(head_specs(split))
    head.load_numpy(initial)
    head.train()
    optimiser = torch.optim.Adam(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    batch = max(settings.batch, 1)
    steps_per_epoch = -(-len(samples) // batch)
    # Cosine decay to zero over the run: the last steps are small, so the result does not hinge
    # on the last few pictures shown.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.epochs * steps_per_epoch)
    crop_area = settings.crop**2 if settings.crop < 1.0 else 1.0
    count_scale = float(np.mean([s.count for s in samples])) * crop_area
    for epoch in range(settings.epochs):
        total = 0.0
        order = rng.permutation(len(samples))
        for start in range(0, len(order), batch):
            optimiser.zero_grad(set_to_none=True)
            for index in order[start : start + batch]:
                sample = samples[int(index)]
                if settings.crop < 1.0:
                    rows, cols = _crop(sample, settings.crop, rng)
                else:
                    rows, cols = slice(None), slice(None)
                loss = sample_loss(
                    head, sample, rows, cols, settings.count_weight, settings.block, count_scale
                )
                (loss / batch).backward()  # type: ignore[no-untyped-call]
                total += float(loss.detach())
            optimiser.step()
            schedule.step()
        mean = total / len(samples)
        log.info("epoch %d/%d: mean loss %.4f", epoch + 1, settings.epochs, mean)
        if progress is not None:
            progress(epoch + 1, mean)
    return head.to_numpy()


def predict_maps(
    head_weights: Mapping[str, npt.NDArray[np.generic]],
    features: Sequence[npt.NDArray[np.float16]],
    *,
    split: str = SPLIT,
) -> list[FloatArray]:
    """The head's density map for each cached feature tensor (what the built ONNX outputs)."""
    head = CsrnetHead(head_specs(split))
    head.load_numpy(head_weights)
    head.eval()
    out = []
    with torch.no_grad():
        for f in features:
            pred = head(torch.from_numpy(np.asarray(f, np.float32))[None])[0, 0]
            out.append(pred.numpy().astype(np.float32))
    return out


def rescale_output(
    head_weights: Mapping[str, npt.NDArray[np.generic]],
    samples: Sequence[Sample],
    *,
    split: str = SPLIT,
) -> tuple[dict[str, FloatArray], float]:
    """Multiply the head's last layer by the least-squares factor (through the origin) that best
    turns its counts on `samples` (its own training pictures) into the true counts. A trained
    head undercounts its own training set a little (the per-cell error term shrinks uncertain
    dense areas); one scalar folded into the weights removes that without any run-time change.
    Returns the new head tensors and the factor."""
    maps = predict_maps(head_weights, [s.features for s in samples], split=split)
    predicted = np.asarray(
        [float((m.astype(np.float64) * s.weights).sum()) for m, s in zip(maps, samples, strict=True)]
    )
    true = np.asarray([s.count for s in samples], dtype=np.float64)
    factor = least_squares_factor(predicted, true)
    return scale_layer(head_weights, head_specs(split)[-1].key, factor), factor


def least_squares_factor(predicted: npt.NDArray[np.float64], true: npt.NDArray[np.float64]) -> float:
    """The factor through the origin that best turns `predicted` into `true` (1 when undefined
    or not positive)."""
    denominator = float(predicted @ predicted)
    factor = float(predicted @ true) / denominator if denominator > 0 else 1.0
    return factor if np.isfinite(factor) and factor > 0 else 1.0


def scale_layer(
    weights: Mapping[str, npt.NDArray[np.generic]], key: str, factor: float
) -> dict[str, FloatArray]:
    """A float32 copy of `weights` with layer `key` (the last: every count scales) times `factor`."""
    out = {k: np.asarray(v, dtype=np.float32).copy() for k, v in weights.items()}
    out[f"{key}.weight"] = (out[f"{key}.weight"] * np.float32(factor)).astype(np.float32)
    out[f"{key}.bias"] = (out[f"{key}.bias"] * np.float32(factor)).astype(np.float32)
    return out


def settings_of(recipe: TrainRecipe) -> TrainSettings:
    """The optimiser settings a recipe names."""
    return TrainSettings(
        epochs=recipe.epochs,
        lr=recipe.lr,
        count_weight=recipe.count_weight,
        crop=recipe.crop,
        seed=recipe.seed,
        block=recipe.block,
        batch=recipe.batch,
    )


def fit_recipe(
    samples: Sequence[Sample],
    initial: Mapping[str, npt.NDArray[np.generic]],
    recipe: TrainRecipe,
    *,
    augmented: Sequence[Sample] = (),
    progress: Callable[[int, float], None] | None = None,
) -> tuple[dict[str, FloatArray], float]:
    """Train the head as `recipe` says on `samples` and `augmented` (the same pictures at the
    recipe's `augment_scales`), then rescale it, when the recipe asks, on `samples` alone: the
    scale it runs at. The head's tensors and the rescale factor (1 without rescaling)."""
    head = train_head(
        [*samples, *augmented], initial, settings_of(recipe), split=recipe.split, progress=progress
    )
    if not recipe.rescale:
        return head, 1.0
    return rescale_output(head, samples, split=recipe.split)
