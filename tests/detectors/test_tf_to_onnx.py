"""A small hand-built TF graph (NHWC convolutions, batch norm, ReLU6, depthwise conv, the TF OD
API's Shape -> StridedSlice -> Pack -> Reshape, Squeeze, Concat) translated to ONNX and run with
ONNX Runtime, against the same computation written out in numpy."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from crowdwatch.detectors.tf_graphdef import GraphDef
from crowdwatch.detectors.tf_to_onnx import Translator, UnsupportedOpError

from . import tf_wire as w

F = npt.NDArray[np.float32]
RNG = np.random.default_rng(7)
X = RNG.normal(size=(1, 5, 6, 3)).astype(np.float32)
CONV_W = RNG.normal(size=(3, 3, 3, 4)).astype(np.float32)
DW_W = RNG.normal(size=(3, 3, 4, 2)).astype(np.float32)
BN = [RNG.uniform(0.5, 1.5, 4).astype(np.float32) for _ in range(4)]  # gamma, beta, mean, var
BIAS = RNG.normal(size=8).astype(np.float32)
SHIFT = RNG.normal(size=8).astype(np.float32)
EPS = 0.001


def _same_pad(x: F, k: int, stride: int) -> F:
    def amounts(size: int) -> tuple[int, int]:
        total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
        return total // 2, total - total // 2  # TF: the odd pixel goes after

    return np.pad(x, [(0, 0), amounts(x.shape[1]), amounts(x.shape[2]), (0, 0)])


def _conv(x: F, weights: F, stride: int, depthwise: bool) -> F:
    k = weights.shape[0]
    p = _same_pad(x, k, stride)
    oh, ow = math.ceil(x.shape[1] / stride), math.ceil(x.shape[2] / stride)
    cout = weights.shape[2] * weights.shape[3] if depthwise else weights.shape[3]
    out = np.zeros((1, oh, ow, cout), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = p[0, i * stride : i * stride + k, j * stride : j * stride + k, :]
            if depthwise:  # output channel c * multiplier + m
                out[0, i, j] = np.einsum("hwc,hwcm->cm", patch, weights).reshape(-1)
            else:
                out[0, i, j] = np.einsum("hwc,hwco->o", patch, weights)
    return out.astype(np.float32)


def _reference() -> tuple[F, F]:
    gamma, beta, mean, var = BN
    y = _conv(X, CONV_W, 2, depthwise=False)
    y = (y - mean) / np.sqrt(var + EPS) * gamma + beta
    y = np.clip(y, 0, 6)
    y = _conv(y, DW_W, 1, depthwise=True) + BIAS + SHIFT
    boxes = y.reshape(1, -1, 1, 4).squeeze(2)
    return np.concatenate([boxes, boxes], axis=1), y


def _graph() -> GraphDef:
    i32 = np.int32
    return GraphDef.decode(
        w.graph(
            w.node("image", "Placeholder"),
            w.const("conv/w", CONV_W),
            w.node(
                "conv",
                "Conv2D",
                ["image", "conv/w"],
                strides=w.attr_ints([1, 2, 2, 1]),
                padding=w.attr_s("SAME"),
            ),
            *(w.const(f"bn/{p}", v) for p, v in zip(("gamma", "beta", "mean", "var"), BN, strict=True)),
            w.node(
                "bn",
                "FusedBatchNorm",
                ["conv", "bn/gamma", "bn/beta", "bn/mean", "bn/var"],
                epsilon=w.attr_f(EPS),
                is_training=w.attr_b(False),
            ),
            w.node("relu", "Relu6", ["bn"]),
            w.const("dw/w", DW_W),
            w.node(
                "dw",
                "DepthwiseConv2dNative",
                ["relu", "dw/w"],
                strides=w.attr_ints([1, 1, 1, 1]),
                padding=w.attr_s("SAME"),
            ),
            w.const("bias", BIAS),
            w.node("biased", "BiasAdd", ["dw", "bias"], data_format=w.attr_s("NHWC")),
            w.const("shift", SHIFT),
            w.node("features", "AddV2", ["biased", "shift"]),
            # TF OD API box predictor: reshape to [batch, -1, 1, 4] with batch read at run time.
            w.node("shape", "Shape", ["features"]),
            w.const("b", np.asarray([0], i32)),
            w.const("e", np.asarray([1], i32)),
            w.const("s", np.asarray([1], i32)),
            w.node("batch", "StridedSlice", ["shape", "b", "e", "s"], shrink_axis_mask=w.attr_i(1)),
            w.const("minus1", np.asarray(-1, i32)),
            w.const("one", np.asarray(1, i32)),
            w.const("four", np.asarray(4, i32)),
            w.node("target", "Pack", ["batch", "minus1", "one", "four"], axis=w.attr_i(0)),
            w.node("boxes4", "Reshape", ["features", "target"]),
            w.node("boxes", "Squeeze", ["boxes4"], squeeze_dims=w.attr_ints([2])),
            w.const("axis", np.asarray(1, i32)),
            w.node("both", "ConcatV2", ["boxes", "boxes", "axis"]),
            w.node("loop", "TensorArrayReadV3", ["image"]),
            w.node("unsupported", "Add", ["loop", "features"]),
        )
    )


def _run(model_outputs: dict[str, str], ranks: dict[str, int] | None = None) -> list[F]:
    ranks = ranks or {}
    nodes, inits = Translator(_graph().by_name()).translate("image", "x", model_outputs)
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 6, 3])],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"{n}{i}" for i in range(ranks.get(n, 3))])
            for n in model_outputs
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(o, np.float32) for o in session.run(None, {"x": X})]


def test_translated_graph_computes_what_the_tf_ops_mean() -> None:
    both, features = _run({"both": "both", "features": "features"}, {"features": 4})
    ref_both, ref_features = _reference()
    assert both.shape == (1, 36, 4)
    np.testing.assert_allclose(features, ref_features, atol=1e-4)  # NHWC again at the output
    np.testing.assert_allclose(both, ref_both, atol=1e-4)


def test_unsupported_ops_are_listed_in_one_error() -> None:
    with pytest.raises(UnsupportedOpError, match="TensorArrayReadV3"):
        _run({"out": "unsupported"})


@pytest.mark.parametrize("op", ["Conv2D", "DepthwiseConv2dNative"])
def test_nchw_graphs_are_refused(op: str) -> None:
    g = GraphDef.decode(
        w.graph(
            w.node("image", "Placeholder"),
            w.const("w", CONV_W),
            w.node("c", op, ["image", "w"], padding=w.attr_s("SAME"), data_format=w.attr_s("NCHW")),
        )
    )
    with pytest.raises(UnsupportedOpError, match="NCHW"):
        Translator(g.by_name()).translate("image", "x", {"out": "c"})
