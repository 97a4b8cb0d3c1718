"""A tiny protobuf writer for hand-built TensorFlow GraphDefs in tests (field numbers from
tensorflow/core/framework/*.proto), so the decoder is checked against bytes laid out the way
protobuf lays them out, packed and unpacked, without TensorFlow."""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

DT_FLOAT, DT_INT32 = 1, 3


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 -> two's complement, 10 bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def f_varint(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def f_bytes(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


def f_float(number: int, value: float) -> bytes:
    return key(number, 5) + struct.pack("<f", value)


def shape(dims: tuple[int, ...]) -> bytes:
    return b"".join(f_bytes(2, f_varint(1, d)) for d in dims)


def tensor_content(array: npt.NDArray[np.generic], dtype: int) -> bytes:
    """TensorProto with the raw little-endian bytes in tensor_content (how big constants come)."""
    return (
        f_varint(1, dtype)
        + f_bytes(2, shape(array.shape))
        + f_bytes(4, np.ascontiguousarray(array).tobytes())
    )


def tensor_floats(dims: tuple[int, ...], values: list[float]) -> bytes:
    """TensorProto with packed float_val (how small constants and splats come)."""
    packed = b"".join(struct.pack("<f", v) for v in values)
    return f_varint(1, DT_FLOAT) + f_bytes(2, shape(dims)) + f_bytes(5, packed)


def tensor_ints(dims: tuple[int, ...], values: list[int], *, packed: bool = True) -> bytes:
    body = f_varint(1, DT_INT32) + f_bytes(2, shape(dims))
    if packed:
        return body + f_bytes(7, b"".join(varint(v) for v in values))
    return body + b"".join(f_varint(7, v) for v in values)


def attr_tensor(t: bytes) -> bytes:
    return f_bytes(8, t)


def attr_type(dtype: int) -> bytes:
    return f_varint(6, dtype)


def attr_s(text: str) -> bytes:
    return f_bytes(2, text.encode())


def attr_i(value: int) -> bytes:
    return f_varint(3, value)


def attr_f(value: float) -> bytes:
    return f_float(4, value)


def attr_b(value: bool) -> bytes:
    return f_varint(5, int(value))


def attr_ints(values: list[int]) -> bytes:
    return f_bytes(1, f_bytes(3, b"".join(varint(v) for v in values)))


def node(name: str, op: str, inputs: list[str] = [], **attrs: bytes) -> bytes:  # noqa: B006 (never mutated)
    body = f_bytes(1, name.encode()) + f_bytes(2, op.encode())
    body += b"".join(f_bytes(3, i.encode()) for i in inputs)
    body += f_bytes(4, b"/device:CPU:0")  # a field the decoder must skip
    for k, v in attrs.items():
        body += f_bytes(5, f_bytes(1, k.encode()) + f_bytes(2, v))
    return body


def graph(*nodes: bytes) -> bytes:
    versions = f_bytes(4, f_varint(1, 27))  # GraphDef.versions: skipped
    return b"".join(f_bytes(1, n) for n in nodes) + versions


def const(name: str, array: npt.NDArray[np.generic]) -> bytes:
    dtype = DT_FLOAT if array.dtype == np.float32 else DT_INT32
    return node(name, "Const", dtype=attr_type(dtype), value=attr_tensor(tensor_content(array, dtype)))
