"""Decoding hand-built GraphDef bytes, and folding their constants, without TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from crowdwatch.detectors.tf_fold import ConstantFolder, NotConstantError
from crowdwatch.detectors.tf_graphdef import GraphDef, GraphDefError, MissingAttrError, tensor_ref

from . import tf_wire as w

WEIGHTS = np.arange(24, dtype=np.float32).reshape(2, 2, 3, 2) / 10


def _tiny_graph() -> GraphDef:
    return GraphDef.decode(
        w.graph(
            w.node("image", "Placeholder", dtype=w.attr_type(w.DT_FLOAT)),
            w.const("weights", WEIGHTS),
            w.node("weights/read", "Identity", ["weights"]),
            w.node(
                "conv",
                "Conv2D",
                ["image", "weights/read", "^weights"],
                strides=w.attr_ints([1, 2, 2, 1]),
                padding=w.attr_s("SAME"),
                use_cudnn_on_gpu=w.attr_b(True),
            ),
            w.node("bn", "FusedBatchNorm", ["conv"], epsilon=w.attr_f(0.001)),
            w.node("splat", "Const", value=w.attr_tensor(w.tensor_floats((2, 3), [1.5]))),
            w.node("shape", "Const", value=w.attr_tensor(w.tensor_ints((3,), [-1, 1, 4], packed=False))),
            w.node("offset", "Const", value=w.attr_tensor(w.tensor_ints((2,), [-3, 7]))),
            w.node("count", "Const", value=w.attr_i(-5)),
        )
    )


def test_nodes_inputs_and_attributes_are_decoded() -> None:
    g = _tiny_graph()
    assert [n.name for n in g.nodes] == [
        "image",
        "weights",
        "weights/read",
        "conv",
        "bn",
        "splat",
        "shape",
        "offset",
        "count",
    ]
    conv = g.by_name()["conv"]
    assert conv.op == "Conv2D"
    assert conv.inputs == ("image", "weights/read", "^weights")
    assert conv.data_inputs == ("image", "weights/read")  # control dependencies carry no data
    assert conv.attr_ints("strides") == (1, 2, 2, 1)
    assert conv.attr_str("padding") == "SAME"
    assert conv.attrs["use_cudnn_on_gpu"].b is True
    assert g.by_name()["bn"].attr_float("epsilon") == pytest.approx(0.001)
    assert g.by_name()["count"].attr_int("value") == -5  # negative int64: 10-byte varint


def test_tensor_content_and_value_lists() -> None:
    nodes = _tiny_graph().by_name()
    np.testing.assert_array_equal(nodes["weights"].attr_tensor().array(), WEIGHTS)
    # Fewer listed values than elements: TensorFlow repeats the last one.
    np.testing.assert_array_equal(nodes["splat"].attr_tensor().array(), np.full((2, 3), 1.5, np.float32))
    np.testing.assert_array_equal(nodes["shape"].attr_tensor().array(), [-1, 1, 4])  # unpacked ints
    np.testing.assert_array_equal(nodes["offset"].attr_tensor().array(), [-3, 7])  # packed ints
    assert nodes["shape"].attr_tensor().array().dtype == np.int32


def test_missing_or_mistyped_attributes_name_the_node() -> None:
    conv = _tiny_graph().by_name()["conv"]
    with pytest.raises(MissingAttrError, match=r"conv.*dilations"):
        conv.attr_ints("dilations")
    with pytest.raises(MissingAttrError, match="not an int"):
        conv.attr_int("padding")


@pytest.mark.parametrize(
    "data",
    [b"", b"\x0a\x05abc", b"\x0b", w.f_bytes(1, b"\x0a\xff")],
    ids=["empty", "truncated", "group wire type", "truncated inner message"],
)
def test_malformed_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(GraphDefError):
        GraphDef.decode(data)


def test_tensor_ref() -> None:
    assert tensor_ref("a/b") == ("a/b", 0)
    assert tensor_ref("a/b:2") == ("a/b", 2)


def _fold_graph() -> ConstantFolder:
    # The shape of TF OD API anchor arithmetic: 1 / float(grid) and range(grid) * stride + offset.
    g = GraphDef.decode(
        w.graph(
            w.const("grid", np.asarray(4, np.int32)),
            w.node("grid_f", "Cast", ["grid"], DstT=w.attr_type(w.DT_FLOAT)),
            w.const("one", np.asarray(1.0, np.float32)),
            w.node("stride", "RealDiv", ["one", "grid_f"]),
            w.const("half", np.asarray(0.5, np.float32)),
            w.node("offset", "Mul", ["half", "stride"]),
            w.const("zero", np.asarray(0, np.int32)),
            w.const("step", np.asarray(1, np.int32)),
            w.node("range", "Range", ["zero", "grid", "step"]),
            w.node("range_f", "Cast", ["range"], DstT=w.attr_type(w.DT_FLOAT)),
            w.node("scaled", "Mul", ["range_f", "stride"]),
            w.node("centres", "Add", ["scaled", "offset"]),
            w.node("pair", "Pack", ["centres", "centres"], axis=w.attr_i(1)),
            w.node("split", "Unpack", ["pair"], axis=w.attr_i(1), num=w.attr_i(2)),
            w.node("image", "Placeholder"),
            w.node("depends_on_image", "Add", ["image", "one"]),
        )
    )
    return ConstantFolder(g.by_name())


def test_folding_computes_what_tensorflow_would() -> None:
    f = _fold_graph()
    centres = np.asarray(f.value("centres"), dtype=np.float64)
    np.testing.assert_allclose(centres, np.array([0.125, 0.375, 0.625, 0.875]))
    assert f.value("centres").dtype == np.float32
    np.testing.assert_allclose(np.asarray(f.value("split:1"), dtype=np.float64), centres)
    assert f.value("pair").shape == (4, 2)


def test_tensors_that_depend_on_an_input_are_not_constant() -> None:
    f = _fold_graph()
    assert not f.is_constant("depends_on_image")
    assert f.is_constant("offset")
    with pytest.raises(NotConstantError, match="Placeholder"):
        f.value("depends_on_image")
