"""Whole regions of a quantized model as a Relax ``IRModule`` (see the package docstring).

Requires: a :class:`~npuc.midend.quantize.qmodel.QuantizedModel` with static
shapes. Guarantees: ``main`` computes, for the given inputs, exactly the
values the integer executor holds for the requested outputs, bit for bit
(integer tensors, and float tensors: float layers are the executor's own
kernels, :mod:`.float_layers`); the module is
ready for :func:`npuc.backend.cpu.build.compile_module`.
"""

from __future__ import annotations

from collections.abc import Sequence

import tvm
from tvm import relax

from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.midend.quantize.qparams import QParams

from .deferred import REINDEX, Deferred, defer_layer, defer_move, deferred_input, resolve
from .dispatch import emit_layer
from .quantize_kernel import emit_quantize
from .relax_call import source_functions
from .sink_transpose import sink_transposes


def holds_integers(qm: QuantizedModel, name: str) -> bool:
    """Whether the integer executor holds tensor ``name`` as stored integers.

    True for a graph input with QParams and for the output of an integer
    layer; such a tensor crosses a region boundary in its QParams' storage
    type (int8, uint8 or int16).
    """
    if name in qm.layers:
        return qm.layers[name].run_on == "npu"
    return name in qm.tensors


def boundary_type(qm: QuantizedModel, name: str) -> relax.TensorType:
    """The Relax type of tensor ``name`` where it enters or leaves a region."""
    ty = qm.graph.tensor_type(name)
    if ty.dtype == "tuple":
        raise UnsupportedError(f"tensor {name!r} is a tuple; a region boundary needs tensors")
    dtype = qm.tensors[name].dtype if holds_integers(qm, name) else ty.dtype
    return relax.TensorType(ty.shape, dtype)


def _check_region(
    qm: QuantizedModel,
    layer_names: Sequence[str],
    inputs: Sequence[str],
    outputs: Sequence[str],
) -> None:
    """Refuse unknown names, layers reading tensors the region lacks, outputs it never makes."""
    known = {n.name for n in qm.graph.nodes}
    unknown = [n for n in layer_names if n not in known]
    if unknown:
        raise InvalidInputError(f"layers {unknown} are not in the quantized model")
    graph_inputs = {n for n, _ in qm.graph.inputs}
    missing = [n for n in inputs if n not in known and n not in graph_inputs]
    if missing:
        raise InvalidInputError(f"region inputs {missing} are not tensors of the model")
    available = set(inputs)
    wanted = set(layer_names)
    for node in qm.graph.nodes:
        if node.name not in wanted:
            continue
        lacking = [n for n in node.inputs if n not in available]
        if lacking:
            raise InvalidInputError(
                f"layer {node.name!r} reads {lacking}, which the region neither "
                "receives nor computes before it",
                hint="add them to input_names or their layers to layer_names",
            )
        available.add(node.name)
    absent = [n for n in outputs if n not in available]
    if absent:
        raise InvalidInputError(f"region outputs {absent} are not computed by the region")


def _emit(
    bb: relax.BlockBuilder,
    qm: QuantizedModel,
    node: Node,
    env: dict[str, relax.Expr | Deferred],
    cache: dict[tuple[int, QParams | None], relax.Expr],
) -> relax.Expr | Deferred:
    """One layer: a float pad, max pool or movement on stored integers stays integer, and
    so does an integer move of such a value (:mod:`.deferred`: a later table lookup then
    runs before the moves); any other layer reads its inputs in the executor's
    representation."""
    integer = qm.layers[node.name].run_on == "npu"
    if len(node.inputs) == 1:
        (name,) = node.inputs
        x = deferred_input(env[name], name, holds_integers(qm, name), qm.tensors)
        if x is not None and not integer:
            out_dtype = str(qm.graph.tensor_type(node.name).dtype)
            deferred = defer_layer(bb, node, x, out_dtype)
            if deferred is not None:
                return deferred
        same_q = x is not None and x.q == qm.tensors.get(name) == qm.tensors.get(node.name)
        if x is not None and integer and node.op in REINDEX and same_q:
            return defer_move(bb, node, x)  # an integer move: the same integers
    args = [resolve(bb, env[n], qm.tensors.get(n) if integer else None, cache) for n in node.inputs]
    return emit_layer(bb, qm, node, args)


def lower_layers(
    qm: QuantizedModel,
    layer_names: Sequence[str],
    input_names: Sequence[str],
    output_names: Sequence[str],
    *,
    float_inputs: Sequence[str] = (),
) -> tvm.IRModule:
    """The layers ``layer_names`` of ``qm`` as a module whose ``main`` maps inputs to outputs.

    Parameters
    ----------
    qm
        The quantized model.
    layer_names
        Layers to compute (any order; emitted in the graph's order).
    input_names
        Tensors the region reads from outside, in ``main``'s parameter order;
        each in the executor's representation (:func:`boundary_type`).
    output_names
        Tensors ``main`` returns, as a tuple in this order, each in the
        executor's representation.
    float_inputs
        Graph inputs among ``input_names`` given as real values (float32)
        although they have QParams; they are quantized on entry, as the
        executor does with a float feed.

    Raises
    ------
    InvalidInputError
        An unknown layer or tensor name, or a layer reading a tensor that is
        neither an input nor computed before it in the region.
    """
    _check_region(qm, layer_names, input_names, output_names)
    wanted = set(layer_names)
    bb = relax.BlockBuilder(tvm.IRModule(source_functions(qm.graph)))
    params = []
    for name in input_names:
        ty = qm.graph.tensor_type(name) if name in float_inputs else boundary_type(qm, name)
        params.append(relax.Var(name, relax.TensorType(ty.shape, ty.dtype)))
    with bb.function("main", params):
        with bb.dataflow():
            env: dict[str, relax.Expr | Deferred] = {}
            for name, var in zip(input_names, params, strict=True):
                quantized = name in float_inputs and name in qm.tensors
                env[name] = emit_quantize(bb, var, qm.tensors[name]) if quantized else var
            cache: dict[tuple[int, QParams | None], relax.Expr] = {}
            for node in qm.graph.nodes:
                if node.name in wanted:
                    env[node.name] = _emit(bb, qm, node, env, cache)
            outputs = [
                resolve(bb, env[n], qm.tensors[n] if holds_integers(qm, n) else None, cache)
                for n in output_names
            ]
            result = bb.emit_output(relax.Tuple(outputs))
        bb.emit_func_output(result)
    return relax.transform.DeadCodeElimination(["main"])(sink_transposes(bb.get()))


def lower_model(qm: QuantizedModel, *, raw_inputs: bool = False) -> tvm.IRModule:
    """The whole graph of ``qm``: ``main(*graph inputs) -> tuple of graph outputs``.

    ``raw_inputs=False``: every graph input is real-valued (float32) and those
    with QParams are quantized at the model boundary (the executor's
    ``run(feeds)``); ``raw_inputs=True``: those inputs are already stored
    integers (``run(feeds, raw_inputs=True)``). Outputs follow the package's
    representation: stored integers for an integer layer's output.
    """
    inputs = [name for name, _ in qm.graph.inputs]
    return lower_layers(
        qm,
        [n.name for n in qm.graph.nodes],
        inputs,
        list(qm.graph.outputs),
        float_inputs=() if raw_inputs else inputs,
    )
