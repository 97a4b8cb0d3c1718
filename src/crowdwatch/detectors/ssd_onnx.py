"""Build an ONNX file from a TF Object Detection API SSD frozen graph (`frozen_inference_graph.pb`)
without TensorFlow: the network between the Preprocessor's resize and the Postprocessor, with
the Preprocessor's pixel scaling kept in front of it. Resize, anchors, box decoding, scores and
NMS stay outside, in numpy (ssd_head.py), driven by the `SsdConfig` stored in the file's
metadata.

The ONNX model takes `image`: N x H x W x 3 float32, RGB 0..255, already resized to the model's
input size (NHWC, as TF), and gives `box_encodings` (N x anchors x 4) and `class_logits`
(N x anchors x classes, background first).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from crowdwatch.detectors.ssd_config import METADATA_KEY, SsdConfig
from crowdwatch.detectors.ssd_graph import SsdGraph, read_ssd_graph
from crowdwatch.detectors.tf_graphdef import GraphDef
from crowdwatch.detectors.tf_to_onnx import Translator

INPUT_NAME = "image"
BOXES_NAME = "box_encodings"
LOGITS_NAME = "class_logits"
OPSET = 17
IR_VERSION = 8  # the IR that goes with opset 17; a newer stamp would be refused by older runtimes
BUILDER_VERSION = "1"
"""Bump when the graph built from the same .pb changes, so stale builds are redone."""

META_SOURCE_SHA256 = "crowdwatch.source_sha256"
META_BUILDER_VERSION = "crowdwatch.builder_version"
META_INPUT = "crowdwatch.input"


def build_model(ssd: SsdGraph, *, source_sha256: str = "") -> onnx.ModelProto:
    nodes, initializers = Translator(ssd.nodes, ssd.folder).translate(
        ssd.input_tensor, INPUT_NAME, {BOXES_NAME: ssd.box_encodings, LOGITS_NAME: ssd.class_logits}
    )
    h, w = ssd.config.input_size
    n = ssd.config.num_anchors
    graph = helper.make_graph(
        nodes,
        "ssd",
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", h, w, 3])],
        outputs=[
            helper.make_tensor_value_info(BOXES_NAME, TensorProto.FLOAT, ["batch", n, 4]),
            helper.make_tensor_value_info(LOGITS_NAME, TensorProto.FLOAT, ["batch", n, "classes"]),
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        producer_name="crowdwatch",
        doc_string="SSD box predictor translated from a TF Object Detection API frozen graph",
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(
        model,
        {
            METADATA_KEY: ssd.config.to_json(),
            META_SOURCE_SHA256: source_sha256,
            META_BUILDER_VERSION: BUILDER_VERSION,
            META_INPUT: f"RGB 0..255 float32 NHWC resized to {h}x{w}; outputs before anchors/NMS",
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def read_config(model: onnx.ModelProto) -> SsdConfig:
    props = {p.key: p.value for p in model.metadata_props}
    return SsdConfig.from_json(props[METADATA_KEY])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_current(onnx_path: Path, source_sha256: str) -> bool:
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:  # any unreadable file is simply rebuilt
        return False
    props = {p.key: p.value for p in model.metadata_props}
    return (
        props.get(META_SOURCE_SHA256) == source_sha256
        and props.get(META_BUILDER_VERSION) == BUILDER_VERSION
        and METADATA_KEY in props
    )


def build_onnx_file(pb_path: Path, onnx_path: Path) -> Path:
    """Write `onnx_path` from the frozen graph at `pb_path` unless an up-to-date build from the
    same graph is there. Atomic (temp file + rename): a crash never leaves a half-written model
    that a later run would load. Returns `onnx_path`."""
    data = pb_path.read_bytes()
    source = _sha256(data)
    if onnx_path.is_file() and _is_current(onnx_path, source):
        return onnx_path
    model = build_model(read_ssd_graph(GraphDef.decode(data)), source_sha256=source)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=onnx_path.parent, prefix=f".{onnx_path.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        tmp.chmod(0o644)  # mkstemp makes it private; a models dir may be shared between users
        os.replace(tmp, onnx_path)
    finally:
        tmp.unlink(missing_ok=True)
    return onnx_path
