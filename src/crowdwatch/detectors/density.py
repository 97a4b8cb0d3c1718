"""Crowd density estimators: a picture in, a `DensityMap` out (its sum is the head count).

For dense crowds, where a person detector sees only the nearest heads, a counting network
estimates how many people are in each small cell instead of finding each one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from crowdwatch.core.density import DensityMap
from crowdwatch.detectors.base import DetectorClosedError, check_image
from crowdwatch.detectors.csrnet_onnx import INPUT_NAME, META_INPUT_SCALE, STRIDE

CSRNET_NAME = "csrnet-density"
CPU = "CPUExecutionProvider"


class DensityEstimator(Protocol):
    name: str
    """Model name reported in events."""

    def estimate(self, image: npt.NDArray[np.uint8]) -> DensityMap:
        """Density map of `image` (BGR uint8, H×W×3); its scale maps cells to `image` pixels."""
        ...

    def close(self) -> None:
        """Release the model; `estimate` fails afterwards."""
        ...


def _session_options(threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # 0 = ONNX Runtime's default: one per physical core
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # CSRNet is one chain of convolutions: an inter-op pool would only compete for the cores.
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return opts


def resize_factor(height: int, width: int, max_side: int | None) -> float:
    """Scale (<= 1) that brings the longer side down to `max_side`; 1 when no limit applies."""
    longest = max(height, width)
    if max_side is None or longest <= max_side:
        return 1.0
    return max_side / longest


def network_input(
    image: npt.NDArray[np.uint8], max_side: int | None, input_scale: float
) -> tuple[npt.NDArray[np.uint8], float, float]:
    """The picture as the network takes it (shrunk to `max_side`, then resized by the model's
    input scale) and the x and y factors from `image` to it. Checks the picture first."""
    check_image(image)
    h, w = image.shape[:2]
    if min(h, w) < STRIDE:
        raise ValueError(f"image {w}x{h} is smaller than one density cell ({STRIDE} px)")
    factor = resize_factor(h, w, max_side) * input_scale
    if factor == 1.0:
        return image, 1.0, 1.0
    nw, nh = max(round(w * factor), STRIDE), max(round(h * factor), STRIDE)
    # INTER_AREA: the right filter for shrinking (no aliasing of fine crowd texture);
    # cubic for enlarging, as the trained models' features were computed.
    interpolation = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_CUBIC
    resized = np.asarray(cv2.resize(image, (nw, nh), interpolation=interpolation), np.uint8)
    return resized, nw / w, nh / h


class CsrnetOnnxEstimator:
    """CSRNet built by `csrnet_onnx` run with ONNX Runtime on CPU.

    `max_side` shrinks large pictures before the network (cost grows with the pixel count).
    The map then has fewer cells, each covering more image pixels; its sum is still the
    count, so nothing needs re-scaling. The network was trained at the datasets' native
    resolutions, so shrinking makes people smaller than it learnt: measure before relying on it
    (benchmarks/accuracy.py --max-side)."""

    def __init__(
        self,
        model_path: Path,
        *,
        name: str = CSRNET_NAME,
        threads: int = 0,
        max_side: int | None = None,
        providers: Sequence[str] = (CPU,),
    ) -> None:
        if max_side is not None and max_side < STRIDE:
            raise ValueError(f"max_side must be at least {STRIDE} pixels, got {max_side}")
        self.name = name
        self.max_side = max_side
        self._session: ort.InferenceSession | None = ort.InferenceSession(
            str(model_path), sess_options=_session_options(threads), providers=list(providers)
        )
        self._output_name: str = self._session.get_outputs()[0].name
        props = self._session.get_modelmeta().custom_metadata_map
        self.input_scale = float(props.get(META_INPUT_SCALE, "1"))
        """Models trained at another resolution (e.g. 1.5x, so that far-away people are big
        enough) carry their scale; every frame is resized by it before the network."""
        if not 0 < self.input_scale <= 4:
            raise ValueError(f"{model_path}: input scale {self.input_scale} outside (0, 4]")

    def estimate(self, image: npt.NDArray[np.uint8]) -> DensityMap:
        if self._session is None:
            raise DetectorClosedError(f"density estimator {self.name} is closed")
        net_in, fx, fy = network_input(image, self.max_side, self.input_scale)
        # BGR HWC uint8 -> RGB NCHW float32 0..255; the graph normalises (ImageNet mean/std).
        blob = np.ascontiguousarray(net_in[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
        out = self._session.run([self._output_name], {INPUT_NAME: blob})[0]
        values = np.asarray(out, dtype=np.float32)[0, 0]
        h, w = image.shape[:2]
        return DensityMap(values=values, scale=(STRIDE / fx, STRIDE / fy), image_shape=(h, w))

    def close(self) -> None:
        self._session = None
