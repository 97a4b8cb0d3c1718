"""Find the parts of a TF Object Detection API SSD frozen graph: the network's input (the resized
image, after the Preprocessor's resize loop), its two raw outputs (box encodings and class
logits, where the Postprocessor takes them), and the settings around it (`SsdConfig`).

The Postprocessor's entry points are the names the TF OD API gives them in
`ssd_meta_arch.postprocess` (`raw_box_encodings`, `scale_logits`, `convert_scores`); everything
else is read by folding constants and following the graph, not by node names, and the anchor
settings are checked by regenerating the anchors and comparing them with the graph's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crowdwatch.detectors.ssd_config import AnchorLayer, ScoreFn, SsdConfig
from crowdwatch.detectors.ssd_head import generate_anchors
from crowdwatch.detectors.tf_fold import ConstantFolder, NotConstantError
from crowdwatch.detectors.tf_graphdef import GraphDef, GraphDefError, NodeDef, tensor_ref

POSTPROCESSOR = "Postprocessor/"
RAW_BOX_ENCODINGS = "Postprocessor/raw_box_encodings"
SCALE_LOGITS = "Postprocessor/scale_logits"
CONVERT_SCORES = "Postprocessor/convert_scores"
# Ops that end the feed-forward network on the way back from its outputs: the Preprocessor's
# resize loop hands the batch over through a TensorArray (or a graph fed a resized image starts
# at a Placeholder).
INPUT_OPS = frozenset({"TensorArrayGatherV3", "TensorArrayGatherV2", "Placeholder"})
ANCHOR_TOLERANCE = 1e-6


class NotAnSsdGraphError(GraphDefError):
    """The graph does not look like a TF Object Detection API SSD export."""


@dataclass(frozen=True, slots=True, eq=False)
class SsdGraph:
    graph: GraphDef
    nodes: Mapping[str, NodeDef]
    folder: ConstantFolder
    input_tensor: str
    """The resized image batch (N x H x W x 3 float, RGB 0..255) the network starts from."""
    box_encodings: str
    class_logits: str
    anchors: npt.NDArray[np.float32]
    """The graph's own anchors, folded (N x 4, [ymin, xmin, ymax, xmax])."""
    config: SsdConfig


def read_ssd_graph(graph: GraphDef) -> SsdGraph:
    nodes = graph.by_name()
    folder = ConstantFolder(nodes)
    box_encodings = _input_of(nodes, RAW_BOX_ENCODINGS)
    class_logits = _input_of(nodes, SCALE_LOGITS)
    anchors_tensor = _anchor_tensor(nodes, folder)
    anchors = np.asarray(folder.value(anchors_tensor), np.float32)
    input_tensor = _network_input(nodes, folder, [box_encodings, class_logits])
    input_size, align_corners, half_pixel_centers = _resize_settings(nodes, folder)
    post = _postprocess_settings(nodes, folder)
    config = SsdConfig(
        input_size=input_size,
        align_corners=align_corners,
        half_pixel_centers=half_pixel_centers,
        base_anchor_size=_base_anchor_size(nodes, folder, anchors_tensor),
        layers=_anchor_layers(nodes, folder, anchors_tensor),
        scale_factors=post.scale_factors,
        score_fn=post.score_fn,
        logit_scale=post.logit_scale,
        class_offset=post.class_offset,
        iou_threshold=post.iou_threshold,
        score_threshold=post.score_threshold,
        max_per_class=post.max_per_class,
    )
    generated = generate_anchors(config)
    if generated.shape != anchors.shape or not np.allclose(generated, anchors, atol=ANCHOR_TOLERANCE):
        raise NotAnSsdGraphError(
            "anchors regenerated from the graph's settings differ from the graph's own "
            f"(shapes {generated.shape} vs {anchors.shape}): unsupported anchor generator"
        )
    return SsdGraph(graph, nodes, folder, input_tensor, box_encodings, class_logits, anchors, config)


def _node(nodes: Mapping[str, NodeDef], name: str) -> NodeDef:
    node = nodes.get(name)
    if node is None:
        raise NotAnSsdGraphError(f"no node {name}: not a TF Object Detection API SSD graph")
    return node


def _input_of(nodes: Mapping[str, NodeDef], name: str, index: int = 0) -> str:
    return _node(nodes, name).data_inputs[index]


def _consumers(nodes: Mapping[str, NodeDef]) -> dict[str, list[NodeDef]]:
    out: dict[str, list[NodeDef]] = {}
    for node in nodes.values():
        for i in node.data_inputs:
            out.setdefault(tensor_ref(i)[0], []).append(node)
    return out


def _upstream(nodes: Mapping[str, NodeDef], tensor: str) -> set[str]:
    seen: set[str] = set()
    stack = [tensor_ref(tensor)[0]]
    while stack:
        name = stack.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        stack.extend(tensor_ref(i)[0] for i in nodes[name].data_inputs)
    return seen


def _scalar(folder: ConstantFolder, tensor: str) -> float:
    value = np.asarray(folder.value(tensor))
    if value.size != 1:
        raise NotAnSsdGraphError(f"{tensor} is not a scalar (shape {value.shape})")
    return float(value.reshape(()))


# ---- input and preprocessing ---------------------------------------------------------------------


def _network_input(nodes: Mapping[str, NodeDef], folder: ConstantFolder, outputs: list[str]) -> str:
    found: set[str] = set()
    seen: set[str] = set()
    stack = [tensor_ref(t)[0] for t in outputs]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = _node(nodes, name)
        if node.op in INPUT_OPS:
            found.add(name)
            continue
        if node.op == "Const" or name.startswith(POSTPROCESSOR):
            continue
        if folder.is_constant(name):
            continue
        stack.extend(tensor_ref(i)[0] for i in node.data_inputs)
    if len(found) != 1:
        raise NotAnSsdGraphError(f"expected one image input for the network, found {sorted(found)}")
    return found.pop()


def _resize_settings(
    nodes: Mapping[str, NodeDef], folder: ConstantFolder
) -> tuple[tuple[int, int], bool, bool]:
    """(input size, align_corners, half_pixel_centers) of the preprocessor's one resize."""
    resizes = [n for n in nodes.values() if n.op.startswith("Resize")]
    if len(resizes) != 1 or resizes[0].op != "ResizeBilinear":
        raise NotAnSsdGraphError(
            f"expected one ResizeBilinear in the preprocessor, found {[n.op for n in resizes]}"
        )
    node = resizes[0]
    size = np.asarray(folder.value(node.data_inputs[1])).reshape(-1)
    flags = {k: bool(node.attrs[k].b) for k in ("align_corners", "half_pixel_centers") if k in node.attrs}
    return (
        (int(size[0]), int(size[1])),
        flags.get("align_corners", False),
        flags.get("half_pixel_centers", False),
    )


# ---- anchors -------------------------------------------------------------------------------------


def _anchor_tensor(nodes: Mapping[str, NodeDef], folder: ConstantFolder) -> str:
    """The Postprocessor's one input computed from constants only: the anchors."""
    candidates = {
        i
        for n in nodes.values()
        if n.name.startswith(POSTPROCESSOR)
        for i in n.data_inputs
        if not i.startswith(POSTPROCESSOR)
    }
    constant = sorted(
        t for t in candidates if folder.is_constant(t) and np.asarray(folder.value(t)).ndim == 2
    )
    if len(constant) != 1:
        raise NotAnSsdGraphError(f"expected one constant N x 4 anchor input, found {constant}")
    return constant[0]


def _layer_tensors(nodes: Mapping[str, NodeDef], anchors_tensor: str) -> list[str]:
    node = _node(nodes, tensor_ref(anchors_tensor)[0])
    while node.op == "Identity":
        node = _node(nodes, tensor_ref(node.data_inputs[0])[0])
    if node.op != "ConcatV2":
        return [anchors_tensor]  # one feature map
    return list(node.data_inputs[:-1])


def _anchor_layers(
    nodes: Mapping[str, NodeDef], folder: ConstantFolder, anchors_tensor: str
) -> tuple[AnchorLayer, ...]:
    return tuple(_anchor_layer(nodes, folder, t) for t in _layer_tensors(nodes, anchors_tensor))


def _anchor_layer(nodes: Mapping[str, NodeDef], folder: ConstantFolder, tensor: str) -> AnchorLayer:
    # grid_anchor_generator.tile_anchors: heights = scales / sqrt(ar) * base, widths = scales *
    # sqrt(ar) * base; centres = range(n) * stride + offset, for y first, then x.
    within = _upstream(nodes, tensor)
    sub = {n: nodes[n] for n in within}
    consumers = _consumers(sub)
    sqrts = [n for n in sub.values() if n.op == "Sqrt"]
    if len(sqrts) != 1:
        raise NotAnSsdGraphError(f"anchor layer {tensor}: expected one Sqrt of aspect ratios")
    sqrt = sqrts[0]
    ratios = np.asarray(folder.value(sqrt.data_inputs[0]), np.float64).reshape(-1)
    divs = [c for c in consumers.get(sqrt.name, []) if c.op == "RealDiv" and c.data_inputs[1] == sqrt.name]
    if len(divs) != 1:
        raise NotAnSsdGraphError(f"anchor layer {tensor}: no scales / sqrt(aspect ratio)")
    scales = np.asarray(folder.value(divs[0].data_inputs[0]), np.float64).reshape(-1)
    centres = []
    for rng in sorted((n for n in sub.values() if n.op == "Range"), key=lambda n: _order(nodes, n)):
        stride, offset = _centre_line(folder, consumers, rng)
        centres.append((len(np.asarray(folder.value(rng.name))), stride, offset))
    if len(centres) != 2:
        raise NotAnSsdGraphError(f"anchor layer {tensor}: expected two Range ops (y, x), got {len(centres)}")
    (rows, sy, oy), (cols, sx, ox) = centres
    return AnchorLayer(
        grid=(rows, cols),
        scales=tuple(float(s) for s in scales),
        aspect_ratios=tuple(float(r) for r in ratios),
        stride=(sy, sx),
        offset=(oy, ox),
    )


def _order(nodes: Mapping[str, NodeDef], node: NodeDef) -> int:
    # GraphDef keeps nodes in creation order: tile_anchors builds the y range before the x one.
    return list(nodes).index(node.name)


def _centre_line(
    folder: ConstantFolder, consumers: Mapping[str, list[NodeDef]], rng: NodeDef
) -> tuple[float, float]:
    """(stride, offset) of `range(n) [-> Cast] * stride + offset`."""
    prev, node = rng.name, rng
    for _ in range(2):
        nxt = consumers.get(node.name, [])
        if len(nxt) != 1:
            break
        prev, node = node.name, nxt[0]
        if node.op != "Mul":
            continue
        adds = consumers.get(node.name, [])
        if len(adds) == 1 and adds[0].op in ("Add", "AddV2"):
            return _scalar(folder, _other_input(node, prev)), _scalar(
                folder, _other_input(adds[0], node.name)
            )
        break
    raise NotAnSsdGraphError(f"{rng.name}: not followed by * stride + offset")


def _other_input(node: NodeDef, known: str) -> str:
    """The input of a binary `node` that is not produced by node `known`."""
    others = [i for i in node.data_inputs if tensor_ref(i)[0] != known]
    if len(others) != 1:
        raise NotAnSsdGraphError(f"{node.name}: expected one operand besides {known}")
    return others[0]


def _base_anchor_size(
    nodes: Mapping[str, NodeDef], folder: ConstantFolder, anchors_tensor: str
) -> tuple[float, float]:
    # heights = (scales / sqrt(ar)) * base_h and widths = (scales * sqrt(ar)) * base_w: the other
    # operand of those two Muls, the same for every layer.
    tensor = _layer_tensors(nodes, anchors_tensor)[0]
    sub = {n: nodes[n] for n in _upstream(nodes, tensor)}
    consumers = _consumers(sub)
    sqrt = next(n for n in sub.values() if n.op == "Sqrt")
    found: dict[str, float] = {}
    for first in consumers.get(sqrt.name, []):
        kind = "h" if first.op == "RealDiv" else "w" if first.op == "Mul" else None
        if kind is None:
            continue
        for second in consumers.get(first.name, []):
            if second.op == "Mul":
                found[kind] = _scalar(folder, _other_input(second, first.name))
    if set(found) != {"h", "w"}:
        raise NotAnSsdGraphError("could not find the base anchor size")
    return found["h"], found["w"]


# ---- postprocessing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Postprocess:
    scale_factors: tuple[float, float, float, float]
    score_fn: ScoreFn
    logit_scale: float
    class_offset: int
    iou_threshold: float
    score_threshold: float
    max_per_class: int


def _postprocess_settings(nodes: Mapping[str, NodeDef], folder: ConstantFolder) -> _Postprocess:
    scores = _node(nodes, CONVERT_SCORES)
    fn: ScoreFn
    if scores.op == "Sigmoid":
        fn = "sigmoid"
    elif scores.op == "Softmax":
        fn = "softmax"
    else:
        raise NotAnSsdGraphError(f"unsupported score conversion {scores.op}")
    nms = [n for n in nodes.values() if n.op.startswith("NonMaxSuppression")]
    if len(nms) != 1:
        raise NotAnSsdGraphError(f"expected one NonMaxSuppression op, found {len(nms)}")
    max_size, iou, score = nms[0].data_inputs[2:5]
    return _Postprocess(
        scale_factors=_scale_factors(nodes, folder),
        score_fn=fn,
        logit_scale=_scalar(folder, _input_of(nodes, SCALE_LOGITS, 1)),
        class_offset=_class_offset(nodes, folder, scores),
        iou_threshold=_scalar(folder, iou),
        score_threshold=_scalar(folder, score),
        max_per_class=_max_size(nodes, folder, max_size),
    )


def _scale_factors(nodes: Mapping[str, NodeDef], folder: ConstantFolder) -> tuple[float, float, float, float]:
    # FasterRcnnBoxCoder.decode: tf.unstack(rel_codes) then ty / scale_y, tx / scale_x, ...
    decode = [n for n in nodes.values() if n.name.startswith(POSTPROCESSOR + "Decode/") and n.op == "Exp"]
    if not decode:
        raise NotAnSsdGraphError("no Faster R-CNN box decoding (Exp) in the postprocessor")
    unpacks = [
        n
        for n in nodes.values()
        if n.op == "Unpack"
        and n.name.startswith(POSTPROCESSOR + "Decode/")
        and "get_center_coordinates_and_sizes" not in n.name
    ]
    if len(unpacks) != 1:
        raise NotAnSsdGraphError(f"expected one unstack of the box encodings, found {len(unpacks)}")
    codes = unpacks[0].name
    consumers = _consumers(nodes)
    factors: list[float] = []
    for k in range(4):
        ref = codes if k == 0 else f"{codes}:{k}"
        divs = [c for c in consumers.get(codes, []) if c.op == "RealDiv" and c.data_inputs[0] == ref]
        factors.append(_scalar(folder, divs[0].data_inputs[1]) if divs else 1.0)
    return factors[0], factors[1], factors[2], factors[3]


def _class_offset(nodes: Mapping[str, NodeDef], folder: ConstantFolder, scores: NodeDef) -> int:
    """How many leading score columns the postprocessor slices off (the background class)."""
    frontier = [scores.name]
    consumers = _consumers(nodes)
    for _ in range(3):
        nxt: list[str] = []
        for name in frontier:
            for c in consumers.get(name, []):
                if c.op == "Slice" and tensor_ref(c.data_inputs[0])[0] == name:
                    begin = np.asarray(folder.value(c.data_inputs[1])).reshape(-1)
                    return int(begin[-1])
                if c.op == "Identity":
                    nxt.append(c.name)
        frontier = nxt
    return 0


def _max_size(nodes: Mapping[str, NodeDef], folder: ConstantFolder, tensor: str) -> int:
    # max_output_size = min(max_size_per_class, number of boxes): take the constant operand.
    try:
        return int(_scalar(folder, tensor))
    except NotConstantError:
        pass
    node = _node(nodes, tensor_ref(tensor)[0])
    if node.op == "Minimum":
        for i in node.data_inputs:
            if folder.is_constant(i):
                return int(_scalar(folder, i))
    raise NotAnSsdGraphError(f"cannot read the NMS output size from {tensor}")
