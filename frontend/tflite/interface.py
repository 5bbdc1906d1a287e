"""A Relax ``main`` function's inputs and outputs as :class:`TensorInfo` records.

Shared by the TFLite and PyTorch importers (neither source format's own
metadata is trusted for shapes: the Relax types after import are what the
backends compile). Static dims become ints, symbolic dims their names.
"""

from __future__ import annotations

from collections.abc import Sequence

import tvm
from tvm import relax

from npuc.core.model_info import TensorInfo


def relax_dims(shape: Sequence[tvm.ir.PrimExpr]) -> tuple[int | str, ...]:
    """Dims of a Relax tensor shape: ints where static, the expression text where symbolic."""
    return tuple(int(d) if isinstance(d, tvm.tirx.IntImm) else str(d) for d in shape)


def main_inputs(mod: tvm.IRModule) -> tuple[TensorInfo, ...]:
    """``main``'s parameters, in order, under their Relax names."""
    return tuple(
        TensorInfo(name=p.name, shape=relax_dims(p.ty.shape), dtype=str(p.ty.dtype))
        for p in mod["main"].params
    )


def main_outputs(mod: tvm.IRModule, names: Sequence[str]) -> tuple[TensorInfo, ...]:
    """``main``'s results (a tuple is flattened one level), named by ``names`` in order.

    When ``names`` does not match the number of results they are called
    ``output_0``, ``output_1``, ...
    """
    ret = mod["main"].ret_ty
    fields = list(ret.fields) if isinstance(ret, relax.TupleType) else [ret]
    if len(names) != len(fields):
        names = [f"output_{i}" for i in range(len(fields))]
    return tuple(
        TensorInfo(name=name, shape=relax_dims(ty.shape), dtype=str(ty.dtype))
        for name, ty in zip(names, fields, strict=True)
    )
