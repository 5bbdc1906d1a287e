"""The ONNX operators npuc supports, with their legality checks.

Every rule here is covered by a test that compiles a small graph through the
CPU path and compares it with onnxruntime (tests/frontend/test_op_zoo_*.py).
Ranges are ONNX default-domain opsets; npuc tests opsets 9 (the onnx model
zoo graphs), 11, 13, 17, 18 and 20, and the onnx node conformance cases up
to opset 28 (docs/conformance.md).
"""

from __future__ import annotations

import numpy as np

from npuc.frontend.onnx import rules_conv, rules_seq
from npuc.frontend.onnx.registry import (
    OK,
    Check,
    CheckResult,
    NodeView,
    OpRule,
    first_failure,
    require_attr_in,
    require_const,
    require_rank,
)

# The newest default-domain opset of onnx 1.23. Every operator below either has
# the same schema from opset 22 to 28 or only gained element types there (Pad,
# Reshape, Transpose, Flatten, Squeeze, Unsqueeze, Identity, Constant, Cast;
# types npuc does not import are declined by the dtype check). TVM's converters
# take the newest ``_impl_vN`` with N <= the model's opset, so nothing changes.
LATEST_OPSET = 28


def matmul(view: NodeView) -> CheckResult:
    """Both operands at least 2-D (batched matmul broadcasts the batch dims)."""
    for index, what in ((0, "A"), (1, "B")):
        rank = view.rank(index)
        if rank is None or rank < 2:
            return False, f"operand {what} must be at least 2-D (it is {rank}-D)"
    return OK


def reshape(view: NodeView) -> CheckResult:
    """The target shape must be a constant (after constant folding); allowzero=0."""
    return first_failure(
        require_const(view, 1, "shape"), require_attr_in(view, "allowzero", 0, (0,))
    )


def const_axes(view: NodeView) -> CheckResult:
    """The axes input (opset 13+), when given, must be a constant."""
    return require_const(view, 1, "axes")


def split(view: NodeView) -> CheckResult:
    """The split sizes (input from opset 13), when given, must be a constant."""
    return require_const(view, 1, "split")


def slice_(view: NodeView) -> CheckResult:
    """starts, ends, axes and steps must be constants (any steps, including
    negative ones)."""
    names = ("starts", "ends", "axes", "steps")
    return first_failure(*(require_const(view, i + 1, n) for i, n in enumerate(names)))


def pad(view: NodeView) -> CheckResult:
    """Modes constant, reflect and edge; pads and constant_value must be
    constants; the axes input (opset 18) is not supported."""
    if view.opset < 11:
        return require_attr_in(view, "mode", "constant", ("constant", "reflect", "edge"))
    if view.has_input(3):
        return False, "the axes input of Pad is not supported"
    return first_failure(
        require_attr_in(view, "mode", "constant", ("constant", "reflect", "edge")),
        require_const(view, 1, "pads"),
        require_const(view, 2, "constant_value"),
        _reflect_fits(view),
    )


def _reflect_fits(view: NodeView) -> CheckResult:
    """Reflect padding on an axis of size n must be at most n - 1 on each side.

    Wider reflect padding has no source element to mirror: onnxruntime
    refuses it ("pre-pad exceeds maximum allowed"), TVM would read out of
    bounds.
    """
    shape = view.shape(0)
    if view.attr("mode", "constant") != "reflect" or shape is None:
        return OK
    raw = view.consts.get(view.input_name(1) or "") if view.opset >= 11 else view.attr("pads")
    if raw is None:
        return OK
    pads = [int(p) for p in np.asarray(raw).reshape(-1)]
    rank = len(shape)
    if len(pads) != 2 * rank:
        return OK
    for axis, size in enumerate(shape):
        for side, width in (("before", pads[axis]), ("after", pads[axis + rank])):
            if width > size - 1:
                return (
                    False,
                    f"reflect padding of {width} {side} axis {axis} (size {size}) is wider than "
                    f"the axis allows ({size - 1}); onnxruntime refuses it too",
                )
    return OK


def resize(view: NodeView) -> CheckResult:
    """4-D NCHW input; mode nearest or linear; coordinate_transformation_mode
        half_pixel, pytorch_half_pixel, align_corners or asymmetric; scales or
        sizes must be constants; no antialias, no axes, keep_aspect_ratio_policy
        stretch; each scale must equal output size / input size exactly (e.g. 2
        or 0.5 on an even size, not 0.6 on a size of 2: ONNX places the samples by
    the scale, TVM by the sizes' ratio, so other scales would give different
    values)."""
    if view.attr("axes") is not None:
        return False, "the axes attribute of Resize is not supported"
    return first_failure(
        _resize_attrs(view),
        _resize_scales_exact(view),
    )


def _resize_attrs(view: NodeView) -> CheckResult:
    return first_failure(
        require_rank(view, 0, (4,), "input"),
        require_attr_in(view, "mode", "nearest", ("nearest", "linear")),
        require_attr_in(
            view,
            "coordinate_transformation_mode",
            "half_pixel",
            ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"),
        ),
        require_attr_in(view, "antialias", 0, (0,)),
        require_attr_in(view, "keep_aspect_ratio_policy", "stretch", ("stretch",)),
        require_const(view, 1, "roi"),
        require_const(view, 2, "scales"),
        require_const(view, 3, "sizes"),
    )


def _resize_scales_exact(view: NodeView) -> CheckResult:
    """Constant scales must equal output size / input size exactly on every axis.

    ONNX computes coordinates from the given scale, TVM 0.27 from the sizes'
    ratio; the two agree only when ``floor(in * scale) / in == scale``.
    """
    shape = view.shape(0)
    if not view.is_const(2) or shape is None:
        return OK
    scales = np.asarray(view.consts[view.input_name(2) or ""], dtype=np.float32).reshape(-1)
    if scales.size != len(shape):
        return OK
    for axis, (in_size, scale) in enumerate(zip(shape, scales, strict=True)):
        out_size = int(np.floor(np.float64(in_size) * np.float64(scale)))
        if out_size < 1 or np.float32(out_size) / np.float32(in_size) != scale:
            return (
                False,
                f"scale {float(scale):g} on axis {axis} is not output size / input size "
                f"({in_size} -> {out_size}, ratio {out_size / in_size:g}); ONNX places the "
                f"samples by the scale {float(scale):g}, TVM by the ratio, so the values "
                "would differ; npuc compiles only scales that divide the size exactly",
            )
    return OK


def clip(view: NodeView) -> CheckResult:
    """min and max (inputs from opset 11), when given, must be constants."""
    return first_failure(require_const(view, 1, "min"), require_const(view, 2, "max"))


def batch_norm(view: NodeView) -> CheckResult:
    """Inference form only: training_mode=0 and only the Y output used;
    scale, bias, mean and var must be constants."""
    if any(view.output_used(i) for i in range(1, 5)):
        return False, "only inference BatchNormalization (one output) is supported"
    return first_failure(
        require_attr_in(view, "training_mode", 0, (0,)),
        *(require_const(view, i, n) for i, n in enumerate(("scale", "B", "mean", "var"), 1)),
    )


def layer_norm(view: NodeView) -> CheckResult:
    """Only the Y output may be used (not Mean / InvStdDev); any axis; Scale and B
    of any shape that broadcasts to the normalised shape ``X.shape[axis:]``."""
    if view.output_used(1) or view.output_used(2):
        return False, "the Mean/InvStdDev outputs of LayerNormalization are not supported"
    x_shape = view.shape(0)
    axis = int(view.attr("axis", -1))
    if x_shape is None:
        return False, "the input has no static shape after shape inference"
    if not -len(x_shape) <= axis < len(x_shape):
        return False, f"axis {axis} is out of range for a {len(x_shape)}-D input"
    target = x_shape[axis % len(x_shape) :]
    for index, what in ((1, "Scale"), (2, "B")):
        shape = view.shape(index)
        if shape is None:
            if view.has_input(index):
                return False, f"{what} has no static shape after shape inference"
            continue
        fits = len(shape) <= len(target) and all(
            s in (1, t) for s, t in zip(shape[::-1], target[::-1], strict=False)
        )
        if not fits:
            return (
                False,
                f"{what} of shape {'x'.join(map(str, shape))} does not broadcast to the "
                f"normalised shape {'x'.join(map(str, target))}",
            )
    return OK


def dropout(view: NodeView) -> CheckResult:
    """Inference only: the mask output must be unused and training_mode (input
    from opset 12), when given, a constant false, or true with a constant
    ratio of 0 (Dropout is then the identity)."""
    if view.output_used(1):
        return False, "the mask output of Dropout is not supported"
    if view.has_input(2):
        if not view.is_const(2):
            return (
                False,
                f"training_mode ({view.input_name(2)!r}) must be a constant false, "
                "but is computed at run time",
            )
        training = bool(np.asarray(view.consts[view.input_name(2) or ""]).any())
        zero_ratio = (
            view.is_const(1) and not np.asarray(view.consts[view.input_name(1) or ""]).any()
        )
        if training and not zero_ratio:
            return False, "training_mode=1 is not supported (npuc compiles inference only)"
    return OK


def gelu(view: NodeView) -> CheckResult:
    """approximate none (erf) or tanh."""
    return require_attr_in(view, "approximate", "none", ("none", "tanh"))


def pow_(view: NodeView) -> CheckResult:
    """Base and exponent must both be float32; the exponent must be a constant."""
    for index, what in ((0, "base"), (1, "exponent")):
        dtype = view.dtype(index)
        if dtype != "float32":
            return (
                False,
                f"the {what} is {dtype or 'of unknown type'}; only float32 Pow is supported",
            )
    return require_const(view, 1, "exponent")


def prelu(view: NodeView) -> CheckResult:
    """The slope must be a constant."""
    return require_const(view, 1, "slope")


def _rule(op: str, since: int = 9, check: Check | None = None, summary: str = "") -> OpRule:
    return OpRule(op, since, LATEST_OPSET, check, summary)


RULES: tuple[OpRule, ...] = (
    # convolution and pooling
    _rule("Conv", check=rules_conv.conv2d),
    _rule("ConvTranspose", check=rules_conv.conv_transpose2d),
    _rule("MaxPool", check=rules_conv.pool2d),
    _rule("AveragePool", check=rules_conv.pool2d),
    _rule("GlobalAveragePool", check=rules_conv.global_pool2d),
    _rule("GlobalMaxPool", check=rules_conv.global_pool2d),
    _rule("LRN", check=rules_conv.lrn),
    # dense
    _rule("Gemm"),
    _rule("MatMul", check=matmul),
    # element-wise arithmetic (numpy broadcasting)
    _rule("Add"),
    _rule("Sub"),
    _rule("Mul"),
    _rule("Div"),
    _rule("Pow", check=pow_),
    _rule("Sqrt"),
    _rule("Exp"),
    _rule("Erf"),
    _rule("Sum"),
    # activations
    _rule("Relu"),
    _rule("LeakyRelu"),
    _rule("PRelu", check=prelu),
    _rule("Clip", check=clip),
    _rule("Sigmoid"),
    _rule("HardSigmoid"),
    _rule("HardSwish", since=14),
    _rule("Tanh"),
    _rule("Gelu", since=20, check=gelu),
    _rule("Softmax"),
    # normalisation
    _rule("BatchNormalization", check=batch_norm),
    _rule("LayerNormalization", since=17, check=layer_norm),
    _rule("ReduceMean", check=const_axes),
    # data movement
    _rule("Concat"),
    _rule("Split", check=split),
    _rule("Slice", since=10, check=slice_),
    _rule("Pad", check=pad),
    _rule("Resize", since=11, check=resize),
    _rule("Transpose"),
    _rule("Reshape", check=reshape),
    _rule("Flatten"),
    _rule("Squeeze", check=const_axes),
    _rule("Unsqueeze", check=const_axes),
    _rule("Gather", check=rules_seq.gather),
    _rule("Cast", check=rules_seq.cast),
    # masks and pooling of sequence models (BERT-style exports)
    _rule("Expand", since=13, check=rules_seq.expand),
    _rule("Where"),
    _rule("Equal", since=7),
    _rule("Less", since=7),
    _rule("Greater", since=7),
    _rule("And", since=7),
    _rule("Or", since=7),
    _rule("Not", since=1),
    _rule("ReduceSum", check=rules_seq.reduce_axes),
    _rule("ReduceMax", check=rules_seq.reduce_axes),
    _rule("ReduceL2", check=rules_seq.reduce_axes),
    # recurrent layers, unrolled (frontend/fixups/unroll_recurrent.py)
    _rule("LSTM", check=rules_seq.recurrent),
    _rule("GRU", check=rules_seq.recurrent),
    # no-ops at inference
    _rule("Identity"),
    _rule("Dropout", check=dropout),
    _rule("Constant"),
)

RULES_BY_OP: dict[str, OpRule] = {r.op_type: r for r in RULES}
