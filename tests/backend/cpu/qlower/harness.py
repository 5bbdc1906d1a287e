"""Run hand-built quantized layers through the integer executor and the compiled CPU path.

Many independent single-layer cases go into one quantized model (each with
its own inputs), so one compilation checks them all: lowering (about 0.3 s
of CPU per int8 layer, mostly TVMScript parsing of its kernels) and compiling
(about 0.4 s per layer and target) are the expensive steps, running is not.
:func:`lower_cases` lowers once; :func:`run_lowered` compiles that module for
each target (kernel variant). Every integer output is compared
with ``np.testing.assert_array_equal(strict=True)`` after checking that the
CPU path stores it in the output's QParams type.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import tvm
from tvm import relax

from npuc.backend.cpu.build import compile_module
from npuc.backend.cpu.qlower import lower_model
from npuc.core.target import CpuTarget, host_target
from npuc.midend.quantize.config import LayerQuantConfig, QuantConfig
from npuc.midend.quantize.graph import Graph, Node, TensorType
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.qmodel import QLayer, QuantizedModel
from npuc.midend.quantize.qparams import QParams

PLACEHOLDER = TensorType(shape=(1,), dtype="float32")


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One layer: its node (inputs named uniquely), input arrays, params and output QParams.

    ``inputs`` maps each input tensor to ``(stored integers, QParams)`` or, for
    a float input, ``(float32 array, None)``. ``out`` is None for a float layer.
    """

    node: Node
    inputs: dict[str, tuple[np.ndarray, QParams | None]]
    params: dict[str, Any] = field(default_factory=dict)
    out: QParams | None = None


def _model(cases: list[Case], nodes: list[Node]) -> QuantizedModel:
    inputs = []
    tensors: dict[str, QParams] = {}
    layers = {}
    for case, node in zip(cases, nodes, strict=True):
        for name, (value, q) in case.inputs.items():
            inputs.append((name, TensorType(shape=value.shape, dtype="float32")))
            if q is not None:
                tensors[name] = q
        if case.out is not None:
            tensors[node.name] = case.out
        layers[node.name] = QLayer(
            name=node.name,
            kind=node.op,
            run_on="npu" if case.out is not None else "cpu",
            reason="",
            config=LayerQuantConfig(),
            params=case.params,
        )
    graph = Graph(
        inputs=tuple(inputs),
        nodes=tuple(nodes),
        outputs=tuple(n.name for n in nodes),
        relax_module=tvm.IRModule(),
    )
    return QuantizedModel(graph=graph, tensors=tensors, layers=layers, config=QuantConfig())


def _value(v: Any) -> np.ndarray:
    return v.values if isinstance(v, IntTensor) else np.asarray(v)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoweredCases:
    """Cases lowered once: the lowering does not depend on the target (the int8 kernels are
    made for the target when compiling), so one lowered module is compiled per kernel
    variant. ``expected`` holds the executor's result per layer name."""

    cases: tuple[Case, ...]
    model: QuantizedModel
    module: tvm.IRModule
    feeds: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]


def lower_cases(cases: list[Case]) -> LoweredCases:
    """Run the executor on ``cases`` and lower them into one module (no compilation).

    Node output shapes are taken from the executor's results (the lowering
    reads ``node.out`` for reshapes), so cases may leave them as placeholders.
    """
    feeds = {n: v for c in cases for n, (v, _) in c.inputs.items()}
    first = IntegerExecutor(_model(cases, [c.node for c in cases])).run(feeds, raw_inputs=True)
    nodes = [
        replace(c.node, out=TensorType(shape=_value(first[c.node.name]).shape, dtype="float32"))
        if c.node.out == PLACEHOLDER
        else c.node
        for c in cases
    ]
    qm = _model(cases, nodes)
    env = IntegerExecutor(qm).run(feeds, raw_inputs=True)
    return LoweredCases(
        cases=tuple(cases),
        model=qm,
        module=lower_model(qm, raw_inputs=True),
        feeds=feeds,
        expected={n.name: _value(env[n.name]) for n in qm.graph.nodes},
    )


def run_lowered(
    lowered: LoweredCases, target: CpuTarget | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Executor and CPU results per layer name, ``{name: (expected, got)}``, the lowered
    module compiled for ``target`` (default: this machine; a target with fewer features
    than the host, e.g. AVX2 only, runs here too)."""
    qm = lowered.model
    vm = relax.VirtualMachine(compile_module(lowered.module, target or host_target()), tvm.cpu())
    args = [tvm.runtime.tensor(np.ascontiguousarray(lowered.feeds[n])) for n, _ in qm.graph.inputs]
    got = vm["main"](*args)
    return {
        n.name: (lowered.expected[n.name], got[i].numpy()) for i, n in enumerate(qm.graph.nodes)
    }


def run_cases(
    cases: list[Case], target: CpuTarget | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Executor and CPU results per layer name: ``{name: (expected, got)}``
    (:func:`lower_cases` then :func:`run_lowered`)."""
    return run_lowered(lower_cases(cases), target)


def assert_lowered_exact(lowered: LoweredCases, target: CpuTarget | None = None) -> None:
    """Every integer layer's output equals the executor's, bit for bit, in its storage type
    (the lowered module compiled for ``target``, default this machine)."""
    results = run_lowered(lowered, target)
    for case in lowered.cases:
        want, got = results[case.node.name]
        assert case.out is not None, "assert_cases_exact checks integer layers"
        assert got.dtype == np.dtype(case.out.dtype), (case.node.name, got.dtype)
        np.testing.assert_array_equal(
            got.astype(np.int64), want, strict=True, err_msg=f"layer {case.node.name}"
        )


def assert_cases_exact(cases: list[Case], target: CpuTarget | None = None) -> None:
    """Every integer layer's output equals the executor's, bit for bit, in its storage type
    (compiled for ``target``, default this machine)."""
    assert_lowered_exact(lower_cases(cases), target)


def node(name: str, op: str, inputs: tuple[str, ...], **attrs: Any) -> Node:
    """A graph node whose output shape the harness fills in."""
    consts = attrs.pop("consts", {})
    return Node(name=name, op=op, inputs=inputs, out=PLACEHOLDER, attrs=attrs, consts=consts)


def ints(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform stored integers over the whole range of ``dtype``."""
    info = np.iinfo(np.dtype(dtype))
    return rng.integers(int(info.min), int(info.max) + 1, size=shape).astype(dtype)


def qparams(rng: np.random.Generator, dtype: str) -> QParams:
    """A random zero point anywhere in the type (scale is irrelevant to integer layers)."""
    info = np.iinfo(np.dtype(dtype))
    return QParams(0.05, int(rng.integers(int(info.min), int(info.max) + 1)), dtype)


DTYPES = ("int8", "uint8", "int16")
