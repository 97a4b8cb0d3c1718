"""The frozen CSRNet trunk, run once per training picture, its features cached on disk.

Training only the last layers of CSRNet needs the output of the layers before them for every
picture; computing that is ~95 % of the network's cost, so it is done once with ONNX Runtime
(exactly as the product runs the network) and kept as fp16 `.npy` files under
`$CROWDWATCH_FEATURES_DIR` (default `~/.cache/crowdwatch/features`), keyed by the trunk (the
weights' sha256, the builder version, the split layer) and by the picture's own sha256. The
cache never lives in the repository: the pictures come from research-only data.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from crowdwatch.detectors.csrnet_onnx import (
    BUILDER_VERSION,
    FEATURES_NAME,
    INPUT_NAME,
    build_model,
    load_weights,
)

FEATURES_DIR_ENV = "CROWDWATCH_FEATURES_DIR"
SPLIT = "backend.6"
"""The last frozen layer: its 256-channel output feeds the trained 256 -> 128 -> 64 -> 1 head."""


def default_features_dir() -> Path:
    env = os.environ.get(FEATURES_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "crowdwatch" / "features"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def to_blob(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """BGR HWC uint8 -> RGB NCHW float32 0..255, as `CsrnetOnnxEstimator` feeds the network."""
    return np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)


class TrunkFeatures:
    """CSRNet's frozen layers up to `split`, with a disk cache of their output per picture."""

    def __init__(
        self,
        weights_npz: Path,
        cache_dir: Path | None = None,
        *,
        split: str = SPLIT,
        threads: int = 0,
        scale: float = 1.0,
    ) -> None:
        if not 0 < scale <= 4:
            raise ValueError(f"scale must be in (0, 4], got {scale}")
        self.weights_npz = weights_npz
        self.split = split
        self.scale = scale
        self.weights_sha256 = file_sha256(weights_npz)
        suffix = "" if scale == 1.0 else f"-x{scale:g}"
        self.key = f"csrnet-{self.weights_sha256[:16]}-b{BUILDER_VERSION}-{split}{suffix}"
        self.cache_dir = (cache_dir or default_features_dir()) / self.key
        self._threads = threads
        self._session: ort.InferenceSession | None = None

    def at_scale(self, scale: float) -> TrunkFeatures:
        """The same trunk (weights, cache root, split, threads) seeing pictures at `scale`."""
        return TrunkFeatures(
            self.weights_npz, self.cache_dir.parent, split=self.split, threads=self._threads, scale=scale
        )

    def _run(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        if self._session is None:  # built on the first cache miss only
            model = build_model(load_weights(self.weights_npz), until=self.split)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self._threads
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Idle threads sleep: training (torch) runs in the same process right after.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = ort.InferenceSession(
                model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        if self.scale != 1.0:
            import cv2

            h, w = image.shape[:2]
            size = (round(w * self.scale), round(h * self.scale))
            filt = cv2.INTER_CUBIC if self.scale > 1 else cv2.INTER_AREA
            image = np.asarray(cv2.resize(image, size, interpolation=filt), dtype=np.uint8)
        out = self._session.run([FEATURES_NAME], {INPUT_NAME: to_blob(image)})[0]
        feats: npt.NDArray[np.float32] = np.asarray(out, dtype=np.float32)[0]
        return feats

    def cached_path(self, image_path: Path) -> Path:
        return self.cache_dir / f"{file_sha256(image_path)[:32]}.npy"

    def features(
        self, image_path: Path, image: npt.NDArray[np.uint8] | None = None
    ) -> npt.NDArray[np.float16]:
        """(C, h, w) fp16 features of the picture at `image_path` (decoded with `image` when the
        caller has it already), from the cache when there, else computed and stored."""
        target = self.cached_path(image_path)
        if target.is_file():
            try:
                return np.asarray(np.load(target, allow_pickle=False), dtype=np.float16)
            except (OSError, ValueError):  # a damaged cache file is simply recomputed
                target.unlink(missing_ok=True)
        if image is None:
            import cv2

            loaded = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            if loaded is None:
                raise OSError(f"cannot read image {image_path}")
            image = np.asarray(loaded, dtype=np.uint8)
        feats = self._run(image).astype(np.float16)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, feats, allow_pickle=False)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return feats

    def close(self) -> None:
        self._session = None
