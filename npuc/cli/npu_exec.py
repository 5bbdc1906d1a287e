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

This is the compiling executor (it needs the backend, so it lives with the
CLI). Running a built ``.npuc`` needs no compiler: :mod:`npuc.runtime.npu_model`
(``npuc.runtime.load``, ``npuc verify``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from npuc.backend.npu.build import compile_quantized
from npuc.backend.npu.compile import CompiledNpuProgram
from npuc.backend.npu.lower import lower_partition
from npuc.backend.npu.partition import Partition, Placement, partition
from npuc.backend.npu.reference import run_reference
from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import HwConfig
from npuc.core.isa.program import Program
from npuc.core.npu_artifact import Artifact, open_artifact
from npuc.core.storage_layout import from_storage, to_storage
from npuc.midend.quantize.float_exec import FloatExecutor
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.npu_sim import simulate
from npuc.runtime.npu_model import (
    MismatchError,
    PartitionRun,
    first_difference,
    read_quantized_model,
)

__all__ = ["MismatchError", "NpuModelExecutor", "first_difference", "load_npuc"]


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


def load_npuc(path: str | Path) -> tuple[Artifact, NpuModelExecutor]:
    """Open a ``.npuc`` artifact and its executor (programs validated for the recorded hw)."""
    artifact = open_artifact(path)
    qm = read_quantized_model(artifact)
    executor = NpuModelExecutor(
        qm, artifact.hw, programs=artifact.programs(), refused=artifact.manifest.get("refused", {})
    )
    return artifact, executor
