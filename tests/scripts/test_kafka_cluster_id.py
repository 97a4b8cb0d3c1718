"""scripts/kafka_cluster_id.py: the id `scripts/services` formats Kafka's storage with."""

from __future__ import annotations

import base64
import importlib.util
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka_cluster_id.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kafka_cluster_id", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def draws(*first_bytes: int) -> Callable[[int], bytes]:
    """A random source whose successive 16-byte draws start with `first_bytes`."""
    it: Iterator[int] = iter(first_bytes)
    return lambda n: bytes([next(it)]) + bytes(n - 1)


@pytest.mark.parametrize(
    ("first_bytes", "expected_first_char"),
    [
        ((0x00,), "A"),
        ((0xF4,), "9"),  # base64url 61: the last character before '-'
        ((0xF8, 0x00), "A"),  # '-' first (62): drawn again
        ((0xFB, 0xF9, 0xFC), "_"),  # two ids starting with '-', then '_' (63) is fine
    ],
)
def test_an_id_never_starts_with_a_dash(first_bytes: tuple[int, ...], expected_first_char: str) -> None:
    text = load().cluster_id(draws(*first_bytes))
    assert text[0] == expected_first_char
    assert len(text) == 22  # 16 bytes, no padding: Kafka's form
    assert base64.urlsafe_b64decode(text + "==")[1:] == bytes(15)


def test_the_script_prints_one_id() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 1
    assert len(lines[0]) == 22
    assert not lines[0].startswith("-")
