"""Labeled folders: `index.json` + `images/` + `annotations/<name>.json` with head points, as in
the project's research data (see the data folder's README.md).

Points are pixel coordinates counted from 1 (MATLAB convention). An optional `roi_mask.png`
marks where people were annotated: only heads inside it count, and predictions must be
restricted to it too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

DATA_DIR_ENV = "CROWDWATCH_DATA_DIR"
ROI_MASK = "roi_mask.png"


def default_data_dir() -> Path:
    """$CROWDWATCH_DATA_DIR, else `../shared/data` beside the repository root (the research
    data never lives inside the repository)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    repo_root = Path(__file__).resolve().parents[3]
    return repo_root.parent / "shared" / "data"


@dataclass(frozen=True, slots=True)
class LabeledItem:
    name: str
    """Image file stem, e.g. `seq_000281` or `IMG_12`."""
    image_path: Path
    annotation_path: Path
    count: int
    """The dataset's count for the whole image (before any ROI)."""

    @property
    def frame_number(self) -> int | None:
        """The trailing number of the name (Mall: frame 1..800), else None."""
        digits = ""
        for ch in reversed(self.name):
            if not ch.isdigit():
                break
            digits = ch + digits
        return int(digits) if digits else None

    def load_image(self) -> npt.NDArray[np.uint8]:
        """BGR uint8 H×W×3; greyscale files (UCF_CC_50) are expanded to three channels, as the
        network expects colour input."""
        image = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read image {self.image_path}")
        return np.asarray(image, dtype=np.uint8)

    def load_points(self) -> npt.NDArray[np.float64]:
        """(N, 2) head points in 0-based continuous pixel coordinates (x, y)."""
        data = json.loads(self.annotation_path.read_text())
        pts = np.asarray(data.get("points", []), dtype=np.float64).reshape(-1, 2)
        return pts - 1.0  # MATLAB's pixel 1 is our pixel 0


@dataclass(frozen=True, slots=True)
class LabeledFolder:
    root: Path
    items: tuple[LabeledItem, ...]
    dataset: str
    roi: npt.NDArray[np.bool_] | None
    """Boolean image-size mask of the annotated region, when the folder has one."""

    def true_count(self, item: LabeledItem) -> int:
        """Heads inside the ROI (all heads when there is none)."""
        points = item.load_points()
        if self.roi is None:
            return len(points)
        return int(np.count_nonzero(points_in_mask(points, self.roi)))

    def select(self, frames: Sequence[int] | None = None, limit: int | None = None) -> list[LabeledItem]:
        """Items whose frame number is in `frames` (all when None), first `limit` of them."""
        chosen = list(self.items)
        if frames is not None:
            wanted = set(frames)
            chosen = [it for it in chosen if it.frame_number in wanted]
        return chosen[:limit] if limit is not None else chosen

    def __iter__(self) -> Iterator[LabeledItem]:
        return iter(self.items)


def points_in_mask(points: npt.NDArray[np.float64], mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Which 0-based points fall on a True pixel (points outside the image are outside)."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    h, w = mask.shape
    # Pixel i covers [i - 0.5, i + 0.5) around its integer centre.
    cols = np.floor(points[:, 0] + 0.5).astype(np.int64)
    rows = np.floor(points[:, 1] + 0.5).astype(np.int64)
    ok = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    inside = np.zeros(len(points), dtype=bool)
    inside[ok] = mask[rows[ok], cols[ok]]
    return inside


def open_folder(root: Path) -> LabeledFolder:
    index_path = root / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{root} is not a labeled folder: no index.json")
    index = json.loads(index_path.read_text())
    items = tuple(
        LabeledItem(
            name=Path(entry["image"]).stem,
            image_path=root / entry["image"],
            annotation_path=root / entry["annotation"],
            count=int(entry["count"]),
        )
        for entry in index["items"]
    )
    roi = None
    if (root / ROI_MASK).is_file():
        raw = cv2.imread(str(root / ROI_MASK), cv2.IMREAD_GRAYSCALE)
        if raw is None:
            raise OSError(f"cannot read {root / ROI_MASK}")
        roi = np.asarray(raw) > 0
    dataset = str(index.get("meta", {}).get("dataset", root.name))
    return LabeledFolder(root=root, items=items, dataset=dataset, roi=roi)


def parse_ranges(spec: str) -> list[int]:
    """`1-279,441-800` -> [1, ..., 279, 441, ..., 800] (inclusive ranges, single numbers ok)."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        start, end = int(lo), int(hi) if sep else int(lo)
        if end < start:
            raise ValueError(f"range {part!r} ends before it starts")
        out.extend(range(start, end + 1))
    return out
