"""CSRNet on PyTorch, for workers with a CUDA GPU: the network and weights of a CSRNet ONNX
model (catalog or trained here, read from its initializers) run on the GPU, in half precision
by default. ONNX Runtime on a CPU takes about a second per Mall frame; a GPU takes
milliseconds, so density can run on every sampled frame of many cameras.

PyTorch comes with the `ultralytics` extra and is imported only when this estimator is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from crowdwatch.core.density import DensityMap
from crowdwatch.detectors.base import DetectorClosedError, DetectorUnavailableError
from crowdwatch.detectors.csrnet_onnx import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    STRIDE,
    ConvSpec,
    check_weights,
    csrnet_layers,
    read_model,
)
from crowdwatch.detectors.density import CSRNET_NAME, network_input

Image = npt.NDArray[np.uint8]


def import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise DetectorUnavailableError(
            "density on a GPU runs on PyTorch: install `crowdwatch[ultralytics]`, or set "
            "counting.density.device: cpu (ONNX Runtime)"
        ) from exc
    return torch


def cuda_available() -> bool:
    """Whether PyTorch is installed and sees a CUDA GPU (False without PyTorch: never raises)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    return bool(import_torch().cuda.is_available())


class CsrnetTorchEstimator:
    """A `DensityEstimator` running CSRNet with PyTorch on `device` ("cuda", "cuda:N" or "cpu").

    `half` runs the convolutions in float16 on CUDA (ignored on CPU); maps come back as
    float32 and are summed in float32. Same preprocessing as `CsrnetOnnxEstimator`
    (`network_input`), so both give the same map for the same model."""

    def __init__(
        self,
        weights: Mapping[str, npt.NDArray[np.float32]],
        *,
        device: str,
        half: bool = True,
        name: str = CSRNET_NAME,
        input_scale: float = 1.0,
        max_side: int | None = None,
    ) -> None:
        check_weights(weights)
        if max_side is not None and max_side < STRIDE:
            raise ValueError(f"max_side must be at least {STRIDE} pixels, got {max_side}")
        torch = import_torch()
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise DetectorUnavailableError(
                f"density device '{device}' was asked for but PyTorch sees no CUDA GPU"
            )
        self._torch = torch
        self.name = name
        self.max_side = max_side
        self.input_scale = input_scale
        self.device = device
        self.half = half and device.startswith("cuda")
        self._dtype = torch.float16 if self.half else torch.float32
        if device.startswith("cuda"):
            # Frames of one camera keep their size, so cuDNN's per-shape algorithm search pays off.
            torch.backends.cudnn.benchmark = True
        self._layers: list[tuple[Any, Any, int, bool] | None] | None = []
        for layer in csrnet_layers():
            if not isinstance(layer, ConvSpec):
                self._layers.append(None)  # 2x2 max-pool
                continue
            w = torch.tensor(np.asarray(weights[f"{layer.key}.weight"], np.float32))  # a copy
            b = torch.tensor(np.asarray(weights[f"{layer.key}.bias"], np.float32))
            w = w.to(device=device, dtype=self._dtype).contiguous(memory_format=torch.channels_last)
            self._layers.append((w, b.to(device=device, dtype=self._dtype), layer.dilation, layer.relu))
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).reshape(1, 3, 1, 1) * 255.0
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32).reshape(1, 3, 1, 1) * 255.0
        self._shift = mean.to(device)
        self._gain = (1.0 / std).to(device)

    @classmethod
    def from_onnx(
        cls,
        model_path: Path,
        *,
        device: str,
        half: bool = True,
        name: str = CSRNET_NAME,
        max_side: int | None = None,
    ) -> CsrnetTorchEstimator:
        """The model in a CSRNet ONNX file (as `csrnet_onnx.build_model` writes them)."""
        weights, input_scale = read_model(model_path)
        return cls(weights, device=device, half=half, name=name, input_scale=input_scale, max_side=max_side)

    def estimate(self, image: Image) -> DensityMap:
        return self.estimate_batch([image])[0]

    def estimate_batch(self, images: Sequence[Image]) -> list[DensityMap]:
        """Maps of several pictures; pictures of one size go through the network together."""
        prepared = [network_input(image, self.max_side, self.input_scale) for image in images]
        out: list[DensityMap | None] = [None] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, (net_in, _, _) in enumerate(prepared):
            by_shape.setdefault(net_in.shape, []).append(i)
        for indices in by_shape.values():
            maps = self._forward(np.stack([prepared[i][0] for i in indices]))
            for i, values in zip(indices, maps, strict=True):
                _, fx, fy = prepared[i]
                h, w = images[i].shape[:2]
                out[i] = DensityMap(values=values, scale=(STRIDE / fx, STRIDE / fy), image_shape=(h, w))
        return [m for m in out if m is not None]

    def _forward(self, batch: npt.NDArray[np.uint8]) -> list[npt.NDArray[np.float32]]:
        """N x H x W x 3 BGR uint8 -> N maps (float32), as the ONNX graph computes them."""
        if self._layers is None:
            raise DetectorClosedError(f"density estimator {self.name} is closed")
        torch = self._torch
        f = torch.nn.functional
        with torch.inference_mode():
            # uint8 crosses to the GPU (a quarter of float32's bytes); BGR -> RGB, NCHW there.
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
            x = x.flip(-1).permute(0, 3, 1, 2).float()
            x = ((x - self._shift) * self._gain).to(self._dtype).contiguous(memory_format=torch.channels_last)
            for layer in self._layers:
                if layer is None:
                    x = f.max_pool2d(x, 2, 2)
                    continue
                w, b, dilation, relu = layer
                x = f.conv2d(x, w, b, padding=dilation * (w.shape[-1] // 2), dilation=dilation)
                if relu:
                    x = f.relu(x, inplace=True)
            maps = x[:, 0].float().cpu().numpy()
        return [np.ascontiguousarray(m, dtype=np.float32) for m in maps]

    def close(self) -> None:
        self._layers = None
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()
