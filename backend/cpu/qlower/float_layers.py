"""Float layers (``run_on == "cpu"``) of the integer CPU path: the executor's own kernels.

Requires: a graph node whose inputs are real values (float32, or the
non-float tensors a ``relax`` fallback reads, e.g. indices), given with the
graph's shapes.

Guarantees: a layer with arithmetic is emitted as the kernel
:func:`npuc.midend.quantize.float_kernels.build_kernel` makes for it, the
one the integer executor compiles and runs: the same PrimFuncs, tagged
opaque (never fused across the float/integer boundary) and scheduled (no
schedule rule reorders them), compiled for the same host target. So its
float32 results equal the executor's bit for bit, and an integer layer that
quantizes them gets the executor's integers. Layers that only move values
(reshape, transpose, slice, concat, constants, tuple items) are exact in any
implementation and use the ordinary lowering.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tvm import relax, tirx

from npuc.midend.quantize.float_kernels import build_kernel, emit_kernel
from npuc.midend.quantize.float_relax import NO_ARITHMETIC
from npuc.midend.quantize.graph import Node

from .movement import MOVEMENT, emit_movement


def _const_of(value: np.ndarray) -> relax.Constant:
    arr = np.asarray(value)
    return relax.const(arr, str(arr.dtype))


def emit_float_layer(bb: relax.BlockBuilder, node: Node, args: Sequence[relax.Expr]) -> relax.Expr:
    """The node's float output from its real-valued ``args`` (one per ``node.inputs``).

    ``bb`` must be inside a dataflow block of a module holding the source
    module's PrimFuncs (:func:`.relax_call.source_functions`), which a
    ``relax`` node's stored call references.

    Raises
    ------
    UnsupportedError
        A ``relax`` node without a usable stored call.
    """
    op = node.op
    if op in MOVEMENT:
        return emit_movement(bb, node, args)
    if op == "constant":
        return bb.emit(_const_of(node.consts["value"]))
    if op == "tuple_item":
        return bb.emit(relax.TupleGetItem(args[0], int(node.attr("index"))))
    assert op not in NO_ARITHMETIC, op
    types = [relax.TensorType(a.ty.shape, a.ty.dtype) for a in args]
    functions = {gv: f for gv, f in bb.get().functions_items() if isinstance(f, tirx.PrimFunc)}
    return emit_kernel(bb, build_kernel(node, types, functions), args)
