"""Run an artifact's compiled CPU regions: load each stored library into a Relax VM.

The build (:mod:`npuc.backend.npu.cpu_regions`) stores one native library per
CPU region (``cpu/<region>.so``) and describes it in the manifest
(:class:`~npuc.core.cpu_region_format.CpuRegionEntry`). Loading checks each
library (SHA-256, CPU features of this machine, TVM version:
:func:`~npuc.core.cpu_region_format.check_library`) before ``dlopen``; running
a region takes its border tensors from the executor's environment (stored
integers of integer tensors, float32 arrays) and gives its outputs back in the
same form. Regions the build did not compile are not loaded: their layers run
on the integer executor, and :func:`region_lines` lists them with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tvm
from tvm import relax

from npuc.core.cpu_region_format import (
    REBUILD_HINT,
    CpuRegionEntry,
    check_library,
    load_library,
    region_arguments,
    summary_lines,
)
from npuc.core.errors import InvalidInputError
from npuc.core.npu_artifact import Artifact
from npuc.core.target import CpuTarget, host_core_count, host_target
from npuc.midend.quantize.int_exec import IntTensor
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.runtime.thread_pool import caller_affinity_kept, ensure_threads


class CpuRegionLibrary:
    """One compiled CPU region, loaded and ready to run.

    Parameters
    ----------
    entry
        Its manifest entry (a compiled one: ``entry.library`` is set).
    module
        The loaded library (``tvm.runtime.load_module``).
    qm
        The artifact's quantized model, for the quantization parameters of the
        integer outputs.
    """

    def __init__(self, entry: CpuRegionEntry, module: tvm.runtime.Module, qm: QuantizedModel):
        self.entry = entry
        self.layers = entry.layers
        self.qm = qm
        self._vm = relax.VirtualMachine(module, tvm.cpu())
        self._main = self._vm["main"]
        arity = self._vm._get_function_arity("main")
        params = [self._vm._get_function_param_name("main", i) for i in range(arity)]
        if params != [t.name for t in entry.inputs]:
            raise InvalidInputError(
                f"CPU region {entry.name!r}: its library takes {params}, the manifest "
                f"records {[t.name for t in entry.inputs]}",
                hint=REBUILD_HINT,
            )
        # An output is an IntTensor exactly when the integer executor makes one.
        self._integer = {t.name: _is_integer(qm, t.name) for t in entry.outputs}

    def run(self, env: Mapping[str, Any]) -> dict[str, Any]:
        """The region's outputs by name from the border tensors in ``env`` (the integer
        executor's form: :class:`IntTensor` or arrays)."""
        values = {
            t.name: env[t.name].values if isinstance(env[t.name], IntTensor) else env[t.name]
            for t in self.entry.inputs
        }
        args = region_arguments(self.entry, values, "CPU region")
        with caller_affinity_kept():
            result = self._main(*(tvm.runtime.tensor(a) for a in args))
        got = [result] if isinstance(result, tvm.runtime.Tensor) else list(result)
        made: dict[str, Any] = {}
        for spec, tensor in zip(self.entry.outputs, got, strict=True):
            array = tensor.numpy()
            if self._integer[spec.name]:
                made[spec.name] = IntTensor(array.astype(np.int64), self.qm.tensors[spec.name])
            else:
                made[spec.name] = array
        return made


def _is_integer(qm: QuantizedModel, name: str) -> bool:
    layer = qm.layers.get(name)
    return layer.run_on == "npu" if layer is not None else name in qm.tensors


def region_entries(artifact: Artifact) -> list[CpuRegionEntry]:
    """The manifest's CPU regions (InvalidInputError when missing or malformed)."""
    raw = artifact.manifest.get("cpu_regions")
    if not isinstance(raw, list):
        raise InvalidInputError(
            f"{artifact.path}: manifest has no cpu_regions list",
            hint="rebuild the artifact with this npuc: npuc build MODEL --target npu ...",
        )
    return [CpuRegionEntry.from_json(item, str(artifact.path)) for item in raw]


def load_regions(
    artifact: Artifact, qm: QuantizedModel, host: CpuTarget | None = None
) -> list[CpuRegionLibrary]:
    """Validate and load every compiled CPU region of ``artifact`` (``host``: this machine).

    Raises
    ------
    InvalidInputError
        A damaged or modified library, one built for CPU features or a TVM version
        this machine lacks, a library TVM cannot load, or a region whose layers are
        not in the model; each names the region and says to rebuild.
    """
    where = str(artifact.path)
    loaded = []
    host_cpu: CpuTarget | None = host
    for entry in region_entries(artifact):
        unknown = [n for n in entry.layers if n not in qm.layers]
        if unknown:
            raise InvalidInputError(
                f"{where}: CPU region {entry.name!r} lists layers not in the model: {unknown[:3]}"
            )
        if entry.library is None:
            continue
        _check_interface(entry, qm, where)
        host_cpu = host_cpu or host_target()
        data = artifact.read(entry.library)
        check_library(entry, data, host_cpu, tvm.__version__, where)
        loaded.append(CpuRegionLibrary(entry, load_library(data, where, entry.name), qm))
        # As for a CPU library: the threads it was built for, at most this machine's cores.
        assert entry.target is not None
        ensure_threads(min(entry.target.num_cores, host_core_count()))
    return loaded


def _check_interface(entry: CpuRegionEntry, qm: QuantizedModel, where: str) -> None:
    """Each border tensor of ``entry`` is a tensor of ``qm`` with the shape and the dtype
    the integer executor holds it in (stored integers or real values)."""
    for spec in (*entry.inputs, *entry.outputs):
        try:
            ty = qm.graph.tensor_type(spec.name)
        except KeyError:
            ty = None
        want = None
        if ty is not None:
            want = (
                tuple(ty.shape),
                qm.tensors[spec.name].dtype if _is_integer(qm, spec.name) else ty.dtype,
            )
        if want != (spec.shape, spec.dtype):
            raise InvalidInputError(
                f"{where}: CPU region {entry.name!r}: tensor {spec.name!r} is recorded as "
                f"{spec.shape} {spec.dtype}, the model has "
                + ("no such tensor" if want is None else f"{want[0]} {want[1]}"),
                hint=REBUILD_HINT,
            )


def region_lines(artifact: Artifact) -> list[str]:
    """:func:`~npuc.core.cpu_region_format.summary_lines` of the artifact's CPU regions."""
    return summary_lines(region_entries(artifact))
