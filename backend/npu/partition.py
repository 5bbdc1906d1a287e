"""Which quantized layers the NPU runs (legality checks) and the NPU partitions they form.

Each legality check takes the layer's node and the :class:`QuantizedModel` and
returns ``(ok, reason)``; its docstring is the user-facing rule that
``docs/supported_ops.md`` lists (``tools/gen_supported_ops.py``). A layer the
NPU cannot run *exactly* stays on the CPU with the reason: correctness first.
Integer layers kept on the CPU still run the integer executor's formulas (an
integer CPU region), float layers run in float32.

Partitioning (:func:`.partition_relax.partition_relax`) groups NPU layers into partitions
(:class:`Partition`), each of which :mod:`npuc.backend.npu.lower` turns into one
:class:`~.ops.NpuGraph`. It is done with Relax's pattern machinery on the float
module (:mod:`.partition_relax`); :func:`partition_walk`, the graph walk it
replaced (consecutive NPU-legal layers in topological order), stays as the
reference the tests compare it with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from npuc.backend.npu.layout import concat_axis, storage_shape
from npuc.backend.npu.tensor import DTYPE_RANGES, window_out
from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qmodel import QuantizedModel

Verdict = tuple[bool, str]
ResizeMap = Callable[[Node, tuple[int, ...]], np.ndarray]
OK: Verdict = (True, "")
MAX_KERNEL = 255


def _pools_geometry(node: Node, shape: tuple[int, ...]) -> Verdict:
    kh, kw = node.attr("kernel")
    sh, sw = node.attr("strides")
    top, left, bottom, right = node.attr("padding")
    if tuple(node.attr("dilation") or (1, 1)) != (1, 1):
        return False, "dilated pooling is not supported by the NPU"
    if not (1 <= kh <= MAX_KERNEL and 1 <= kw <= MAX_KERNEL and 1 <= sh <= 15 and 1 <= sw <= 15):
        return False, f"kernel {kh}x{kw} / stride {sh}x{sw} outside the ISA's ranges (255, 15)"
    if max(top, bottom) >= kh or max(left, right) >= kw:
        return False, f"padding {node.attr('padding')} not below the kernel {kh}x{kw}"
    _, _, h, w = shape
    eh, ew = window_out(h, top, bottom, kh, sh), window_out(w, left, right, kw, sw)
    if (eh, ew) != tuple(node.out.shape[2:]):
        return False, f"output {node.out.shape[2:]} is not the floor-mode geometry {(eh, ew)}"
    return OK


def check_conv2d(node: Node, qm: QuantizedModel) -> Verdict:
    """conv2d: groups 1 or depthwise (groups = input channels = output channels); stride and
    dilation 1..15, kernel and padding at most 255, each pad smaller than the dilated kernel."""
    _, cin, _, _ = qm.graph.tensor_type(node.inputs[0]).shape
    groups = node.attr("groups")
    cout = node.out.shape[1]
    if groups not in (1, cin) or (groups != 1 and cout != cin):
        return False, f"grouped convolution (groups {groups}, {cin} -> {cout} channels)"
    kh, kw = node.consts["weight"].shape[2:]
    strides, dilation = node.attr("strides"), node.attr("dilation")
    if not all(1 <= s <= 15 for s in (*strides, *dilation)):
        return False, f"stride {strides} or dilation {dilation} outside 1..15"
    pads = node.attr("padding")
    if kh > MAX_KERNEL or kw > MAX_KERNEL or max(pads) > MAX_KERNEL:
        return False, "kernel or padding above 255"
    top, left, bottom, right = pads
    if (
        max(top, bottom) >= dilation[0] * (kh - 1) + 1
        or max(left, right) >= dilation[1] * (kw - 1) + 1
    ):
        return False, f"padding {pads} reaches past the dilated kernel"
    return OK


def check_dense(node: Node, qm: QuantizedModel) -> Verdict:
    """dense (fully connected): runs as a 1x1 convolution; input of shape (1, K) or (1, T, K)."""
    shape = qm.graph.tensor_type(node.inputs[0]).shape
    if len(shape) not in (2, 3):
        return False, f"dense input of rank {len(shape)} (the NPU runs (1, K) or (1, T, K))"
    return OK


def broadcast_channels(shape: tuple[int, ...], out: tuple[int, ...]) -> bool:
    """Whether ``shape`` is ``(1, C, 1, 1)`` broadcast to ``out = (1, C, H, W)``."""
    return len(shape) == len(out) == 4 and tuple(shape) == (1, out[1], 1, 1)


def check_eltwise(node: Node, qm: QuantizedModel) -> Verdict:
    """add, subtract, multiply, maximum, minimum: both operands of the output's shape, or one
    of shape (1, C, 1, 1) against (1, C, H, W) (squeeze-excite; expanded on the NPU by a nearest
    upsampling, which copies values exactly); other broadcasting stays on the CPU. A constant
    operand is expanded to the output's shape and stored as a constant."""
    shapes = [tuple(qm.graph.tensor_type(n).shape) for n in node.inputs]
    out = tuple(node.out.shape)
    if any(s != out and not broadcast_channels(s, out) for s in shapes) or all(
        s != out for s in shapes
    ):
        return False, f"broadcasting {' * '.join(str(s) for s in shapes)} -> {out}"
    p = qm.layers[node.name].params
    if "const" in p:
        lo, hi = DTYPE_RANGES.get(str(np.asarray(p["const"]).dtype), (1, 0))
        if not lo <= int(p["const_zp"]) <= hi:
            return False, "constant operand stored in a type the NPU does not have"
    return OK


def check_clip(node: Node, qm: QuantizedModel) -> Verdict:
    """clip: a requantizing copy with the clamp (always on the NPU)."""
    return OK


def check_max_pool2d(node: Node, qm: QuantizedModel) -> Verdict:
    """max_pool2d: kernel up to 255, stride 1..15, no dilation, padding below the kernel, floor
    mode; the input and output quantized alike."""
    if qm.tensors[node.inputs[0]] != qm.tensors[node.name]:
        return False, "max pool whose output is quantized unlike its input"
    return _pools_geometry(node, qm.graph.tensor_type(node.inputs[0]).shape)


def check_avg_pool2d(node: Node, qm: QuantizedModel) -> Verdict:
    """avg_pool2d: as max_pool2d; 1 / (kernel area) folded into the output multiplier."""
    return _pools_geometry(node, qm.graph.tensor_type(node.inputs[0]).shape)


def check_global_avg_pool(node: Node, qm: QuantizedModel) -> Verdict:
    """global_avg_pool: an average pool over the whole map; height and width at most 255."""
    _, _, h, w = qm.graph.tensor_type(node.inputs[0]).shape
    if h > MAX_KERNEL or w > MAX_KERNEL:
        return False, f"{h}x{w} map larger than the 255x255 pooling window"
    return OK


def check_unary(node: Node, qm: QuantizedModel) -> Verdict:
    """Unary activations (sigmoid, tanh, silu, hardswish, gelu, ...): a table lookup on the ITP
    (256 entries for 8-bit input, interpolated 2^bits + 1 entries for int16)."""
    p = qm.layers[node.name].params
    if str(np.asarray(p.get("lut")).dtype) != qm.tensors[node.name].dtype:
        return False, "lookup table of another type than the output"
    return OK


def check_concat(node: Node, qm: QuantizedModel) -> Verdict:
    """concat: along channels, height or width (not batch); inputs quantized unlike the output
    are requantized on the NPU first."""
    rank = len(node.out.shape)
    if concat_axis(rank, int(node.attr("axis")) % rank) is None:
        return False, f"concat along axis {node.attr('axis')} of a rank-{rank} tensor"
    return OK


def check_move(node: Node, qm: QuantizedModel) -> Verdict:
    """reshape, transpose: mapped exactly onto the NPU's HWC layout as DMA copies and strided
    transposes (one transpose, a reshape, one more transpose at most); otherwise the CPU."""
    from npuc.backend.npu.layout import move_chain

    if qm.tensors[node.inputs[0]] != qm.tensors[node.name]:
        return False, "data movement whose output is quantized unlike its input"
    if move_chain(node, qm.graph.tensor_type(node.inputs[0]).shape) is None:
        return False, "no exact mapping onto HWC transposes and reshapes"
    return OK


def check_slice(node: Node, qm: QuantizedModel) -> Verdict:
    """slice: unit strides, the batch axis whole, a tensor of rank 2 to 4 (a DMA box copy)."""
    shape = qm.graph.tensor_type(node.inputs[0]).shape
    rank = len(shape)
    if rank not in (2, 3, 4) or any(int(s) != 1 for s in node.attr("strides") or ()):
        return False, f"slice of a rank-{rank} tensor or with strides"
    if qm.tensors[node.inputs[0]] != qm.tensors[node.name]:
        return False, "slice whose output is quantized unlike its input"
    if any(concat_axis(rank, int(a) % rank) is None for a in node.attr("axes")):
        return False, "slice along the batch axis"
    return OK


def check_resize(node: Node, qm: QuantizedModel) -> Verdict:
    """resize: nearest-neighbour upsampling by integer factors whose source index map is
    ``y // f`` (the integer executor's map is compared element by element); bilinear and
    other modes run on the CPU."""
    if node.attr("method") != "nearest":
        return False, f"{node.attr('method')} resize"
    shape = qm.graph.tensor_type(node.inputs[0]).shape
    oh, ow = node.out.shape[2:]
    if len(shape) != 4 or oh % shape[2] or ow % shape[3]:
        return False, f"resize {shape} -> {node.out.shape} is not an integer upsampling"
    return OK


def check_pad(node: Node, qm: QuantizedModel) -> Verdict:
    """pad: a standalone pad runs on the CPU (pads before convolutions and pools are folded
    into them)."""
    return False, "standalone pad (not folded into a convolution or pool)"


RULES: Mapping[str, Callable[[Node, QuantizedModel], Verdict]] = {
    "conv2d": check_conv2d,
    "dense": check_dense,
    "add": check_eltwise,
    "subtract": check_eltwise,
    "multiply": check_eltwise,
    "maximum": check_eltwise,
    "minimum": check_eltwise,
    "clip": check_clip,
    "max_pool2d": check_max_pool2d,
    "avg_pool2d": check_avg_pool2d,
    "global_avg_pool": check_global_avg_pool,
    "unary": check_unary,
    "concat": check_concat,
    "reshape": check_move,
    "transpose": check_move,
    "slice": check_slice,
    "resize": check_resize,
    "pad": check_pad,
}


def _resize_exact(node: Node, qm: QuantizedModel, resize_map: ResizeMap | None) -> Verdict:
    if resize_map is None:
        return False, "nearest resize without the integer executor's index map to check"
    shape = tuple(qm.graph.tensor_type(node.inputs[0]).shape)
    fh, fw = node.out.shape[2] // shape[2], node.out.shape[3] // shape[3]
    rule = np.arange(int(np.prod(shape))).reshape(shape).repeat(fh, axis=2).repeat(fw, axis=3)
    expected = resize_map(node, shape)
    if rule.shape != expected.shape or not np.array_equal(rule, expected):
        return False, f"nearest resize whose index map is not (y // {fh}, x // {fw})"
    return OK


def npu_legal(node: Node, qm: QuantizedModel, resize_map: ResizeMap | None = None) -> Verdict:
    """``(True, "")`` when the NPU runs ``node`` exactly, else ``(False, reason)``.

    Common rules: the quantizer made the layer integer (``run_on == "npu"``);
    every tensor has batch 1, rank at most 4 and an 8-bit or int16 type.
    """
    layer = qm.layers[node.name]
    if layer.run_on != "npu":
        return False, f"float layer: {layer.reason}" if layer.reason else "float layer"
    rule = RULES.get(node.op)
    if rule is None:
        return False, f"{node.op} has no NPU lowering"
    for name in (*node.inputs, node.name):
        shape = qm.graph.tensor_type(name).shape
        if storage_shape(shape) is None:
            return False, f"tensor {name} of shape {shape} (batch 1, rank <= 4 only)"
        if name not in qm.tensors or qm.tensors[name].dtype not in DTYPE_RANGES:
            return False, f"tensor {name} is not stored as int8, uint8 or int16"
    verdict = rule(node, qm)
    if verdict[0] and node.op == "resize":
        return _resize_exact(node, qm, resize_map)
    return verdict


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one layer runs: ``"npu"`` or ``"cpu"``, the reason for the CPU, its partition."""

    layer: str
    op: str
    target: str
    reason: str
    partition: int  # index into partitions, -1 for CPU layers


@dataclass(frozen=True, slots=True)
class Partition:
    """NPU layers run as one program (names, graph order) with the tensors crossing its border;
    everything it reads from outside is made before its first layer, where the runtime runs it."""

    index: int
    layers: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"npu_{self.index}"


INPUT_TRANSPOSE = (
    "layout change of a model input: done on the host where the input is quantized"
    " (on the NPU it is a strided copy; an NHWC input is already the NPU's storage order)"
)


def placement_verdict(
    node: Node,
    qm: QuantizedModel,
    resize_map: ResizeMap | None = None,
    exclude: Mapping[str, str] | None = None,
) -> Verdict:
    """:func:`npu_legal`, then the placement rules: a transpose reading a model input stays
    on the host (:data:`INPUT_TRANSPOSE`); a layer in ``exclude`` stays on the CPU with the
    reason given there."""
    ok, reason = npu_legal(node, qm, resize_map)
    if ok and node.op == "transpose" and node.inputs[0] in {name for name, _ in qm.graph.inputs}:
        ok, reason = False, INPUT_TRANSPOSE
    if ok and exclude and node.name in exclude:
        ok, reason = False, exclude[node.name]
    return ok, reason


def partition_walk(
    qm: QuantizedModel,
    resize_map: ResizeMap | None = None,
    exclude: Mapping[str, str] | None = None,
) -> tuple[list[Partition], list[Placement]]:
    """Group consecutive NPU-legal layers; every layer's placement with its reason.

    ``resize_map(node, input_shape)``: the integer executor's flat source index
    of every output element of a nearest resize (nearest resizes stay on the
    CPU without it). ``exclude``: layers kept on the CPU, with the reason (the
    code generator refused them, e.g. a layer that does not fit SRAM). A transpose
    that reads a model input (a TFLite NHWC input going to NCHW) stays on the CPU.
    """
    graph = qm.graph
    consumers = graph.consumers()
    groups: list[list[Node]] = []
    placements: list[Placement] = []
    previous_npu = False
    for node in graph.nodes:
        ok, reason = placement_verdict(node, qm, resize_map, exclude)
        if ok and not previous_npu:
            groups.append([])
        if ok:
            groups[-1].append(node)
        placements.append(
            Placement(
                node.name, node.op, "npu" if ok else "cpu", reason, len(groups) - 1 if ok else -1
            )
        )
        previous_npu = ok
    parts = [make_partition(index, nodes, qm, consumers) for index, nodes in enumerate(groups)]
    return parts, placements


def make_partition(
    index: int, nodes: Sequence[Node], qm: QuantizedModel, consumers: Mapping[str, list[Node]]
) -> Partition:
    """The partition of ``nodes`` (topological order): the tensors it reads from outside
    (first use order) and the tensors it makes that a graph output or an outside layer reads."""
    made = {n.name for n in nodes}
    ins: list[str] = []
    for n in nodes:
        for t in n.inputs:  # x + x reads x once
            if t not in made and t not in ins:
                ins.append(t)
    outs = [
        n.name
        for n in nodes
        if n.name in qm.graph.outputs or any(c.name not in made for c in consumers.get(n.name, []))
    ]
    return Partition(index, tuple(n.name for n in nodes), tuple(ins), tuple(outs))
