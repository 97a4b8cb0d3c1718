"""Evaluate the constant parts of a TensorFlow graph with numpy.

A frozen TF Object Detection graph computes some of its configuration at run time from
constants only: the SSD anchors (MultipleGridAnchorGenerator), the resize size, the NMS
thresholds. Folding those subgraphs here reads the values exactly as TensorFlow would compute
them, instead of trusting node names. Only the ops such subgraphs use are implemented; anything
else raises NotConstantError (as does a subgraph that depends on the image).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from crowdwatch.detectors.tf_graphdef import NUMPY_DTYPES, GraphDefError, NodeDef, tensor_ref

Array = npt.NDArray[np.generic]


class NotConstantError(GraphDefError):
    """A tensor depends on a graph input or on an op this folder does not evaluate."""


def _strided_slice(node: NodeDef, x: Array, begin: Array, end: Array, strides: Array) -> Array:
    for mask in ("ellipsis_mask", "new_axis_mask"):
        if node.attrs.get(mask) is not None and node.attr_int(mask):
            raise NotConstantError(f"{node.name}: StridedSlice with {mask} is not supported")
    begin_mask = node.attr_int("begin_mask") if "begin_mask" in node.attrs else 0
    end_mask = node.attr_int("end_mask") if "end_mask" in node.attrs else 0
    shrink = node.attr_int("shrink_axis_mask") if "shrink_axis_mask" in node.attrs else 0
    index: list[slice | int] = []
    for axis, (b, e, s) in enumerate(zip(begin.tolist(), end.tolist(), strides.tolist(), strict=True)):
        if shrink >> axis & 1:
            index.append(int(b))
        else:
            index.append(slice(None if begin_mask >> axis & 1 else b, None if end_mask >> axis & 1 else e, s))
    return np.asarray(x[tuple(index)])


def _slice(x: Array, begin: Array, size: Array) -> Array:
    index = tuple(
        slice(b, None if s == -1 else b + s) for b, s in zip(begin.tolist(), size.tolist(), strict=True)
    )
    return np.asarray(x[index])


def _concat(node: NodeDef, *args: Array) -> Array:
    *parts, axis = args
    return np.concatenate(parts, axis=int(axis))


def _pack(node: NodeDef, *args: Array) -> Array:
    axis = node.attr_int("axis") if "axis" in node.attrs else 0
    return np.stack(args, axis=axis)


def _cast(node: NodeDef, x: Array) -> Array:
    dst = node.attrs["DstT"].type
    if dst is None or dst not in NUMPY_DTYPES:
        raise NotConstantError(f"{node.name}: cast to an unsupported dtype")
    return x.astype(NUMPY_DTYPES[dst])


def _squeeze(node: NodeDef, x: Array) -> Array:
    dims = node.attrs.get("squeeze_dims")
    axes = dims.list.i if dims is not None and dims.list is not None else ()
    return np.squeeze(x, axis=tuple(axes)) if axes else np.squeeze(x)


def _range(node: NodeDef, start: Array, limit: Array, delta: Array) -> Array:
    dtype = np.result_type(start, limit, delta)
    return np.arange(start.item(), limit.item(), delta.item()).astype(dtype)


def _shape(node: NodeDef, x: Array) -> Array:
    dtype = node.attrs["out_type"].type if "out_type" in node.attrs else None
    return np.asarray(x.shape, dtype=np.int64 if dtype == 9 else np.int32)


def _div(node: NodeDef, x: Array, y: Array) -> Array:
    # RealDiv on floats; on the int tensors a graph may fold, TF's Div truncates like numpy's //.
    if np.issubdtype(x.dtype, np.integer):
        return np.asarray(np.floor_divide(x, y))
    return np.asarray(np.true_divide(x, y), dtype=x.dtype)


def _keep(x: Array, y: Array, out: object) -> Array:
    # numpy promotes mixed float32/float64 scalars; TF keeps the input dtype.
    return np.asarray(out, dtype=np.result_type(x.dtype, y.dtype))


_Op = Callable[..., Array]
OPS: Mapping[str, _Op] = MappingProxyType(
    {
        "Identity": lambda n, x: x,
        "StopGradient": lambda n, x: x,
        "Cast": _cast,
        "Add": lambda n, x, y: _keep(x, y, x + y),
        "AddV2": lambda n, x, y: _keep(x, y, x + y),
        "Sub": lambda n, x, y: _keep(x, y, x - y),
        "Mul": lambda n, x, y: _keep(x, y, x * y),
        "RealDiv": _div,
        "Div": _div,
        "Minimum": lambda n, x, y: _keep(x, y, np.minimum(x, y)),
        "Maximum": lambda n, x, y: _keep(x, y, np.maximum(x, y)),
        "Sqrt": lambda n, x: np.sqrt(x),
        "Exp": lambda n, x: np.exp(x),
        "Range": _range,
        "Pack": _pack,
        "ConcatV2": _concat,
        "Reshape": lambda n, x, shape: x.reshape(tuple(int(d) for d in shape)),
        "ExpandDims": lambda n, x, axis: np.expand_dims(x, int(axis)),
        "Squeeze": _squeeze,
        "Fill": lambda n, dims, value: np.full(tuple(int(d) for d in dims), value, dtype=value.dtype),
        "Tile": lambda n, x, reps: np.tile(x, tuple(int(r) for r in reps)),
        "Slice": lambda n, x, begin, size: _slice(x, begin, size),
        "StridedSlice": _strided_slice,
        "Shape": _shape,
        "Size": lambda n, x: np.asarray(x.size, dtype=np.int32),
        "Rank": lambda n, x: np.asarray(x.ndim, dtype=np.int32),
        "Transpose": lambda n, x, perm: np.transpose(x, tuple(int(p) for p in perm)),
        "ZerosLike": lambda n, x: np.zeros_like(x),
    }
)


class ConstantFolder:
    """Evaluates tensors of one graph on demand, memoising every result."""

    def __init__(self, nodes: Mapping[str, NodeDef]) -> None:
        self._nodes = nodes
        self._cache: dict[str, tuple[Array, ...]] = {}
        # Failures are remembered too: asking whether each node of a network is constant would
        # otherwise walk up to the image input again from every node.
        self._failed: dict[str, NotConstantError] = {}

    def value(self, tensor: str) -> Array:
        """The constant value of `tensor` (`node` or `node:k`)."""
        name, index = tensor_ref(tensor)
        outputs = self._outputs(name)
        if index >= len(outputs):
            raise NotConstantError(f"{name} has no output {index}")
        return outputs[index]

    def is_constant(self, tensor: str) -> bool:
        try:
            self.value(tensor)
        except NotConstantError:
            return False
        return True

    def _outputs(self, name: str) -> tuple[Array, ...]:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        failed = self._failed.get(name)
        if failed is not None:
            raise failed
        try:
            out = self._evaluate(name)
        except NotConstantError as exc:
            self._failed[name] = exc
            raise
        self._cache[name] = out
        return out

    def _evaluate(self, name: str) -> tuple[Array, ...]:
        node = self._nodes.get(name)
        if node is None:
            raise NotConstantError(f"no node named {name}")
        # Graphs are acyclic outside while loops, and loops contain ops we refuse, so plain
        # recursion terminates; anchor subgraphs are a few dozen nodes deep.
        if node.op == "Const":
            out: tuple[Array, ...] = (node.attr_tensor().array(),)
        elif node.op == "Unpack":
            (x,) = (self.value(i) for i in node.data_inputs)
            axis = node.attr_int("axis") if "axis" in node.attrs else 0
            out = tuple(np.moveaxis(x, axis, 0))
        elif node.op in OPS:
            args = [self.value(i) for i in node.data_inputs]
            out = (np.asarray(OPS[node.op](node, *args)),)
        else:
            raise NotConstantError(f"{name}: op {node.op} is not folded")
        return out
