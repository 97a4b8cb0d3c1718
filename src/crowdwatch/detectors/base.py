"""The one interface every person detector backend implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from crowdwatch.core.types import Detections

PERSON_CLASS_ID = 0
"""Every backend reports persons as class 0, whatever the model's own class ids are."""


class DetectorClosedError(RuntimeError):
    """`detect` was called after `close`."""


class DetectorUnavailableError(RuntimeError):
    """A backend's library is not installed, or its model cannot be obtained."""


class Detector(Protocol):
    name: str
    """Model name reported in events (a catalog name, a file name or a stock name)."""

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        """Person boxes in `image` (BGR uint8, H×W×3) in its own pixel coordinates, all with
        class id `PERSON_CLASS_ID`; boxes of other classes are dropped."""
        ...

    def close(self) -> None:
        """Release the model; `detect` fails afterwards."""
        ...


def check_image(image: npt.NDArray[np.uint8]) -> None:
    """Fail early with a clear message rather than deep inside a runtime."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"detectors take BGR uint8 H×W×3 images, got dtype {image.dtype} shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
