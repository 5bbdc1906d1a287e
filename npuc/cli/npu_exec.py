"""Run a whole quantized model compiled in memory: NPU partitions on the simulator (or the
compiler's integer reference), the rest on the CPU.

Requires: a :class:`~npuc.midend.quantize.qmodel.QuantizedModel` and a hardware
configuration. Partitions (:mod:`npuc.backend.npu.partition`) are lowered and
compiled once; running them is :class:`npuc.runtime.npu_model.NpuModel`'s job
(one code path with ``npuc.runtime.load("m.npuc")``): per sample each
partition's border tensors are converted to NHWC storage integers, simulated
(``engine="sim"``) or run on the NPU integer reference of the lowered graph
(``engine="ref"``, :func:`reference_runner`), and converted back; CPU layers
run exactly as the integer executor runs them.

Guarantees: with a correct compiler, every tensor equals the integer executor's
bit for bit; :meth:`NpuModelExecutor.verify` checks it at every partition
border and at the outputs and names the first difference.

This is the compiling side (it needs the backend, so it lives with the CLI).
Running a built ``.npuc`` needs no compiler: :mod:`npuc.runtime.npu_model`
(``npuc.runtime.load``, ``npuc verify``); ``npuc run --engine ref`` adds the
reference runner of :func:`reference_runner` to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from npuc.backend.npu.build import compile_quantized
from npuc.backend.npu.compile import CompiledNpuProgram
from npuc.backend.npu.lower import LoweredPartition, lower_partition
from npuc.backend.npu.partition import Partition, Placement
from npuc.backend.npu.partition_relax import partition_relax as partition
from npuc.backend.npu.reference import run_reference
from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import HwConfig
from npuc.core.isa.program import Program
from npuc.midend.quantize.float_exec import FloatExecutor
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.runtime.npu_model import (
    MismatchError,
    NpuModel,
    PartitionRun,
    PartitionSpec,
    ReferenceRunner,
    first_difference,
)

__all__ = ["MismatchError", "NpuModelExecutor", "first_difference", "reference_runner"]


def _reference(lowered: Sequence[LoweredPartition]) -> ReferenceRunner:
    def run(index: int, inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        return run_reference(lowered[index].graph, dict(inputs))

    return run


def reference_runner(model: NpuModel) -> ReferenceRunner:
    """The compiler's integer reference for ``model``'s partitions (``engine="ref"``).

    Partitions the model's quantized model again (as the build did, with the
    layers the code generator refused kept off the NPU) and lowers each one.

    Raises
    ------
    InvalidInputError
        The partitions differ from the ones ``model`` records (an artifact
        from another npuc version).
    """
    refused = model.artifact.manifest.get("refused", {}) if model.artifact else {}
    parts, _ = partition(model.qm, model.int_exec._resize_map, refused)
    if [p.layers for p in parts] != [tuple(p.layers) for p in model.partitions]:
        raise InvalidInputError(
            "the model's NPU partitions differ from the ones this npuc makes, so the "
            "reference engine cannot run them",
            hint="use --engine sim, or rebuild the model with this npuc",
        )
    return _reference([lower_partition(p, model.qm) for p in parts])


class NpuModelExecutor:
    """Compiles the NPU partitions of ``qm`` for ``hw`` and runs samples through them.

    ``programs`` skips compiling (they must be the programs of the partitions
    this makes); ``refused`` keeps layers off the NPU with a reason.
    """

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
        self.lowered: list[LoweredPartition]
        self.compiled: list[CompiledNpuProgram] = []
        if programs is None:
            built = compile_quantized(qm, hw, self.int_exec, refused)
            self.placements, self.partitions, self.lowered, self.compiled, _ = built
            programs = [c.program for c in self.compiled]
        else:
            self.partitions, self.placements = partition(qm, self.int_exec._resize_map, refused)
            self.lowered = [lower_partition(p, qm) for p in self.partitions]
        specs = [
            PartitionSpec(p.name, p.layers, p.inputs, p.outputs, lp.constants)
            for p, lp in zip(self.partitions, self.lowered, strict=True)
        ]
        self.model = NpuModel(
            qm, hw, specs, programs, reference=_reference(self.lowered), int_exec=self.int_exec
        )
        self.programs = self.model.programs

    @property
    def stats(self) -> list[PartitionRun]:
        """Per-partition statistics of the simulated runs so far."""
        return self.model.stats

    def run(
        self, feeds: Mapping[str, np.ndarray], *, engine: str = "sim", trace: bool = False
    ) -> dict[str, Any]:
        """Graph inputs and every CPU/partition-border tensor for one sample (as the integer
        executor's env: :class:`IntTensor` for integer tensors, float arrays otherwise)."""
        return self.model.run_env(feeds, engine=engine, trace=trace)

    def run_partition(
        self, index: int, env: Mapping[str, Any], *, engine: str = "sim", trace: bool = False
    ) -> dict[str, IntTensor]:
        """One partition's outputs from the border tensors in ``env``."""
        return self.model.run_partition(index, env, engine=engine, trace=trace)

    def verify(self, feeds: Mapping[str, np.ndarray], *, engine: str = "sim") -> dict[str, Any]:
        """Run one sample and compare every partition border and output with the integer
        executor; raises :class:`MismatchError` naming the first differing tensor."""
        expected = self.int_exec.run(feeds)
        got = self.run(feeds, engine=engine)
        names = [t for p in self.partitions for t in p.outputs] + list(self.qm.graph.outputs)
        for name in names:
            first_difference(name, got[name], expected[name])
        return got
