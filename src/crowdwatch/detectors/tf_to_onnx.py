"""Translate the feed-forward part of a frozen TF graph (the convolutional network between an
image tensor and a set of outputs) into ONNX nodes, generic over the ops it contains.

TensorFlow works in NHWC, ONNX convolutions in NCHW. Each translated tensor remembers which of
the two layouts it is stored in: convolutions and batch norms want NCHW, shape-sensitive ops
(Reshape, Concat on rank < 4, Shape, StridedSlice, Pack, Squeeze) want TF's own layout, and a
Transpose is inserted only where a tensor crosses from one to the other; element-wise ops keep
whatever layout their inputs have. Constants become initializers (int32 as int64, since ONNX
shape inputs are int64). An op without a translation raises UnsupportedOpError listing every
such op, so a new graph fails in one go with the full list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from crowdwatch.detectors.tf_fold import ConstantFolder, NotConstantError
from crowdwatch.detectors.tf_graphdef import GraphDefError, NodeDef, tensor_ref

Layout = Literal["tf", "nchw"]
NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)
_INT64_MAX = np.iinfo(np.int64).max


class UnsupportedOpError(GraphDefError):
    """The subgraph holds ops (or attributes) this translator does not handle."""


@dataclass(frozen=True, slots=True)
class Value:
    name: str
    """The ONNX tensor name."""
    layout: Layout
    rank: int | None
    """None when not known statically."""


@dataclass(slots=True)
class Emitter:
    """Accumulates ONNX nodes and initializers; hands out unique names."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    _names: set[str] = field(default_factory=set)

    def reserve(self, name: str) -> None:
        """Keep `name` (a graph input or output) from being handed out to an inner tensor."""
        if name in self._names:
            raise ValueError(f"ONNX name {name} is used twice")
        self._names.add(name)

    def fresh(self, hint: str) -> str:
        name, i = hint, 1
        while name in self._names:
            i += 1
            name = f"{hint}_{i}"
        self._names.add(name)
        return name

    def const(self, hint: str, array: npt.NDArray[np.generic]) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(onnx_array(array), name))
        return name

    def node(self, op: str, inputs: Sequence[str], hint: str, **attrs: Any) -> str:
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out


def onnx_array(array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """Constants as ONNX wants them: float32 floats, int64 ints (shapes, axes, indices)."""
    a = np.asarray(array)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64)
    if a.dtype == np.bool_:
        return a
    raise UnsupportedOpError(f"constant of dtype {a.dtype}")


def _perm_rank(x: Value) -> bool:
    return x.rank == 4


class Translator:
    """Translates the nodes needed for `outputs`, starting from `input_tensor` (which becomes the
    ONNX graph input, NHWC as in TF)."""

    def __init__(self, nodes: Mapping[str, NodeDef], folder: ConstantFolder | None = None) -> None:
        self._nodes = nodes
        self._folder = folder or ConstantFolder(nodes)
        self.emit = Emitter()
        self._values: dict[str, Value] = {}
        self._transposed: dict[tuple[str, Layout], Value] = {}

    # ---- public --------------------------------------------------------------------------------

    def translate(
        self, input_tensor: str, input_name: str, outputs: Mapping[str, str]
    ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
        """ONNX nodes and initializers computing each TF tensor of `outputs` (ONNX name -> TF
        tensor) from the ONNX input `input_name` standing for TF tensor `input_tensor`."""
        self._values[_canonical(input_tensor)] = Value(input_name, "tf", 4)
        for name in (input_name, *outputs):
            self.emit.reserve(name)
        order = self._schedule(input_tensor, outputs.values())
        unsupported = sorted({n.op for n in order if n.op not in _HANDLERS and n.op != "Const"})
        if unsupported:
            raise UnsupportedOpError(f"no ONNX translation for TF ops: {', '.join(unsupported)}")
        for node in order:
            self._translate_node(node)
        for onnx_name, tf_tensor in outputs.items():
            value = self.to_layout(self.value(tf_tensor), "tf")
            self.emit.nodes.append(helper.make_node("Identity", [value.name], [onnx_name], name=onnx_name))
        return self.emit.nodes, self.emit.initializers

    # ---- used by the op handlers ---------------------------------------------------------------

    def value(self, tensor: str) -> Value:
        key = _canonical(tensor)
        got = self._values.get(key)
        if got is not None:
            return got
        # Constants (and constant subgraphs such as shape arithmetic on constants) are folded
        # on first use rather than translated op by op.
        array = self._folder.value(tensor)
        value = Value(self.emit.const(_hint(tensor), array), "tf", array.ndim)
        self._values[key] = value
        return value

    def constant(self, tensor: str) -> npt.NDArray[np.generic]:
        try:
            return self._folder.value(tensor)
        except NotConstantError as exc:
            raise UnsupportedOpError(f"{tensor} must be a constant here: {exc}") from exc

    def producer(self, tensor: str) -> NodeDef | None:
        return self._nodes.get(tensor_ref(tensor)[0])

    def is_constant(self, tensor: str) -> bool:
        return _canonical(tensor) not in self._values and self._folder.is_constant(tensor)

    def to_layout(self, x: Value, layout: Layout) -> Value:
        if x.layout == layout or not _perm_rank(x):
            return Value(x.name, layout, x.rank) if x.layout != layout else x
        # One Transpose per tensor and direction, however many consumers need it.
        cached = self._transposed.get((x.name, layout))
        if cached is None:
            perm = NHWC_TO_NCHW if layout == "nchw" else NCHW_TO_NHWC
            out = self.emit.node("Transpose", [x.name], f"{x.name}.{layout}", perm=list(perm))
            cached = self._transposed[(x.name, layout)] = Value(out, layout, 4)
        return cached

    def set(self, node: NodeDef, value: Value, index: int = 0) -> None:
        self._values[node.name if index == 0 else f"{node.name}:{index}"] = value

    # ---- internals -----------------------------------------------------------------------------

    def _schedule(self, input_tensor: str, outputs: Iterable[str]) -> list[NodeDef]:
        """Nodes needed for `outputs`, inputs first; constant subgraphs are left to folding."""
        stop = tensor_ref(input_tensor)[0]
        order: list[NodeDef] = []
        state: dict[str, bool] = {}  # False: being visited, True: done
        stack: list[tuple[str, bool]] = [(tensor_ref(t)[0], False) for t in outputs]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                state[name] = True
                order.append(self._nodes[name])
                continue
            if name in state:
                if not state[name]:
                    raise UnsupportedOpError(f"cycle through {name}: control flow is not translated")
                continue
            if name == stop or self._folder.is_constant(name):
                state[name] = True
                continue
            node = self._nodes.get(name)
            if node is None:
                raise GraphDefError(f"no node named {name}")
            state[name] = False
            stack.append((name, True))
            stack.extend((tensor_ref(i)[0], False) for i in node.data_inputs)
        return order

    def _translate_node(self, node: NodeDef) -> None:
        _HANDLERS[node.op](self, node)


def _canonical(tensor: str) -> str:
    name, index = tensor_ref(tensor)
    return name if index == 0 else f"{name}:{index}"


def _hint(tensor: str) -> str:
    return tensor.replace(":", ".")


# ---- op handlers ---------------------------------------------------------------------------------


def _nhwc(node: NodeDef) -> None:
    fmt = node.attrs.get("data_format")
    if fmt is not None and fmt.s not in (None, b"NHWC"):
        raise UnsupportedOpError(f"{node.name}: data_format {fmt.s!r} (only NHWC graphs are handled)")


def _spatial(node: NodeDef, key: str) -> list[int]:
    values = node.attr_ints(key) if key in node.attrs else (1, 1, 1, 1)
    if len(values) != 4 or values[0] != 1 or values[3] != 1:
        raise UnsupportedOpError(f"{node.name}: {key} {values} along batch or channels")
    return [values[1], values[2]]


def _padding(node: NodeDef) -> str:
    padding = node.attr_str("padding")
    if padding == "SAME":
        return "SAME_UPPER"  # TF puts the odd padding pixel after, as SAME_UPPER does
    if padding == "VALID":
        return "VALID"
    raise UnsupportedOpError(f"{node.name}: padding {padding}")


def _conv(t: Translator, node: NodeDef, depthwise: bool) -> None:
    _nhwc(node)
    x_name, w_name = node.data_inputs
    x = t.to_layout(t.value(x_name), "nchw")
    w = np.asarray(t.constant(w_name), np.float32)  # H, W, in, out (depthwise: H, W, in, multiplier)
    kh, kw, cin, m = w.shape
    if depthwise:
        weight = w.transpose(2, 3, 0, 1).reshape(cin * m, 1, kh, kw)  # TF's channel c*m + j
        group = cin
    else:
        weight = w.transpose(3, 2, 0, 1)
        group = 1
    out = t.emit.node(
        "Conv",
        [x.name, t.emit.const(f"{node.name}.weight", weight)],
        node.name,
        kernel_shape=[kh, kw],
        strides=_spatial(node, "strides"),
        dilations=_spatial(node, "dilations"),
        auto_pad=_padding(node),
        group=group,
    )
    t.set(node, Value(out, "nchw", 4))


def _channel_vector(t: Translator, node: NodeDef, tensor: str, x: Value) -> str:
    """A per-channel constant shaped to broadcast against `x` in its layout."""
    v = np.asarray(t.constant(tensor), np.float32)
    if x.layout == "nchw":
        v = v.reshape(-1, 1, 1)
    return t.emit.const(f"{node.name}.{tensor.rsplit('/', 1)[-1]}", v)


def _bias_add(t: Translator, node: NodeDef) -> None:
    _nhwc(node)
    x_name, b_name = node.data_inputs
    x = t.value(x_name)
    out = t.emit.node("Add", [x.name, _channel_vector(t, node, b_name, x)], node.name)
    t.set(node, Value(out, x.layout, x.rank))


def _batch_norm(t: Translator, node: NodeDef) -> None:
    _nhwc(node)
    if "is_training" in node.attrs and node.attrs["is_training"].b:
        raise UnsupportedOpError(f"{node.name}: FusedBatchNorm in training mode")
    x_name, *params = node.data_inputs[:5]
    x = t.to_layout(t.value(x_name), "nchw")
    names = [
        t.emit.const(f"{node.name}.{p}", np.asarray(t.constant(tensor), np.float32))
        for p, tensor in zip(("scale", "bias", "mean", "var"), params, strict=True)
    ]
    eps = node.attr_float("epsilon") if "epsilon" in node.attrs else 1e-4
    out = t.emit.node("BatchNormalization", [x.name, *names], node.name, epsilon=eps)
    t.set(node, Value(out, "nchw", 4))


def _unary(onnx_op: str, **attrs: Any) -> Callable[[Translator, NodeDef], None]:
    def handle(t: Translator, node: NodeDef) -> None:
        x = t.value(node.data_inputs[0])
        t.set(node, Value(t.emit.node(onnx_op, [x.name], node.name, **attrs), x.layout, x.rank))

    return handle


def _relu6(t: Translator, node: NodeDef) -> None:
    x = t.value(node.data_inputs[0])
    lo = t.emit.const(f"{node.name}.min", np.asarray(0.0, np.float32))
    hi = t.emit.const(f"{node.name}.max", np.asarray(6.0, np.float32))
    t.set(node, Value(t.emit.node("Clip", [x.name, lo, hi], node.name), x.layout, x.rank))


def _identity(t: Translator, node: NodeDef) -> None:
    t.set(node, t.value(node.data_inputs[0]))


def _broadcast_const(t: Translator, node: NodeDef, tensor: str, other: Value) -> str:
    c = np.asarray(t.constant(tensor))
    if other.layout == "nchw" and c.ndim >= 1 and c.size > 1:
        # NHWC broadcasting aligns trailing axes: pad to rank 4, then move channels to axis 1.
        c = c.reshape((1,) * (4 - c.ndim) + c.shape).transpose(NHWC_TO_NCHW)
    return t.emit.const(f"{node.name}.const", c)


def _binary(onnx_op: str) -> Callable[[Translator, NodeDef], None]:
    def handle(t: Translator, node: NodeDef) -> None:
        a_name, b_name = node.data_inputs
        a_const, b_const = t.is_constant(a_name), t.is_constant(b_name)
        if a_const and not b_const:
            b = t.value(b_name)
            names, like = [_broadcast_const(t, node, a_name, b), b.name], b
        elif b_const and not a_const:
            a = t.value(a_name)
            names, like = [a.name, _broadcast_const(t, node, b_name, a)], a
        else:
            a, b = t.value(a_name), t.value(b_name)
            layout: Layout = "nchw" if "nchw" in (a.layout, b.layout) and a.rank == b.rank == 4 else "tf"
            a, b = t.to_layout(a, layout), t.to_layout(b, layout)
            rank = None if a.rank is None or b.rank is None else max(a.rank, b.rank)
            names, like = [a.name, b.name], Value(a.name, layout, rank)
        t.set(node, Value(t.emit.node(onnx_op, names, node.name), like.layout, like.rank))

    return handle


def _reshape(t: Translator, node: NodeDef) -> None:
    x_name, shape_name = node.data_inputs
    x = t.to_layout(t.value(x_name), "tf")
    if t.is_constant(shape_name):
        shape = np.asarray(t.constant(shape_name)).reshape(-1)
        if (shape == 0).any():  # TF: a zero-sized axis; ONNX: copy the input's axis
            raise UnsupportedOpError(f"{node.name}: Reshape to a zero-sized axis")
        rank: int | None = int(shape.size)
    else:
        producer = t.producer(shape_name)
        rank = len(producer.data_inputs) if producer is not None and producer.op == "Pack" else None
    s = t.value(shape_name)
    t.set(node, Value(t.emit.node("Reshape", [x.name, s.name], node.name), "tf", rank))


def _squeeze(t: Translator, node: NodeDef) -> None:
    x = t.to_layout(t.value(node.data_inputs[0]), "tf")
    dims = node.attrs.get("squeeze_dims")
    axes = list(dims.list.i) if dims is not None and dims.list is not None else []
    if not axes:
        raise UnsupportedOpError(f"{node.name}: Squeeze without explicit axes")
    out = t.emit.node("Squeeze", [x.name, t.emit.const(f"{node.name}.axes", np.asarray(axes))], node.name)
    t.set(node, Value(out, "tf", None if x.rank is None else x.rank - len(axes)))


def _concat(t: Translator, node: NodeDef) -> None:
    *parts, axis_name = node.data_inputs
    axis = int(np.asarray(t.constant(axis_name)))
    values = [t.value(p) for p in parts]
    if all(v.layout == "nchw" for v in values):
        axis = NHWC_TO_NCHW.index(axis % 4)
        layout: Layout = "nchw"
    else:
        values = [t.to_layout(v, "tf") for v in values]
        layout = "tf"
    out = t.emit.node("Concat", [v.name for v in values], node.name, axis=axis)
    t.set(node, Value(out, layout, values[0].rank))


def _pack(t: Translator, node: NodeDef) -> None:
    axis = node.attr_int("axis") if "axis" in node.attrs else 0
    axes = t.emit.const(f"{node.name}.axes", np.asarray([axis]))
    parts = []
    for p in node.data_inputs:
        v = t.to_layout(t.value(p), "tf")
        parts.append(t.emit.node("Unsqueeze", [v.name, axes], f"{node.name}.part"))
    rank = t.value(node.data_inputs[0]).rank
    out = t.emit.node("Concat", parts, node.name, axis=axis)
    t.set(node, Value(out, "tf", None if rank is None else rank + 1))


def _shape(t: Translator, node: NodeDef) -> None:
    x = t.value(node.data_inputs[0])
    if x.layout == "tf":
        t.set(node, Value(t.emit.node("Shape", [x.name], node.name), "tf", 1))
        return
    # The TF shape of an NCHW-stored tensor, without transposing a whole feature map for it.
    shape = t.emit.node("Shape", [x.name], f"{node.name}.nchw")
    order = t.emit.const(f"{node.name}.nhwc", np.asarray(NCHW_TO_NHWC))
    t.set(node, Value(t.emit.node("Gather", [shape, order], node.name, axis=0), "tf", 1))


def _strided_slice(t: Translator, node: NodeDef) -> None:
    x_name, b_name, e_name, s_name = node.data_inputs
    for mask in ("ellipsis_mask", "new_axis_mask"):
        if mask in node.attrs and node.attr_int(mask):
            raise UnsupportedOpError(f"{node.name}: StridedSlice with {mask}")
    begin = np.asarray(t.constant(b_name)).reshape(-1).astype(np.int64)
    end = np.asarray(t.constant(e_name)).reshape(-1).astype(np.int64)
    steps = np.asarray(t.constant(s_name)).reshape(-1).astype(np.int64)
    if (steps <= 0).any():
        raise UnsupportedOpError(f"{node.name}: StridedSlice with non-positive strides {steps}")
    begin_mask = node.attr_int("begin_mask") if "begin_mask" in node.attrs else 0
    end_mask = node.attr_int("end_mask") if "end_mask" in node.attrs else 0
    shrink = node.attr_int("shrink_axis_mask") if "shrink_axis_mask" in node.attrs else 0
    starts, ends = begin.copy(), end.copy()
    for axis in range(len(begin)):
        if begin_mask >> axis & 1:
            starts[axis] = 0
        if shrink >> axis & 1:
            ends[axis] = begin[axis] + 1 if begin[axis] != -1 else _INT64_MAX
        elif end_mask >> axis & 1:
            ends[axis] = _INT64_MAX
    x = t.to_layout(t.value(x_name), "tf")
    e = t.emit
    sliced = e.node(
        "Slice",
        [
            x.name,
            e.const(f"{node.name}.starts", starts),
            e.const(f"{node.name}.ends", ends),
            e.const(f"{node.name}.axes", np.arange(len(begin))),
            e.const(f"{node.name}.steps", steps),
        ],
        f"{node.name}.slice" if shrink else node.name,
    )
    dropped = [a for a in range(len(begin)) if shrink >> a & 1]
    if dropped:
        sliced = e.node("Squeeze", [sliced, e.const(f"{node.name}.shrink", np.asarray(dropped))], node.name)
    rank = None if x.rank is None else x.rank - len(dropped)
    t.set(node, Value(sliced, "tf", rank))


def _cast(t: Translator, node: NodeDef) -> None:
    x = t.value(node.data_inputs[0])
    dst = node.attrs["DstT"].type
    to = TensorProto.FLOAT if dst in (1, 2, 19) else TensorProto.INT64 if dst in (3, 9) else None
    if to is None:
        raise UnsupportedOpError(f"{node.name}: Cast to TF dtype {dst}")
    t.set(node, Value(t.emit.node("Cast", [x.name], node.name, to=to), x.layout, x.rank))


_HANDLERS: Mapping[str, Callable[[Translator, NodeDef], None]] = MappingProxyType(
    {
        "Conv2D": lambda t, n: _conv(t, n, depthwise=False),
        "DepthwiseConv2dNative": lambda t, n: _conv(t, n, depthwise=True),
        "BiasAdd": _bias_add,
        "FusedBatchNorm": _batch_norm,
        "FusedBatchNormV3": _batch_norm,
        "Relu": _unary("Relu"),
        "Relu6": _relu6,
        "Sigmoid": _unary("Sigmoid"),
        "Tanh": _unary("Tanh"),
        "Exp": _unary("Exp"),
        "Sqrt": _unary("Sqrt"),
        "Identity": _identity,
        "StopGradient": _identity,
        "Add": _binary("Add"),
        "AddV2": _binary("Add"),
        "Sub": _binary("Sub"),
        "Mul": _binary("Mul"),
        "RealDiv": _binary("Div"),
        "Maximum": _binary("Max"),
        "Minimum": _binary("Min"),
        "Reshape": _reshape,
        "Squeeze": _squeeze,
        "ConcatV2": _concat,
        "Pack": _pack,
        "Shape": _shape,
        "StridedSlice": _strided_slice,
        "Cast": _cast,
    }
)

SUPPORTED_OPS = frozenset(_HANDLERS) | {"Const"}
