"""Read a TensorFlow frozen graph (`GraphDef` protobuf) without TensorFlow.

Only the messages a frozen inference graph uses are decoded — GraphDef, NodeDef, AttrValue
(and its ListValue), TensorProto and TensorShapeProto — straight from the protobuf wire format,
so neither TensorFlow nor generated protobuf classes are needed. Field numbers are those of
tensorflow/core/framework/{graph,node_def,attr_value,tensor,tensor_shape}.proto; fields we do not
need (devices, versions, function libraries, ...) are skipped, as protobuf itself skips unknown
fields.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

# ---- the wire format ---------------------------------------------------------------------------

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class GraphDefError(ValueError):
    """The bytes are not a GraphDef this reader understands."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise GraphDefError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise GraphDefError("varint longer than 10 bytes")


def _signed64(value: int) -> int:
    # int64 fields put negative numbers on the wire as 10-byte two's complement varints.
    return value - (1 << 64) if value >= 1 << 63 else value


def fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of each field of one message: an int for varint and
    fixed-width fields (fixed ones as their raw little-endian bits), a view for length-delimited
    ones (no copy: tensor contents stay in the file's buffer)."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == FIXED64:
            yield number, wire, int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == FIXED32:
            yield number, wire, int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        elif wire == LENGTH:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise GraphDefError("length-delimited field runs past the end of its message")
            yield number, wire, buf[pos : pos + size]
            pos += size
        else:  # 3 and 4 are proto2 groups, which TensorFlow's messages do not use
            raise GraphDefError(f"unsupported wire type {wire} for field {number}")
    if pos != len(buf):
        raise GraphDefError("message runs past its end")


def _bytes(value: int | memoryview) -> memoryview:
    if not isinstance(value, memoryview):
        raise GraphDefError("expected a length-delimited field")
    return value


def _int(value: int | memoryview) -> int:
    if isinstance(value, memoryview):
        raise GraphDefError("expected a scalar field")
    return value


def _f32(bits: int) -> float:
    return float(struct.unpack("<f", bits.to_bytes(4, "little"))[0])


def _f64(bits: int) -> float:
    return float(struct.unpack("<d", bits.to_bytes(8, "little"))[0])


def _packed_varints(wire: int, value: int | memoryview) -> list[int]:
    # Repeated scalars come packed (proto3's default) or one per field; parsers accept both.
    if wire != LENGTH:
        return [_int(value)]
    buf, out, pos = _bytes(value), [], 0
    while pos < len(buf):
        v, pos = _varint(buf, pos)
        out.append(v)
    return out


def _packed_floats(wire: int, value: int | memoryview) -> list[float]:
    if wire == FIXED32:
        return [_f32(_int(value))]
    if wire == FIXED64:
        return [_f64(_int(value))]
    buf = _bytes(value)
    return [float(v) for v in np.frombuffer(buf, dtype="<f4")]


def _packed_doubles(wire: int, value: int | memoryview) -> list[float]:
    if wire == FIXED64:
        return [_f64(_int(value))]
    return [float(v) for v in np.frombuffer(_bytes(value), dtype="<f8")]


def _text(value: int | memoryview) -> str:
    return bytes(_bytes(value)).decode("utf-8")


# ---- messages ----------------------------------------------------------------------------------

# tensorflow/core/framework/types.proto DataType -> numpy (the types a frozen graph holds).
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8 = 1, 2, 3, 4, 5, 6
DT_STRING, DT_INT64, DT_BOOL, DT_HALF = 7, 9, 10, 19
NUMPY_DTYPES: Mapping[int, np.dtype[np.generic]] = MappingProxyType(
    {
        DT_FLOAT: np.dtype("<f4"),
        DT_DOUBLE: np.dtype("<f8"),
        DT_INT32: np.dtype("<i4"),
        DT_UINT8: np.dtype("u1"),
        DT_INT16: np.dtype("<i2"),
        DT_INT8: np.dtype("i1"),
        DT_INT64: np.dtype("<i8"),
        DT_BOOL: np.dtype("?"),
        DT_HALF: np.dtype("<f2"),
    }
)


@dataclass(frozen=True, slots=True)
class TensorShape:
    dims: tuple[int, ...] | None
    """Sizes (-1 = unknown), or None for an unknown rank."""

    @classmethod
    def decode(cls, buf: memoryview) -> TensorShape:
        dims: list[int] = []
        unknown_rank = False
        for number, _wire, value in fields(buf):
            if number == 2:  # repeated Dim {int64 size = 1; string name = 2}
                size = 0
                for n, w, v in fields(_bytes(value)):
                    if n == 1 and w == VARINT:
                        size = _signed64(_int(v))
                dims.append(size)
            elif number == 3:
                unknown_rank = bool(_int(value))
        return cls(None if unknown_rank else tuple(dims))


@dataclass(frozen=True, slots=True, eq=False)
class Tensor:
    """A constant: TensorProto's dtype, shape and values as a numpy array."""

    dtype: int
    shape: tuple[int, ...]
    values: npt.NDArray[np.generic] | tuple[bytes, ...]
    """The numeric array in `shape`, or the byte strings of a DT_STRING tensor."""

    def array(self) -> npt.NDArray[np.generic]:
        if isinstance(self.values, tuple):
            raise GraphDefError("a string tensor has no numeric array")
        return self.values

    @classmethod
    def decode(cls, buf: memoryview) -> Tensor:
        dtype, shape, content = 0, TensorShape(()), b""
        ints: list[int] = []
        floats: list[float] = []
        strings: list[bytes] = []
        for number, wire, value in fields(buf):
            if number == 1:
                dtype = _int(value)
            elif number == 2:
                shape = TensorShape.decode(_bytes(value))
            elif number == 4:
                content = bytes(_bytes(value))
            elif number == 5:  # float_val
                floats += _packed_floats(wire, value)
            elif number == 6:  # double_val
                floats += _packed_doubles(wire, value)
            elif number in (7, 10, 11, 13):  # int_val, int64_val, bool_val, half_val (as bits)
                ints += [_signed64(v) for v in _packed_varints(wire, value)]
            elif number == 8:
                strings.append(bytes(_bytes(value)))
        if shape.dims is None or any(d < 0 for d in shape.dims):
            raise GraphDefError(f"a constant needs a fully known shape, got {shape.dims}")
        dims = shape.dims
        if dtype == DT_STRING:
            return cls(dtype, dims, tuple(strings))
        np_dtype = NUMPY_DTYPES.get(dtype)
        if np_dtype is None:
            raise GraphDefError(f"unsupported tensor dtype {dtype}")
        return cls(dtype, dims, _values(np_dtype, dims, content, ints, floats, dtype == DT_HALF))


def _values(
    dtype: np.dtype[np.generic],
    dims: tuple[int, ...],
    content: bytes,
    ints: list[int],
    floats: list[float],
    half_bits: bool,
) -> npt.NDArray[np.generic]:
    count = int(np.prod(dims, dtype=np.int64))
    if content:
        flat = np.frombuffer(content, dtype=dtype)
        if flat.size != count:
            raise GraphDefError(f"tensor content holds {flat.size} values, shape {dims} needs {count}")
        return flat.reshape(dims).copy()  # copy: a view would pin the whole file in memory
    if half_bits:  # half_val carries each float16's bit pattern in an int32
        listed: npt.NDArray[np.generic] = np.asarray(ints, np.uint16).view(np.float16)
    elif floats:
        listed = np.asarray(floats, dtype=dtype)
    else:
        listed = np.asarray(ints, dtype=np.int64).astype(dtype)
    if listed.size == 0:
        return np.zeros(dims, dtype=dtype)
    if listed.size > count:
        raise GraphDefError(f"{listed.size} values for a tensor of shape {dims}")
    # TensorFlow's rule: fewer values than elements means the last one repeats (a splat).
    filled = np.concatenate([listed, np.full(count - listed.size, listed[-1], dtype=listed.dtype)])
    return filled.astype(dtype).reshape(dims)


@dataclass(frozen=True, slots=True, eq=False)
class AttrList:
    """AttrValue.ListValue: the lists an attribute such as `strides` or `dtypes` holds."""

    s: tuple[bytes, ...] = ()
    i: tuple[int, ...] = ()
    f: tuple[float, ...] = ()
    b: tuple[bool, ...] = ()
    type: tuple[int, ...] = ()
    shape: tuple[TensorShape, ...] = ()
    tensor: tuple[Tensor, ...] = ()

    @classmethod
    def decode(cls, buf: memoryview) -> AttrList:
        s: list[bytes] = []
        i: list[int] = []
        f: list[float] = []
        b: list[bool] = []
        types: list[int] = []
        shapes: list[TensorShape] = []
        tensors: list[Tensor] = []
        for number, wire, value in fields(buf):
            if number == 2:
                s.append(bytes(_bytes(value)))
            elif number == 3:
                i += [_signed64(v) for v in _packed_varints(wire, value)]
            elif number == 4:
                f += _packed_floats(wire, value)
            elif number == 5:
                b += [bool(v) for v in _packed_varints(wire, value)]
            elif number == 6:
                types += _packed_varints(wire, value)
            elif number == 7:
                shapes.append(TensorShape.decode(_bytes(value)))
            elif number == 8:
                tensors.append(Tensor.decode(_bytes(value)))
        return cls(tuple(s), tuple(i), tuple(f), tuple(b), tuple(types), tuple(shapes), tuple(tensors))


@dataclass(frozen=True, slots=True, eq=False)
class AttrValue:
    """One attribute: exactly one field is set, as in the proto's `oneof value`."""

    s: bytes | None = None
    i: int | None = None
    f: float | None = None
    b: bool | None = None
    type: int | None = None
    shape: TensorShape | None = None
    tensor: Tensor | None = None
    list: AttrList | None = None

    @classmethod
    def decode(cls, buf: memoryview) -> AttrValue:
        out = cls()
        for number, _wire, value in fields(buf):
            if number == 1:
                out = cls(list=AttrList.decode(_bytes(value)))
            elif number == 2:
                out = cls(s=bytes(_bytes(value)))
            elif number == 3:
                out = cls(i=_signed64(_int(value)))
            elif number == 4:
                out = cls(f=_f32(_int(value)))
            elif number == 5:
                out = cls(b=bool(_int(value)))
            elif number == 6:
                out = cls(type=_int(value))
            elif number == 7:
                out = cls(shape=TensorShape.decode(_bytes(value)))
            elif number == 8:
                out = cls(tensor=Tensor.decode(_bytes(value)))
        return out


class MissingAttrError(GraphDefError):
    """A node lacks an attribute (or holds it with another type) that its op needs."""


@dataclass(frozen=True, slots=True, eq=False)
class NodeDef:
    name: str
    op: str
    inputs: tuple[str, ...]
    """Input tensor names as TensorFlow writes them: `node`, `node:1`, or `^node` (control)."""
    attrs: Mapping[str, AttrValue] = field(default_factory=dict)

    @classmethod
    def decode(cls, buf: memoryview) -> NodeDef:
        name = op = ""
        inputs: list[str] = []
        attrs: dict[str, AttrValue] = {}
        for number, _wire, value in fields(buf):
            if number == 1:
                name = _text(value)
            elif number == 2:
                op = _text(value)
            elif number == 3:
                inputs.append(_text(value))
            elif number == 5:  # map<string, AttrValue>: entries {string key = 1; AttrValue value = 2}
                key, attr = "", AttrValue()
                for n, _w, v in fields(_bytes(value)):
                    if n == 1:
                        key = _text(v)
                    elif n == 2:
                        attr = AttrValue.decode(_bytes(v))
                attrs[key] = attr
        return cls(name, op, tuple(inputs), MappingProxyType(attrs))

    @property
    def data_inputs(self) -> tuple[str, ...]:
        """Inputs without the control dependencies (`^name`), which carry no data."""
        return tuple(i for i in self.inputs if not i.startswith("^"))

    def _attr(self, key: str) -> AttrValue:
        try:
            return self.attrs[key]
        except KeyError:
            raise MissingAttrError(f"node {self.name} ({self.op}) has no attribute {key!r}") from None

    def attr_int(self, key: str) -> int:
        v = self._attr(key).i
        if v is None:
            raise MissingAttrError(f"attribute {key!r} of {self.name} is not an int")
        return v

    def attr_float(self, key: str) -> float:
        v = self._attr(key).f
        if v is None:
            raise MissingAttrError(f"attribute {key!r} of {self.name} is not a float")
        return v

    def attr_str(self, key: str) -> str:
        v = self._attr(key).s
        if v is None:
            raise MissingAttrError(f"attribute {key!r} of {self.name} is not a string")
        return v.decode("utf-8")

    def attr_ints(self, key: str) -> tuple[int, ...]:
        v = self._attr(key).list
        if v is None:
            raise MissingAttrError(f"attribute {key!r} of {self.name} is not a list")
        return v.i

    def attr_tensor(self, key: str = "value") -> Tensor:
        v = self._attr(key).tensor
        if v is None:
            raise MissingAttrError(f"attribute {key!r} of {self.name} is not a tensor")
        return v


@dataclass(frozen=True, slots=True, eq=False)
class GraphDef:
    nodes: tuple[NodeDef, ...]

    @classmethod
    def decode(cls, data: bytes) -> GraphDef:
        """Decode serialized GraphDef bytes (the content of a frozen `.pb`)."""
        nodes = [NodeDef.decode(_bytes(v)) for n, _w, v in fields(memoryview(data)) if n == 1]
        if not nodes:
            raise GraphDefError("no nodes: not a GraphDef")
        return cls(tuple(nodes))

    def by_name(self) -> dict[str, NodeDef]:
        return {n.name: n for n in self.nodes}


def tensor_ref(name: str) -> tuple[str, int]:
    """`node:1` -> ("node", 1); `node` -> ("node", 0)."""
    node, _, index = name.partition(":")
    return node, int(index) if index else 0
