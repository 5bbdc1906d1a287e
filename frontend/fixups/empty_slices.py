"""Give an empty Slice a positive step on its empty axes.

A Slice whose range is empty along an axis with a negative step (starts=0,
ends=5, steps=-1: it walks away from ``ends``) makes TVM 0.27's slice
lowering fail ("Input [Begin=0, End=5] is invalid", apache/tvm#19532),
while the same empty range with a positive step lowers fine. This fix-up
rewrites, on each such axis only, ``(start, end, step)`` to ``(0, 0, 1)``.

Guarantee: the output has the same shape (0 on those axes) and no elements,
so results are unchanged; non-empty axes keep their parameters. Slices whose
starts/ends/axes/steps are not constants are left alone.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ._graph import static_shapes


def fix_empty_slices(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite the negative-step empty axes of every constant Slice (in place)."""
    graph = model.graph
    slices = [
        (i, n)
        for i, n in enumerate(graph.node)
        if n.op_type == "Slice" and n.domain in ("", "ai.onnx") and len(n.input) >= 5
    ]
    if not slices:
        return model
    inits = {t.name: t for t in graph.initializer}
    shapes: dict[str, tuple[int, ...]] | None = None
    for index, node in slices:
        params = [inits[name] for name in node.input[1:5] if name in inits]
        if len(params) != len(node.input[1:5]):
            continue
        starts, ends, axes, steps = (numpy_helper.to_array(p).astype(np.int64) for p in params)
        if not (steps < 0).any():
            continue
        shapes = shapes if shapes is not None else static_shapes(model)
        out_shape = shapes.get(node.output[0])
        if out_shape is None:
            continue
        rank = len(out_shape)
        empty = [k for k, ax in enumerate(axes) if steps[k] < 0 and out_shape[int(ax) % rank] == 0]
        if not empty:
            continue
        starts, ends, steps = starts.copy(), ends.copy(), steps.copy()
        starts[empty], ends[empty], steps[empty] = 0, 0, 1
        for pos, value, what in ((1, starts, "starts"), (2, ends, "ends"), (4, steps, "steps")):
            name = f"{node.input[pos]}__npuc_empty_{index}_{what}"
            graph.initializer.append(numpy_helper.from_array(value, name))
            node.input[pos] = name
    return model
