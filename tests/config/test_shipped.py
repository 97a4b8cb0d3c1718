"""The configs and docs that ship with the repo stay valid and in sync with the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crowdwatch.config.reference import config_reference
from crowdwatch.config.root import load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo.yaml", "example.yaml"])
def test_shipped_config_is_valid(name: str) -> None:
    config = load_config(REPO / "configs" / name)
    assert config.cameras
    assert any(c.level == "district" for c in config.centers)


def test_configuration_reference_is_current() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == config_reference(), (
        "docs/configuration.md is stale: run `crowdwatch config-reference > docs/configuration.md`"
    )


def test_every_field_has_a_description() -> None:
    text = config_reference()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) > 60
    empty = [row.split("|")[1].strip() for row in rows if row.rstrip().endswith("|  |")]
    assert not empty, f"fields without a description: {empty}"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crowdwatch.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_validate_config_cli_ok() -> None:
    proc = _cli("validate-config", str(REPO / "configs" / "example.yaml"))
    assert proc.returncode == 0
    assert "OK (3 camera(s), 4 zone(s), 4 center(s))" in proc.stdout


def test_validate_config_cli_lists_each_problem_without_credentials(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "cameras:\n"
        "  - id: cam 1\n"
        "    url: rtsp://admin:s3cr3t@127.0.0.1/live\n"
        "    location: {lat: 30, lon: 120}\n"
        "    zones: [{id: z, polygon: [[0, 0], [10, 0]]}]\n"
        "centers: []\n"
        "colour: blue\n"
    )
    proc = _cli("validate-config", str(bad))
    assert proc.returncode == 1
    lines = [line.strip() for line in proc.stderr.splitlines()[1:]]
    assert any(line.startswith("cameras[0].id:") for line in lines), proc.stderr
    assert any(line.startswith("cameras[0].zones[0].polygon:") for line in lines), proc.stderr
    assert any(line.startswith("centers:") for line in lines), proc.stderr
    assert "colour: unknown field (not allowed here)" in lines, proc.stderr
    assert "s3cr3t" not in proc.stdout + proc.stderr
