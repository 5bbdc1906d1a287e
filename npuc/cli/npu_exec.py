"""Run a whole quantized model: NPU partitions on the simulator, the rest on the CPU.

Requires: a :class:`~npuc.midend.quantize.qmodel.QuantizedModel` and a hardware
configuration. Partitions (:mod:`npuc.backend.npu.partition`) are lowered and
compiled once; per sample each partition's border tensors are converted to NHWC
storage integers, simulated (``engine="sim"``) or run on the NPU integer
reference of the lowered graph (``engine="ref"``), and converted back. CPU
layers run exactly as the integer executor runs them (float layers in float32,
integer layers kept off the NPU with its integer formulas), with its integer
<-> float conversions at the boundaries.

Guarantees: with a correct compiler, every tensor equals the integer executor's
bit for bit; :meth:`NpuModelExecutor.verify` checks it at every partition
border and at the outputs and names the first difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from npuc.backend.npu.artifact import Artifact, open_artifact
from npuc.backend.npu.build import compile_quantized
from npuc.backend.npu.compile import CompiledNpuProgram
from npuc.backend.npu.layout import from_storage, to_storage
from npuc.backend.npu.lower import lower_partition
from npuc.backend.npu.partition import Partition, Placement, partition
from npuc.backend.npu.reference import run_reference
from npuc.core.errors import InvalidInputError, NpucError
from npuc.core.hw.config import HwConfig
from npuc.core.isa.program import Program
from npuc.midend.quantize.float_exec import FloatExecutor
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.npu_sim import simulate


class MismatchError(NpucError):
    """The NPU's result differs from the integer executor's (names tensor and values)."""

    exit_code = 6


@dataclass
class PartitionRun:
    """Statistics of one partition over the samples run so far."""

    name: str
    cycles: list[int] = field(default_factory=list)
    macs: int = 0
    mac_utilisation: list[float] = field(default_factory=list)
    dram_bytes: list[int] = field(default_factory=list)
    trace: list[dict[str, Any]] = field(default_factory=list)  # last run, with trace=True


class NpuModelExecutor:
    """Compiles the NPU partitions of ``qm`` for ``hw`` and runs samples through them."""

    def __init__(
        self,
        qm: QuantizedModel,
        hw: HwConfig,
        float_executor: FloatExecutor | None = None,
        *,
        programs: Sequence[Program] | None = None,
        refused: Mapping[str, str] | None = None,
    ) -> None:
        self.qm = qm
        self.hw = hw
        self.int_exec = IntegerExecutor(qm, float_executor)
        self.partitions: list[Partition]
        self.placements: list[Placement]
        self.compiled: list[CompiledNpuProgram] = []
        if programs is None:
            built = compile_quantized(qm, hw, self.int_exec, refused)
            self.placements, self.partitions, self.lowered, self.compiled, _ = built
            programs = [c.program for c in self.compiled]
        else:
            self.partitions, self.placements = partition(qm, self.int_exec._resize_map, refused)
            self.lowered = [lower_partition(p, qm) for p in self.partitions]
        if len(programs) != len(self.lowered):
            raise InvalidInputError(
                f"{len(programs)} NPU programs for {len(self.lowered)} partitions of the model"
            )
        self.programs = list(programs)
        self.stats = [PartitionRun(p.name) for p in self.partitions]
        self._first = {p.layers[0]: p.index for p in self.partitions}
        self._in_part = {name for p in self.partitions for name in p.layers}

    def run(
        self, feeds: Mapping[str, np.ndarray], *, engine: str = "sim", trace: bool = False
    ) -> dict[str, Any]:
        """Graph inputs and every CPU/partition-border tensor for one sample (as the integer
        executor's env: :class:`IntTensor` for integer tensors, float arrays otherwise)."""
        graph = self.qm.graph
        env: dict[str, Any] = {}
        for name, ty in graph.inputs:
            value = np.asarray(feeds[name])
            if name in self.qm.tensors:
                q = self.qm.tensors[name]
                env[name] = IntTensor(q.quantize(value).astype(np.int64), q)
            else:
                env[name] = value.astype(ty.dtype, copy=False)
        for node in graph.nodes:
            if node.name in self._first:
                index = self._first[node.name]
                env.update(self.run_partition(index, env, engine=engine, trace=trace))
            elif node.name not in self._in_part:
                env[node.name] = self.int_exec.run_node(node, env)
        return env

    def run_partition(
        self, index: int, env: Mapping[str, Any], *, engine: str = "sim", trace: bool = False
    ) -> dict[str, IntTensor]:
        """One partition's outputs from the border tensors in ``env``."""
        lp, program = self.lowered[index], self.programs[index]
        inputs: dict[str, np.ndarray] = {}
        for t in lp.graph.inputs:
            if t.name in lp.constants:
                inputs[t.name] = lp.constants[t.name].astype(t.dtype)
                continue
            ints = self.int_exec.as_int(env[t.name], self.qm.tensors[t.name]).values
            inputs[t.name] = np.ascontiguousarray(to_storage(ints)).astype(t.dtype)
        if engine == "sim":
            result = simulate(program, inputs, self.hw, trace=trace)
            outputs = result.outputs
            st = self.stats[index]
            st.cycles.append(result.stats.total_cycles)
            st.macs = result.stats.macs
            st.mac_utilisation.append(result.stats.mac_utilisation)
            st.dram_bytes.append(result.stats.dram_read_bytes + result.stats.dram_written_bytes)
            st.trace = result.trace_events
        else:
            outputs = run_reference(lp.graph, inputs)
        made: dict[str, IntTensor] = {}
        for t in lp.graph.outputs:
            shape = self.qm.graph.tensor_type(t.name).shape
            values = from_storage(np.asarray(outputs[t.name]), shape).astype(np.int64)
            made[t.name] = IntTensor(values, self.qm.tensors[t.name])
        return made

    def verify(self, feeds: Mapping[str, np.ndarray], *, engine: str = "sim") -> dict[str, Any]:
        """Run one sample and compare every partition border and output with the integer
        executor; raises :class:`MismatchError` naming the first differing tensor."""
        expected = self.int_exec.run(feeds)
        got = self.run(feeds, engine=engine)
        names = [t for p in self.partitions for t in p.outputs] + list(self.qm.graph.outputs)
        for name in names:
            first_difference(name, got[name], expected[name])
        return got


def first_difference(name: str, got: Any, expected: Any) -> None:
    """Raise :class:`MismatchError` unless ``got`` equals ``expected`` exactly."""
    a = got.values if isinstance(got, IntTensor) else np.asarray(got)
    b = expected.values if isinstance(expected, IntTensor) else np.asarray(expected)
    if a.shape != b.shape or not np.array_equal(a, b):
        if a.shape != b.shape:
            raise MismatchError(f"tensor {name!r}: shape {a.shape}, expected {b.shape}")
        where = tuple(int(i) for i in np.argwhere(a != b)[0])
        count = int((a != b).sum())
        raise MismatchError(
            f"tensor {name!r}: {count} of {a.size} values differ; first at {where}:"
            f" {a[where]} vs expected {b[where]}"
        )


def load_npuc(path: str | Path) -> tuple[Artifact, NpuModelExecutor]:
    """Open a ``.npuc`` artifact and its executor (programs validated for the recorded hw)."""
    artifact = open_artifact(path)
    qm = artifact.quantized_model()
    executor = NpuModelExecutor(
        qm, artifact.hw, programs=artifact.programs(), refused=artifact.manifest.get("refused", {})
    )
    return artifact, executor


def verify_artifact(path: str | Path) -> list[str]:
    """Replay the golden samples on the simulator; lines ending in "bit-exact", or raise
    :class:`MismatchError` naming the first differing tensor (partition border, layer) and
    values."""
    artifact, ex = load_npuc(path)
    lines = []
    for i, (feeds, expected) in enumerate(artifact.golden()):
        got = ex.run(feeds, engine="sim")
        # The integer executor on this machine must still agree with the stored outputs.
        reference = ex.int_exec.run(feeds)
        for name in [t for p in ex.partitions for t in p.outputs]:
            try:
                first_difference(name, got[name], reference[name])
            except MismatchError as err:
                raise MismatchError(f"golden sample {i}: NPU partition output {err}") from err
        for name, want in expected.items():
            try:
                first_difference(name, got[name], want)
            except MismatchError as err:
                raise MismatchError(f"golden sample {i}: model output {err}") from err
        cycles = sum(s.cycles[-1] for s in ex.stats if s.cycles)
        lines.append(f"golden sample {i}: {len(expected)} output(s), {cycles:,} NPU cycles")
    lines.append("bit-exact")
    return lines
