"""Fine-tuning every layer of CSRNet on labeled pictures, on a CUDA GPU.

`head` trains only the layers after a split, on trunk features cached once per picture, which is
what a CPU can afford (~1.8 TFLOP per 1024x768 picture forward and backward through the whole
network: ~20 min per epoch of 160 pictures on two cores, under a second on an H100 by FLOPs).
This trains the whole network, VGG front end included, from the same starting weights, on the
same density targets (`targets`) and the same loss (`head.window_loss`): its
result is a full state_dict, built into the runtime ONNX by the same builder.

A step takes `batch` random windows of `crop` of each side of a picture's map (allowed to hang
over the edges, so border cells are trained as often as the rest), runs the network on each
window plus `context` cells of real picture around it, and scores the window's cells only, so
they see (most of) what the whole picture gives them rather than zero padding: the network
reaches ~17 cells out, so the outermost cells of a window still feel the padding a little.
Windows are cut from pictures already on the device; on CUDA the network runs under bf16
autocast.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from crowdwatch.detectors.csrnet_onnx import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    STRIDE,
    ConvSpec,
    check_weights,
    csrnet_layers,
)
from crowdwatch.detectors.density import network_input
from crowdwatch.evaluation.labeled import LabeledFolder, LabeledItem
from crowdwatch.training.data import predicted_counts
from crowdwatch.training.head import CsrnetHead, least_squares_factor, scale_layer, window_loss
from crowdwatch.training.targets import make_target, map_shape

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
FRONTEND_PREFIX = "frontend."


class CsrnetNet(CsrnetHead):
    """The whole CSRNet as `csrnet_onnx.build_model` builds it: input RGB 0..255 (N, 3, H, W),
    normalised inside, output the density map (N, 1, H // 8, W // 8). A head whose layers are
    all of them, with the front end's max-pools in between."""

    def __init__(self) -> None:
        self.layers = csrnet_layers()
        super().__init__([layer for layer in self.layers if isinstance(layer, ConvSpec)])
        self.shift: torch.Tensor
        self.gain: torch.Tensor
        self.register_buffer("shift", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1) * 255.0)
        self.register_buffer("gain", 1.0 / (torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1) * 255.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.shift) * self.gain
        convs = iter(zip(self.specs, self._conv_layers(), strict=True))
        for layer in self.layers:
            if not isinstance(layer, ConvSpec):
                x = torch.nn.functional.max_pool2d(x, 2, 2)
                continue
            spec, conv = next(convs)
            x = conv(x)
            if spec.relu:
                x = torch.relu(x)
        return x

    def parameter_groups(self, lr: float, frontend_lr: float) -> list[dict[str, object]]:
        """The VGG front end at `lr * frontend_lr`, the rest at `lr`."""
        front: list[nn.Parameter] = []
        rest: list[nn.Parameter] = []
        for spec, conv in zip(self.specs, self._conv_layers(), strict=True):
            (front if spec.key.startswith(FRONTEND_PREFIX) else rest).extend(conv.parameters())
        return [{"params": front, "lr": lr * frontend_lr}, {"params": rest, "lr": lr}]

    def freeze_frontend(self) -> None:
        """No gradients for the VGG front end: backward stops at the first trained layer."""
        for spec, conv in zip(self.specs, self._conv_layers(), strict=True):
            if spec.key.startswith(FRONTEND_PREFIX):
                conv.requires_grad_(False)

    def load_numpy(self, weights: Mapping[str, npt.NDArray[np.generic]]) -> None:
        check_weights(weights)  # every tensor, exactly: a whole network is replaced
        super().load_numpy(weights)


@dataclass(frozen=True, slots=True)
class Picture:
    """One training picture as the network sees it, with its target on the map's grid."""

    rgb: npt.NDArray[np.uint8]
    """(H, W, 3) RGB, already resized by the recipe's input scale."""
    density: FloatArray
    """(H // 8, W // 8) target people per cell."""
    weights: FloatArray
    """(H // 8, W // 8) loss weight per cell (ROI share)."""
    count: float

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3:
            raise ValueError(f"picture must be (H, W, 3), got {self.rgb.shape}")
        cells = map_shape((self.rgb.shape[0], self.rgb.shape[1]), STRIDE)
        if self.density.shape != cells or self.weights.shape != cells:
            raise ValueError(
                f"a {self.rgb.shape[1]}x{self.rgb.shape[0]} picture has a {cells[1]}x{cells[0]} map, "
                f"got target {self.density.shape} and weights {self.weights.shape}"
            )


def load_picture(folder: LabeledFolder, item: LabeledItem, sigma_cells: float, scale: float) -> Picture:
    """`item` resized as the runtime resizes it (`network_input`) and its density target."""
    image = item.load_image()
    net_in, _, _ = network_input(image, None, scale)
    shape = (int(image.shape[0]), int(image.shape[1]))
    target = make_target(
        item.load_points(), shape, folder.roi, stride=STRIDE, sigma_cells=sigma_cells, scale=scale
    )
    rgb = np.ascontiguousarray(net_in[:, :, ::-1])
    return Picture(rgb, target.density, target.weights, float(target.count))


@dataclass(frozen=True, slots=True)
class FullSettings:
    epochs: int = 100
    lr: float = 1e-6
    frontend_lr: float = 1.0
    """The VGG front end's learning rate as a fraction of `lr` (0 freezes it)."""
    count_weight: float = 5.0
    block: int = 5
    crop: float = 0.5
    """Windows of this fraction of each side of the map; 1 = whole pictures."""
    context: int = 8
    """Cells of picture run through the network around a window (not scored)."""
    batch: int = 8
    flip: bool = True
    """Mirror half of the windows left-right (with their targets)."""
    warmup: int = 5
    """Epochs over which the learning rate rises linearly from zero. Adam's first steps move
    every weight by about `lr` whatever its gradient: on the catalog CSRNet one step at 1e-5 took
    the counts of SHT-B pictures down by 60 %, at 1e-6 by 8 %; rising slowly lets its moment
    estimates settle."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch < 1 or self.block < 1 or self.context < 0 or self.warmup < 0:
            raise ValueError("epochs, batch and block must be at least 1, context and warmup at least 0")
        if not 0 < self.crop <= 1:
            raise ValueError(f"crop must be in (0, 1], got {self.crop}")
        if self.lr <= 0 or self.frontend_lr < 0:
            raise ValueError("lr must be positive and frontend_lr not negative")


@dataclass(frozen=True, slots=True)
class Window:
    """Where one training window lies, in map cells of its picture."""

    region: tuple[int, int, int, int]
    """(top, left, height, width) of what the network sees (window plus context)."""
    scored: tuple[int, int, int, int]
    """(top, left, height, width) of the scored cells, inside the region."""


def choose_window(cells: tuple[int, int], crop: float, context: int, rng: np.random.Generator) -> Window:
    """A random window of `crop` of each side of a (h, w)-cell map, allowed to hang over the
    edges (then cut to the map), and a region of a fixed size for the map (window + `context`
    each side, capped to the map) that holds it, shifted inside the map at the borders."""
    h, w = cells
    out: list[tuple[int, int, int, int]] = []
    for side in (h, w):
        size = max(round(side * crop), 1)
        start = int(rng.integers(-(size - 1), side)) if crop < 1 else 0
        lo, hi = max(start, 0), min(start + size, side)
        region = min(size + 2 * context, side)
        r0 = min(max(lo - context, 0), side - region)
        out.append((lo, hi, r0, region))
    (top, bottom, r_top, r_h), (left, right, r_left, r_w) = out
    return Window(region=(r_top, r_left, r_h, r_w), scored=(top, left, bottom - top, right - left))


class _OnDevice:
    """A picture's tensors, moved to the device once."""

    def __init__(self, picture: Picture, device: torch.device) -> None:
        self.rgb = torch.from_numpy(picture.rgb).to(device).permute(2, 0, 1)  # (3, H, W) uint8
        self.density = torch.from_numpy(picture.density).to(device)
        self.weights = torch.from_numpy(picture.weights).to(device)
        self.cells = (int(picture.density.shape[0]), int(picture.density.shape[1]))


def lr_factor(steps: int, warmup: int) -> Callable[[int], float]:
    """The learning rate's factor at each step: a linear rise over `warmup` steps, then a cosine
    decay to zero at `steps` (the last steps are small, so the result does not hinge on the last
    few windows shown)."""

    def factor(step: int) -> float:
        rise = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        return rise * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))

    return factor


def train_full(
    pictures: Sequence[Picture],
    initial: Mapping[str, npt.NDArray[np.generic]],
    settings: FullSettings,
    *,
    device: str = "cuda",
    progress: Callable[[int, float], None] | None = None,
    snapshot: Callable[[int, dict[str, FloatArray]], None] | None = None,
    snapshot_every: int = 0,
) -> dict[str, FloatArray]:
    """Fine-tune every layer of CSRNet, starting from `initial` (a full state_dict), on
    `pictures`; returns the new state_dict. Seeded: the windows and their order depend on the
    seed alone; GPU kernels are not bitwise deterministic, so repeated runs differ slightly.
    `snapshot(epoch, state_dict)` is called every `snapshot_every` epochs (0: never)."""
    if not pictures:
        raise ValueError("no training pictures")
    dev = torch.device(device)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    net = CsrnetNet().to(dev)
    net.load_numpy(initial)
    net.train()
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # windows of one dataset share a few shapes
        net = net.to(memory_format=torch.channels_last)
    if settings.frontend_lr == 0:
        net.freeze_frontend()
    groups = [g for g in net.parameter_groups(settings.lr, settings.frontend_lr) if g["lr"]]
    optimiser = torch.optim.Adam(groups, lr=settings.lr)
    steps_per_epoch = math.ceil(len(pictures) / settings.batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lr_factor(settings.epochs * steps_per_epoch, settings.warmup * steps_per_epoch)
    )
    on_device = [_OnDevice(p, dev) for p in pictures]
    crop_area = settings.crop**2 if settings.crop < 1.0 else 1.0
    count_scale = float(np.mean([p.count for p in pictures])) * crop_area
    for epoch in range(settings.epochs):
        # Summed on the device and read once an epoch: reading it every step would make the CPU
        # wait for the GPU before queueing the next step.
        total = torch.zeros((), device=dev)
        order = rng.permutation(len(pictures))
        for start in range(0, len(order), settings.batch):
            chosen = [on_device[int(i)] for i in order[start : start + settings.batch]]
            windows = [choose_window(p.cells, settings.crop, settings.context, rng) for p in chosen]
            flips = rng.random(len(chosen)) < 0.5 if settings.flip else np.zeros(len(chosen), bool)
            optimiser.zero_grad(set_to_none=True)
            loss = _batch_loss(net, chosen, windows, flips, settings, count_scale, dev.type == "cuda")
            (loss / len(chosen)).backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            total += loss.detach().float()
        mean = float(total) / len(pictures)
        log.info("epoch %d/%d: mean loss %.4f", epoch + 1, settings.epochs, mean)
        if progress is not None:
            progress(epoch + 1, mean)
        if snapshot is not None and snapshot_every > 0 and (epoch + 1) % snapshot_every == 0:
            net.eval()
            snapshot(epoch + 1, net.to_numpy())
            net.train()
    return net.to_numpy()


def _batch_loss(
    net: CsrnetNet,
    chosen: Sequence[_OnDevice],
    windows: Sequence[Window],
    flips: npt.NDArray[np.bool_],
    settings: FullSettings,
    count_scale: float,
    bf16: bool,
) -> torch.Tensor:
    """Summed loss of the windows; windows of the same region size run through the network together."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, window in enumerate(windows):
        by_size.setdefault((window.region[2], window.region[3]), []).append(i)
    total: torch.Tensor | None = None
    for indices in by_size.values():
        crops = []
        for i in indices:
            top, left, h, w = windows[i].region
            crop = chosen[i].rgb[:, top * STRIDE : (top + h) * STRIDE, left * STRIDE : (left + w) * STRIDE]
            crops.append(crop.flip(-1) if flips[i] else crop)
        batch = torch.stack(crops).float().contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=batch.device.type, dtype=torch.bfloat16, enabled=bf16):
            maps = net(batch)[:, 0]
        for k, i in enumerate(indices):
            r_top, r_left, r_h, r_w = windows[i].region
            s_top, s_left, s_h, s_w = windows[i].scored
            density = chosen[i].density[r_top : r_top + r_h, r_left : r_left + r_w]
            weights = chosen[i].weights[r_top : r_top + r_h, r_left : r_left + r_w]
            pred = maps[k]
            if flips[i]:  # mirror the targets with the picture, then cut the scored cells
                density, weights = density.flip(-1), weights.flip(-1)
                s_left = r_w - (s_left - r_left) - s_w + r_left
            rows = slice(s_top - r_top, s_top - r_top + s_h)
            cols = slice(s_left - r_left, s_left - r_left + s_w)
            loss = window_loss(
                pred[rows, cols],
                density[rows, cols],
                weights[rows, cols],
                settings.count_weight,
                settings.block,
                count_scale,
            )
            total = loss if total is None else total + loss
    assert total is not None
    return total


def predict_maps_full(
    weights: Mapping[str, npt.NDArray[np.generic]], pictures: Sequence[Picture], *, device: str = "cpu"
) -> list[FloatArray]:
    """The whole network's map of each picture, in float32 (what the built ONNX outputs)."""
    dev = torch.device(device)
    net = CsrnetNet().to(dev)
    net.load_numpy(weights)
    net.eval()
    out = []
    with torch.no_grad():
        for p in pictures:
            rgb = torch.from_numpy(p.rgb).to(dev).permute(2, 0, 1)[None].float()
            out.append(net(rgb)[0, 0].float().cpu().numpy().astype(np.float32))
    return out


def rescale_full(
    weights: Mapping[str, npt.NDArray[np.generic]], pictures: Sequence[Picture], *, device: str = "cpu"
) -> tuple[dict[str, FloatArray], float]:
    """`weights` with the output layer times the least-squares factor of their counts on
    `pictures` (the training pictures, as the head recipes' `rescale` does), and the factor."""
    predicted = predicted_counts(predict_maps_full(weights, pictures, device=device), pictures)
    true = np.asarray([p.count for p in pictures], dtype=np.float64)
    factor = least_squares_factor(predicted, true)
    return scale_layer(weights, "output_layer", factor), factor
