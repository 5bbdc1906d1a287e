"""Legality checks of the convolution and pooling operators (and LRN).

Split from :mod:`npuc.frontend.onnx.rules`, which holds the registry entries.
The auto_pad, ceil_mode and dilation exceptions here pair with the fix-up
:mod:`npuc.frontend.fixups.explicit_auto_pad`, which rewrites every other
case into explicit pads before this check runs.
"""

from __future__ import annotations

from npuc.frontend.onnx.registry import (
    OK,
    CheckResult,
    NodeView,
    first_failure,
    require_attr_in,
    require_const,
    require_rank,
)


def conv2d(view: NodeView) -> CheckResult:
    """2-D (4-D NCHW input) or 1-D (3-D NCL input, run as 2-D over a height of
    1); the weight must be a constant. Any group count (grouped and depthwise),
    strides, dilations, pads and auto_pad, except auto_pad SAME_UPPER/SAME_LOWER
    with dilations > 1, which onnxruntime refuses."""
    dilated = any(int(d) > 1 for d in (view.attr("dilations") or ()))
    if dilated and view.attr("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        return (
            False,
            f"auto_pad={view.attr('auto_pad')} with dilations {list(view.attr('dilations'))}: "
            "onnxruntime refuses it, so there is no reference to match",
        )
    return first_failure(require_rank(view, 0, (4,), "input"), require_const(view, 1, "weight"))


def conv_transpose2d(view: NodeView) -> CheckResult:
    """2-D (4-D NCHW input) or 1-D (3-D NCL input, run as 2-D), constant
    weight, group=1; the output_shape attribute is not supported (give pads
    and output_padding instead); auto_pad SAME_UPPER/SAME_LOWER only without
    output_padding (onnx's shape inference adds it to the size, the ONNX
    spec and TVM do not)."""
    if view.attr("output_shape") is not None:
        return False, "the output_shape attribute is not supported; use pads/output_padding"
    same = view.attr("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER")
    if same and any(int(p) for p in (view.attr("output_padding") or ())):
        return (
            False,
            f"auto_pad={view.attr('auto_pad')} with output_padding "
            f"{list(view.attr('output_padding'))}: onnx's shape inference and the ONNX spec "
            "disagree on the output size",
        )
    return first_failure(
        require_rank(view, 0, (4,), "input"),
        require_const(view, 1, "weight"),
        require_attr_in(view, "group", 1, (1,)),
    )


def pool2d(view: NodeView) -> CheckResult:
    """2-D (4-D NCHW input) or 1-D (3-D NCL input, run as 2-D); MaxPool's
    Indices output and storage_order=1 are not supported. Any kernel,
    strides, pads, auto_pad, ceil_mode, count_include_pad and (MaxPool)
    dilations, except where onnxruntime refuses or departs from the ONNX
    spec: auto_pad SAME needing negative padding or with dilations > 1;
    auto_pad with ceil_mode=1; AveragePool with count_include_pad=1 where
    ceil_mode=1 adds a last window."""
    if view.node.op_type == "MaxPool" and view.output_used(1):
        return False, "the Indices output of MaxPool is not supported"
    return first_failure(
        require_rank(view, 0, (4,), "input"),
        require_attr_in(view, "storage_order", 0, (0,)),
        _pool_auto_pad(view),
    )


def _pool_auto_pad(view: NodeView) -> CheckResult:
    """auto_pad SAME_UPPER/SAME_LOWER must not need negative padding;
    auto_pad VALID/SAME cannot be combined with ceil_mode=1 nor SAME with
    dilations > 1 (onnxruntime sizes it without the dilation); AveragePool
    with count_include_pad=1 only where ceil_mode=1 adds no window.

    A kernel smaller than the stride can make the SAME padding negative
    (onnxruntime refuses: "padding values must be non-negative"); with
    ceil_mode=1, ONNX shape inference and onnxruntime disagree on the
    output size of an auto-padded pool.
    """
    mode = view.attr("auto_pad", "NOTSET")
    shape = view.shape(0)
    kernel = view.attr("kernel_shape")
    counts_pad = view.node.op_type == "AveragePool" and int(view.attr("count_include_pad", 0))
    if mode in ("NOTSET", "") and int(view.attr("ceil_mode", 0)) and counts_pad:
        # the fix-up turned every other ceil_mode=1 pool into an exact ceil_mode=0 one
        return (
            False,
            "ceil_mode=1 adds a last window here, and with count_include_pad=1 onnxruntime "
            "divides it by its size up to the given pads only, which TVM cannot express",
        )
    if mode in ("NOTSET", "") or shape is None or kernel is None:
        return OK
    if int(view.attr("ceil_mode", 0)):
        return (
            False,
            f"ceil_mode=1 with auto_pad={mode}: ONNX shape inference and onnxruntime "
            "disagree on the output size",
        )
    if mode == "VALID":
        return OK
    spatial = shape[2:]
    strides = view.attr("strides") or [1] * len(spatial)
    dilations = view.attr("dilations") or [1] * len(spatial)
    if any(int(d) > 1 for d in dilations):
        return (
            False,
            f"auto_pad={mode} with dilations {list(dilations)}: onnxruntime sizes the "
            "padding without the dilation, against the ONNX spec, so there is no reference "
            "to match",
        )
    for axis, (size, k, s, d) in enumerate(zip(spatial, kernel, strides, dilations, strict=False)):
        total = (-(-size // s) - 1) * s + (k - 1) * d + 1 - size
        if total < 0:
            return (
                False,
                f"auto_pad={mode} on spatial axis {axis} (size {size}, kernel {k}, stride {s}) "
                f"needs negative padding ({total}); onnxruntime refuses it",
            )
    return OK


def global_pool2d(view: NodeView) -> CheckResult:
    """4-D NCHW input, or 3-D NCL (run as 2-D over a height of 1)."""
    return require_rank(view, 0, (4,), "input")


def lrn(view: NodeView) -> CheckResult:
    """Odd size only. ONNX sums an even window one channel further up than down;
    onnxruntime refuses even sizes and TVM's LRN assumes a centred window."""
    size = view.attr("size")
    if size is None or int(size) < 1 or int(size) % 2 == 0:
        return (
            False,
            f"size={size} is even (or missing): the ONNX window is then asymmetric, which "
            "TVM's LRN does not compute and onnxruntime refuses; only odd sizes are supported",
        )
    return OK
