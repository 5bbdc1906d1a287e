"""TVM's ONNX importer, run so that its failures and wrong shapes name the node.

Two guarantees the rest of npuc relies on:

* **Failures name the node.** :func:`import_graph` runs TVM's
  ``ONNXGraphImporter`` with every node named (unnamed nodes get
  ``<OpType>_<index>``, as in the support check) and turns any exception
  into an :class:`~npuc.core.errors.UnsupportedError` that names the node
  and operator being converted; TVM's own text is kept only as a detail at
  the end, never as the explanation, and TVM's stdout print is swallowed.
* **Shapes are what ONNX says.** :func:`check_shapes` compares the shape of
  every graph output, and of every intermediate tensor whose shape the
  model declares or ONNX shape inference found (``value_info``), with the
  shape the Relax module computes. A difference means a TVM converter does
  not compute what ONNX specifies; it raises an UnsupportedError naming the
  node that produces the tensor, so a wrong result is never returned.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Mapping, Sequence

import onnx
import tvm
from tvm import relax
from tvm.ir.prim.expr import IntImm

from npuc.core.errors import UnsupportedError

_log = logging.getLogger(__name__)
_HINT = (
    "the model passed npuc's support check, so this is a gap in npuc; please report it "
    "with the model (rerun with --debug for TVM's traceback)"
)


def name_nodes(model: onnx.ModelProto) -> None:
    """Name every unnamed node ``<OpType>_<index>`` (in place), as the support check does."""
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"


def import_graph(
    model: onnx.ModelProto,
    shapes: Mapping[str, Sequence[int]],
    dtypes: Mapping[str, str],
    opset: int,
    where: str,
) -> tvm.IRModule:
    """``from_onnx`` on ``model`` (whose nodes are named); failures name the node.

    Raises
    ------
    UnsupportedError
        When TVM's importer raises: names the node and operator it was
        converting (or says it failed outside any node).
    """
    from tvm.relax.frontend.onnx.onnx_frontend import ONNXGraphImporter

    class _NamingImporter(ONNXGraphImporter):
        failed: tuple[str, str] | None = None

        def _convert_operator(self, op_name, inputs, attrs, opset):  # type: ignore[no-untyped-def]
            try:
                return super()._convert_operator(op_name, inputs, attrs, opset)
            except Exception:
                self.failed = (str(attrs.get("tvm_custom", {}).get("name", "")), op_name)
                raise

    importer = _NamingImporter(
        {k: list(v) for k, v in shapes.items()},
        dict(dtypes),
        keep_params_in_input=False,
        sanitize=False,
    )
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return importer.from_onnx(model.graph, opset)
    except Exception as exc:  # TVM's converters raise many types; all mean 'cannot import'
        detail = _first_line(exc)
        if importer.failed is not None:
            node, op = importer.failed
            raise UnsupportedError(
                f"{where}: node {node!r} ({op}) cannot be imported: TVM's {op} converter "
                f"rejects it (TVM says: {detail})",
                hint=_HINT,
            ) from exc
        raise UnsupportedError(
            f"{where}: TVM's ONNX importer failed outside any node (TVM says: {detail})",
            hint=_HINT,
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if len(first) > 200:
        first = first[:200] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def onnx_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Static shapes ONNX shape inference gives the graph outputs and intermediates.

    Inferred afresh on ``model`` as it is imported: the clean-up's inference
    ran before the fix-ups, which may have made a node's attributes explicit
    (e.g. a pool's ``ceil_mode``, where onnx's inference misses the spec's
    rule that onnxruntime follows). Falls back to the shapes ``model`` holds
    when inference fails.
    """
    fresh = onnx.ModelProto()
    fresh.CopyFrom(model)
    del fresh.graph.value_info[:]
    for value in fresh.graph.output:
        value.type.tensor_type.ClearField("shape")
    try:
        fresh = onnx.shape_inference.infer_shapes(fresh, data_prop=True)
    except Exception as exc:  # onnx raises several types; fall back to what the model holds
        _log.debug("shape inference for the shape guard failed: %s", exc)
        fresh = model
    graph = fresh.graph
    inputs = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    found: dict[str, tuple[int, ...]] = {}
    for value in [*graph.value_info, *graph.output]:
        if value.name in inputs or value.type.WhichOneof("value") != "tensor_type":
            continue
        ttype = value.type.tensor_type
        if not ttype.HasField("shape"):
            continue
        dims = ttype.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            found[value.name] = tuple(int(d.dim_value) for d in dims)
    return found


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """The node that produces each tensor, by tensor name."""
    return {out: node for node in model.graph.node for out in node.output if out}


def relax_shapes(mod: tvm.IRModule) -> list[tuple[int, ...] | None]:
    """Static shape of each output of ``main`` (``None`` for a non-tensor or symbolic one)."""
    ret = mod["main"].ret_ty
    fields = list(ret.fields) if isinstance(ret, relax.TupleType) else [ret]
    shapes: list[tuple[int, ...] | None] = []
    for ty in fields:
        shape = getattr(ty, "shape", None)
        if not isinstance(ty, relax.TensorType) or not isinstance(shape, relax.ShapeExpr):
            shapes.append(None)
        elif all(isinstance(d, IntImm) for d in shape.values):
            shapes.append(tuple(int(d) for d in shape.values))
        else:
            shapes.append(None)
    return shapes


def check_shapes(
    mod: tvm.IRModule,
    model: onnx.ModelProto,
    shapes: Mapping[str, Sequence[int]],
    dtypes: Mapping[str, str],
    opset: int,
    where: str,
) -> None:
    """Raise UnsupportedError naming the node when Relax's shapes differ from ONNX's.

    ``mod`` is the import of ``model``; its outputs are checked directly. The
    intermediate tensors are checked by importing a copy of ``model`` that
    also outputs them (skipped, with a debug log, if that copy cannot be
    imported: the real import succeeded and its outputs were checked). Of
    all differences, the one made by the earliest node is reported: later
    ones usually inherit it.
    """
    expected = onnx_shapes(model)
    made_by = producers(model)
    outputs = [o.name for o in model.graph.output]
    got = dict(zip(outputs, relax_shapes(mod), strict=False))
    extra = [name for name in expected if name not in got and name in made_by]
    if extra:
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in extra)
        try:
            probe_mod = import_graph(probe, shapes, dtypes, opset, where)
        except UnsupportedError as exc:
            _log.debug("%s: intermediate shape check skipped: %s", where, exc)
        else:
            got.update(zip([*outputs, *extra], relax_shapes(probe_mod), strict=False))
    order = {id(node): index for index, node in enumerate(model.graph.node)}
    wrong = [
        (order.get(id(made_by.get(name)), len(order)), name, shape, expected[name])
        for name, shape in got.items()
        if shape is not None and name in expected and shape != expected[name]
    ]
    if not wrong:
        return
    _, name, shape, want = min(wrong, key=lambda w: w[0])
    node = made_by.get(name)
    who = f"node {node.name!r} ({node.op_type})" if node is not None else "the graph"
    raise UnsupportedError(
        f"{where}: {who} computes tensor {name!r} with shape {_fmt(shape)} after import, "
        f"but ONNX gives it shape {_fmt(want)}; npuc refuses rather than return a wrong result",
        hint=_HINT.replace(" (rerun with --debug for TVM's traceback)", ""),
    )


def _fmt(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape)) or "scalar"
