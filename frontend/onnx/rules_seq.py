"""Legality checks of the operators sequence models (BERT-style exports) need.

Embedding lookups (``Gather`` of token ids computed at run time), attention
masks (``Cast`` to bool, ``Equal``/``Less``/``Greater``, ``And``/``Or``/``Not``,
``Where``, ``Expand``) and pooling reductions (``ReduceSum``, ``ReduceMax``,
``ReduceL2``). The registry entries are in :mod:`npuc.frontend.onnx.rules`.
"""

from __future__ import annotations

import numpy as np

from npuc.frontend.onnx.registry import (
    OK,
    CheckResult,
    NodeView,
    first_failure,
    require_attr_in,
    require_const,
)


def gather(view: NodeView) -> CheckResult:
    """Constant indices, or indices computed at run time (an embedding lookup
    of token ids). Negative indices count from the end as in ONNX; a run-time
    index outside ``[-n, n)`` is an error in onnxruntime and undefined here
    (npuc cannot check values it only sees at run time)."""
    dtype = view.dtype(1)
    if dtype is not None and dtype not in ("int32", "int64"):
        return False, f"indices are {dtype}; only int32 or int64 indices are supported"
    return OK


def cast(view: NodeView) -> CheckResult:
    """Casts to float32, int32, int64 or bool only."""
    import onnx

    target = view.attr("to")
    allowed = (
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.INT32,
        onnx.TensorProto.INT64,
        onnx.TensorProto.BOOL,
    )
    if target not in allowed:
        name = onnx.TensorProto.DataType.Name(target) if target is not None else "none"
        return False, f"cast to {name} is not supported (float32, int32, int64, bool only)"
    return OK


def expand(view: NodeView) -> CheckResult:
    """The target shape must be a constant (after constant folding)."""
    return require_const(view, 1, "shape")


def reduce_axes(view: NodeView) -> CheckResult:
    """float32, int32 or int64 data; the axes (an input from opset 13 for
    ReduceSum, 18 for the others) must be a non-empty constant or absent
    (absent reduces every axis); noop_with_empty_axes=0."""
    dtype = view.dtype(0)
    if dtype not in (None, "float32", "int32", "int64"):
        return False, f"{view.node.op_type} of {dtype} data is not supported"
    if view.is_const(1) and np.asarray(view.consts[view.input_name(1) or ""]).size == 0:
        return False, "an empty axes input is not supported; omit axes to reduce every axis"
    return first_failure(
        require_const(view, 1, "axes"), require_attr_in(view, "noop_with_empty_axes", 0, (0,))
    )


def recurrent(view: NodeView) -> CheckResult:
    """Unrolled over the static sequence length and run on the CPU: constant W,
    R and B; default activations; no clip, peepholes or input_forget;
    sequence_lens absent or the full length; opset 13 or later; any
    direction, layout, hidden size and (GRU) linear_before_reset."""
    from npuc.frontend.fixups.unroll_recurrent import recurrent_unsupported_reason

    reason = recurrent_unsupported_reason(view.node, view.consts, view.shapes, view.opset)
    return (not reason, reason)
