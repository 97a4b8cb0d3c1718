"""Carry CSRNet's starting weights to a GPU machine that cannot fetch them, within the device
tool's 64 MiB per call: float16, the high and low bytes of all tensors in two planes, xz.
The catalog's 60 MB npz becomes ~27.5 MB (a plain compressed fp16 npz is 30 MB, which with the
repository and ShanghaiTech B's 30 MB of pictures is over the limit).

    python scripts/gpu_weights.py pack ~/.cache/crowdwatch/models/csrnet-density/weights.zip.npz \
        .gpu/csrnet16.xz
    python3 scripts/gpu_weights.py unpack .gpu/csrnet16.xz /tmp/csrnet.npz     # on the GPU machine

Rounding to float16 moves the weights by a relative 5e-4 at most; the catalog's counts move
by far less than a person, and a fine-tuning run starts from (and reports) the rounded ones.
"""

from __future__ import annotations

import json
import lzma
import sys
from pathlib import Path

import numpy as np


def pack(src: Path, dst: Path) -> None:
    with np.load(src, allow_pickle=False) as archive:
        tensors = {k: np.asarray(archive[k], dtype=np.float16) for k in archive.files}
    header = json.dumps({k: list(v.shape) for k, v in tensors.items()}).encode()
    raw = np.frombuffer(b"".join(v.tobytes() for v in tensors.values()), dtype=np.uint8).reshape(-1, 2)
    body = raw[:, 1].tobytes() + raw[:, 0].tobytes()  # exponents together compress far better
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(len(header).to_bytes(8, "little") + header + lzma.compress(body, preset=9))


def unpack(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    size = int.from_bytes(data[:8], "little")
    shapes = json.loads(data[8 : 8 + size])
    body = np.frombuffer(lzma.decompress(data[8 + size :]), dtype=np.uint8)
    half = body.size // 2
    values = np.empty((half, 2), dtype=np.uint8)
    values[:, 1], values[:, 0] = body[:half], body[half:]
    flat = values.reshape(-1).view(np.float16)
    out, offset = {}, 0
    for key, shape in shapes.items():
        n = int(np.prod(shape))
        out[key] = flat[offset : offset + n].reshape(shape).astype(np.float32)
        offset += n
    if offset != flat.size:
        raise SystemExit(f"{src}: {flat.size - offset} values left over: not a file this script packed")
    np.savez(dst, **out)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        raise SystemExit("usage: gpu_weights.py pack|unpack SRC DST")
    (pack if sys.argv[1] == "pack" else unpack)(Path(sys.argv[2]), Path(sys.argv[3]))
