"""``npuc inspect`` for models imported straight to Relax (TFLite, PyTorch ``.pt2``).

Guarantees: :func:`summarize_imported` imports the model exactly as
:func:`npuc.frontend.load` does, so the unsupported operators it lists are
those ``npuc build`` would reject (it lists them instead of raising). The
operator histogram, parameter count and MACs are read from the imported
Relax module: operators are Relax operator names (``nn.conv2d``,
``matmul``), parameters are the elements of floating-point constants, and
MACs are counted for ``nn.conv1d/2d/3d``, ``nn.conv*_transpose`` and
``matmul`` from their static shapes and layouts.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from npuc.core.errors import UnsupportedError
from npuc.frontend.summary import ImportProblem, LayerMacs, ModelSummary

RELAX_MACS_NOTE = (
    "MACs = multiply-accumulates of Relax nn.conv*, nn.conv*_transpose and matmul "
    "(grouped/depthwise convs count the channels each filter reads); "
    "element-wise, pooling and normalisation ops count 0"
)

_CONV_OPS = ("relax.nn.conv1d", "relax.nn.conv2d", "relax.nn.conv3d")
_CONV_T_OPS = ("relax.nn.conv1d_transpose", "relax.nn.conv2d_transpose")


def summarize_imported(
    path: str | os.PathLike[str],
    fmt: str,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Any:
    """Summarise a TFLite or ``.pt2`` model; returns a :class:`~npuc.frontend.inspect.ModelSummary`.

    Raises
    ------
    InvalidInputError
        As :func:`npuc.frontend.load` does (bad file, bad ``input_shapes``).
    """
    from npuc.frontend.dispatch import load

    try:
        mod, info = load(path, input_shapes)
    except UnsupportedError as err:
        problems = tuple(ImportProblem(str(n)) for n in err.nodes) or (ImportProblem(err.message),)
        return ModelSummary(
            source_path=str(path),
            source_format=fmt,
            opset=None,
            declared_inputs=(),
            inputs=(),
            outputs=(),
            op_histogram={},
            parameter_count=0,
            layers=(),
            total_macs=0,
            unsupported=problems,
            macs_note=RELAX_MACS_NOTE,
        )
    calls, constants = _walk(mod["main"])
    histogram = Counter(_op_label(call) for _, call in calls)
    layers = tuple(
        LayerMacs(var_name, _op_label(call), _call_macs(call, out_shape))
        for var_name, call, out_shape in ((v, c, _shape(c.ty)) for v, c in calls)
        if call.op.name in (*_CONV_OPS, *_CONV_T_OPS, "relax.matmul")
    )
    return ModelSummary(
        source_path=str(path),
        source_format=fmt,
        opset=None,
        declared_inputs=info.inputs,
        inputs=info.inputs,
        outputs=info.outputs,
        op_histogram=dict(histogram.most_common()),
        parameter_count=sum(constants),
        layers=layers,
        total_macs=sum(x.macs or 0 for x in layers),
        macs_note=RELAX_MACS_NOTE,
    )


def _walk(func: Any) -> tuple[list[tuple[str, Any]], list[int]]:
    """``([(var name, operator call)], [elements of each float constant])`` of ``func``."""
    import tvm
    from tvm import relax

    calls: list[tuple[str, Any]] = []
    constants: list[int] = []  # post_order_visit visits each node once

    def visit(expr: Any) -> None:
        if isinstance(expr, tvm.ir.GenericConst):
            value = expr.value
            if str(value.dtype).startswith(("float", "bfloat")):
                constants.append(math.prod(int(d) for d in value.shape))

    relax.analysis.post_order_visit(func.body, visit)
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, _op_type()):
                calls.append((binding.var.name, value))
    return calls, constants


def _op_type() -> type:
    import tvm

    return tvm.ir.Op


def _op_label(call: Any) -> str:
    return str(call.op.name).removeprefix("relax.")


def _shape(ty: Any) -> tuple[int, ...] | None:
    from tvm import relax

    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    try:
        return tuple(int(d) for d in ty.shape.values)
    except (TypeError, AttributeError):
        return None


def _call_macs(call: Any, out_shape: tuple[int, ...] | None) -> int | None:
    """MACs of one conv / conv-transpose / matmul call, None when a shape is not static."""
    ins = [_shape(arg.ty) for arg in call.args[:2]]
    if out_shape is None or ins[0] is None or ins[1] is None:
        return None
    data, weight = ins[0], ins[1]
    name = call.op.name
    if name == "relax.matmul":
        return math.prod(out_shape) * data[-1]
    layout = str(call.attrs.kernel_layout)
    spatial = math.prod(size for axis, size in zip(layout, weight, strict=True) if axis not in "OI")
    if name in _CONV_OPS:  # kernel I = C_in / groups
        return math.prod(out_shape) * weight[layout.index("I")] * spatial
    # transpose: every input element meets C_out / groups filters of the kernel's size
    return math.prod(data) * weight[layout.index("O")] * spatial
