"""Conversion of a cleaned, checked ONNX model to Relax, and its ModelInfo.

Guarantees: the returned module has a ``main`` whose parameters are the
model's inputs, named exactly as in the ONNX graph and in graph order, with
static shapes; it has been through the model fix-ups of
:mod:`npuc.frontend.fixups` and is well formed
(``relax.analysis.well_formed`` raises on the first violation). A converter
failure inside TVM becomes an :class:`~npuc.core.errors.UnsupportedError` naming
the node, and every output and intermediate shape equals ONNX's
(:mod:`npuc.frontend.onnx.guard`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx
import tvm
from tvm import relax
from tvm.ir.prim.expr import IntImm

from npuc.core.errors import UnsupportedError
from npuc.core.model_info import ModelInfo, TensorInfo


def to_relax(
    model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]], opset: int, where: str
) -> tvm.IRModule:
    """Convert with TVM's ONNX importer, check shapes, then apply the Relax fix-ups.

    Raises
    ------
    UnsupportedError
        When TVM's importer fails (naming the node it was converting), or when
        a tensor's shape after import differs from ONNX's (naming the node
        that produces it); see :mod:`npuc.frontend.onnx.guard`.
    """
    from npuc.frontend.fixups import apply_relax_fixups
    from npuc.frontend.onnx.guard import check_shapes, import_graph, name_nodes
    from npuc.frontend.onnx.shapes import dtype_name, graph_inputs

    dtypes = {v.name: dtype_name(v) for v in graph_inputs(model)}
    name_nodes(model)
    mod = import_graph(model, shapes, dtypes, opset, where)
    check_shapes(mod, model, shapes, dtypes, opset, where)
    mod = apply_relax_fixups(mod)
    # Ill-formed IR is npuc's own bug, not the user's model: RuntimeError makes the
    # CLI report an internal error. (TVM 0.27's well_formed raises on a violation.)
    try:
        relax.analysis.well_formed(mod)
    except Exception as exc:
        raise RuntimeError(f"{where}: the imported Relax module is not well formed: {exc}") from exc
    return mod


def model_info(
    mod: tvm.IRModule,
    inputs: Sequence[TensorInfo],
    *,
    source_path: str,
    source_sha256: str,
    opset: int,
    output_names: Sequence[str],
) -> ModelInfo:
    """ModelInfo of an imported ONNX model; output shapes come from Relax's types."""
    ret = mod["main"].ret_ty
    fields = list(ret.fields) if isinstance(ret, relax.TupleType) else [ret]
    outputs = tuple(
        TensorInfo(name=name, shape=_static_shape(sinfo, name), dtype=str(sinfo.dtype))
        for name, sinfo in zip(output_names, fields, strict=True)
    )
    image_like = any(len(t.shape) == 4 and t.dtype.startswith("float") for t in inputs)
    return ModelInfo(
        source_path=source_path,
        source_format="onnx",
        source_sha256=source_sha256,
        inputs=tuple(inputs),
        outputs=outputs,
        layout="NCHW" if image_like else "unknown",
        opset=opset,
    )


def _static_shape(sinfo: relax.Type, name: str) -> tuple[int, ...]:
    if not isinstance(sinfo, relax.TensorType) or not isinstance(sinfo.shape, relax.ShapeExpr):
        raise UnsupportedError(f"output {name!r} is not a tensor with a known shape")
    dims = []
    for d in sinfo.shape.values:
        if not isinstance(d, IntImm):
            raise UnsupportedError(
                f"output {name!r} has a data-dependent dimension ({d})",
                hint="npuc compiles static shapes only; fix the input shapes with --input-shape",
            )
        dims.append(int(d))
    return tuple(dims)
