"""What an SSD detector needs around its network: input size and resize rule, anchor grid, box
coder scale factors, score function and NMS settings. Read from the TF graph when the ONNX file
is built (see ssd_graph.py) and stored as JSON in the ONNX file's metadata, so the runtime needs
neither TensorFlow nor the original graph."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

ScoreFn = Literal["sigmoid", "softmax"]

METADATA_KEY = "crowdwatch.ssd_config"
"""ONNX metadata_props key holding `SsdConfig.to_json()`."""


class SsdConfigError(ValueError):
    """Stored SSD settings are missing or malformed."""


@dataclass(frozen=True, slots=True)
class AnchorLayer:
    """Anchors of one feature map, TF Object Detection API style (normalised coordinates): at
    each cell, one box per (scale, aspect ratio) pair."""

    grid: tuple[int, int]
    """Feature map (rows, cols)."""
    scales: tuple[float, ...]
    aspect_ratios: tuple[float, ...]
    """Width / height, one per scale."""
    stride: tuple[float, float]
    """Distance between cell centres (y, x), in units of the image size."""
    offset: tuple[float, float]
    """Centre of the first cell (y, x)."""

    def __post_init__(self) -> None:
        if len(self.scales) != len(self.aspect_ratios) or not self.scales:
            raise SsdConfigError(f"{len(self.scales)} scales for {len(self.aspect_ratios)} aspect ratios")
        if min(self.grid) < 1:
            raise SsdConfigError(f"empty anchor grid {self.grid}")

    @property
    def per_cell(self) -> int:
        return len(self.scales)

    @property
    def count(self) -> int:
        return self.grid[0] * self.grid[1] * self.per_cell


@dataclass(frozen=True, slots=True)
class SsdConfig:
    input_size: tuple[int, int]
    """Network input (height, width): the image is stretched to it (no letterbox)."""
    align_corners: bool
    half_pixel_centers: bool
    """The graph's ResizeBilinear flags (TF1 graphs use neither)."""
    base_anchor_size: tuple[float, float]
    layers: tuple[AnchorLayer, ...]
    scale_factors: tuple[float, float, float, float]
    """Box coder divisors for (ty, tx, th, tw)."""
    score_fn: ScoreFn
    logit_scale: float
    """Logits are divided by this before the score function."""
    class_offset: int
    """Leading score columns to drop (1 when the model predicts a background class)."""
    iou_threshold: float
    score_threshold: float
    max_per_class: int

    @property
    def num_anchors(self) -> int:
        return sum(layer.count for layer in self.layers)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SsdConfig:
        try:
            raw = json.loads(text)
            layers = tuple(
                AnchorLayer(
                    grid=_pair_int(layer["grid"]),
                    scales=tuple(float(s) for s in layer["scales"]),
                    aspect_ratios=tuple(float(a) for a in layer["aspect_ratios"]),
                    stride=_pair(layer["stride"]),
                    offset=_pair(layer["offset"]),
                )
                for layer in raw["layers"]
            )
            factors = tuple(float(f) for f in raw["scale_factors"])
            if len(factors) != 4:
                raise SsdConfigError(f"expected 4 scale factors, got {factors}")
            score_fn = raw["score_fn"]
            if score_fn not in ("sigmoid", "softmax"):
                raise SsdConfigError(f"unknown score function {score_fn!r}")
            return cls(
                input_size=_pair_int(raw["input_size"]),
                align_corners=bool(raw["align_corners"]),
                half_pixel_centers=bool(raw["half_pixel_centers"]),
                base_anchor_size=_pair(raw["base_anchor_size"]),
                layers=layers,
                scale_factors=(factors[0], factors[1], factors[2], factors[3]),
                score_fn=score_fn,
                logit_scale=float(raw["logit_scale"]),
                class_offset=int(raw["class_offset"]),
                iou_threshold=float(raw["iou_threshold"]),
                score_threshold=float(raw["score_threshold"]),
                max_per_class=int(raw["max_per_class"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SsdConfigError):
                raise
            raise SsdConfigError(f"malformed SSD settings: {exc!r}") from exc


def _pair(value: object) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise SsdConfigError(f"expected a pair, got {value!r}")
    return float(value[0]), float(value[1])


def _pair_int(value: object) -> tuple[int, int]:
    a, b = _pair(value)
    return int(a), int(b)
