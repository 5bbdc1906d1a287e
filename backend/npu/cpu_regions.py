"""CPU regions of an NPU build: group the CPU layers, lower and compile each for the host.

Execution order is the runtime's (:mod:`npuc.runtime.npu_model`): graph nodes
in topological order, an NPU partition running at its first layer. A CPU
region is a maximal run of consecutive CPU layers in that order (between two
partitions, or before the first / after the last). Each region is lowered by
:func:`npuc.backend.cpu.qlower.lower_layers` (a Relax ``main`` taking the
region's inputs, integer tensors as stored integers and float ones as float32,
with quantize/dequantize at the integer/float boundaries inside) and compiled
for the host :class:`~npuc.core.target.CpuTarget` through the LLVM path
(:func:`npuc.backend.cpu.build.compile_module`). The library is then run on
the golden samples and compared with the integer executor; a region that
cannot be lowered or compiled, or that differs (integer outputs must be equal, float
ones within :data:`~npuc.core.cpu_region_format.FLOAT_TOLERANCE`), keeps running on
the integer executor with the reason recorded in the manifest (never silently).

Guarantees: the library bytes are a deterministic function of the module and
the target (linked in a fixed-name folder; checked by a test).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax

from npuc.backend.npu.partition import Partition
from npuc.core.cpu_region_format import (
    CpuRegionEntry,
    TensorSpec,
    load_library,
    output_difference,
    region_arguments,
)
from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.core.target import CpuTarget
from npuc.midend.quantize.int_exec import IntTensor
from npuc.midend.quantize.qmodel import QuantizedModel


@dataclass(frozen=True, slots=True)
class CpuRegion:
    """Consecutive CPU layers (execution order) and the tensors crossing the region's border."""

    index: int
    layers: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"cpu_{self.index}"


@dataclass(frozen=True, slots=True)
class CompiledRegion:
    """A region's manifest entry and, when compiled, its library bytes (else empty)."""

    region: CpuRegion
    entry: CpuRegionEntry
    library: bytes


def find_cpu_regions(qm: QuantizedModel, partitions: Sequence[Partition]) -> list[CpuRegion]:
    """The CPU regions of ``qm`` given its NPU ``partitions``, in execution order.

    Inputs are the tensors a region reads that it does not produce (first-use
    order); outputs the tensors it produces that a later layer, a partition or
    the graph's outputs read (production order).
    """
    in_part = {name for p in partitions for name in p.layers}
    first = {p.layers[0] for p in partitions if p.layers}
    runs: list[list[str]] = [[]]
    for node in qm.graph.nodes:
        if node.name in first:
            runs.append([])
        elif node.name not in in_part:
            runs[-1].append(node.name)
    readers: dict[str, set[str]] = {}
    for node in qm.graph.nodes:
        for name in node.inputs:
            readers.setdefault(name, set()).add(node.name)
    graph_outputs = set(qm.graph.outputs)
    nodes = {n.name: n for n in qm.graph.nodes}
    regions: list[CpuRegion] = []
    for layers in (r for r in runs if r):
        inside = set(layers)
        inputs: list[str] = []
        for layer in layers:
            for name in nodes[layer].inputs:
                if name not in inside and name not in inputs:
                    inputs.append(name)
        outputs = [n for n in layers if n in graph_outputs or readers.get(n, set()) - inside]
        regions.append(CpuRegion(len(regions), tuple(layers), tuple(inputs), tuple(outputs)))
    return regions


def _spec(name: str, ty: Any) -> TensorSpec:
    shape = tuple(int(d) for d in ty.shape.values)
    return TensorSpec(name=name, shape=shape, dtype=str(np.dtype(str(ty.dtype))))


def interface(mod: tvm.IRModule, region: CpuRegion) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The input and output tensors of ``mod["main"]`` under the region's names.

    Raises
    ------
    UnsupportedError
        The function's parameters or results do not match the region's tensors
        or have symbolic shapes.
    """
    main = mod["main"]
    params = list(main.params)
    ret = main.ret_ty
    fields = list(ret.fields) if isinstance(ret, relax.TupleType) else [ret]
    if len(params) != len(region.inputs) or len(fields) != len(region.outputs):
        raise UnsupportedError(
            f"CPU region {region.name}: lowered main takes {len(params)} and returns "
            f"{len(fields)} tensors, the region has {len(region.inputs)} inputs and "
            f"{len(region.outputs)} outputs"
        )
    try:
        ins = [_spec(n, p.ty) for n, p in zip(region.inputs, params, strict=True)]
        outs = [_spec(n, f) for n, f in zip(region.outputs, fields, strict=True)]
    except (AttributeError, TypeError) as err:
        raise UnsupportedError(
            f"CPU region {region.name}: the lowered function has a non-static interface ({err})"
        ) from err
    return ins, outs


def export_bytes(executable: tvm.runtime.Executable, work: Path | None = None) -> bytes:
    """The shared library of ``executable`` as bytes, linked in a new folder inside
    ``work`` (the build's workspace beside its output; default the system temp folder)."""
    folder = Path(tempfile.mkdtemp(prefix="cpu-region-", dir=work))
    try:
        (folder / "work").mkdir()
        path = folder / "region.so"
        executable.export_library(str(path), workspace_dir=str(folder / "work"))
        return path.read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def region_values(value: Any) -> np.ndarray:
    """An executor value as the region's argument: stored integers or the float array."""
    return np.asarray(value.values if isinstance(value, IntTensor) else value)


def _first_mismatch(
    entry: CpuRegionEntry,
    library: bytes,
    golden_envs: Sequence[Mapping[str, Any]],
    work: Path | None,
) -> str | None:
    """Run the stored library bytes on each golden sample's border values; the first
    difference from the integer executor, in words, or None."""
    if not golden_envs:
        return None
    cpus = os.sched_getaffinity(0)  # TVM's pool pins the thread running a parallel kernel
    try:
        return _golden_mismatch(entry, library, golden_envs, work)
    finally:
        if os.sched_getaffinity(0) != cpus:
            os.sched_setaffinity(0, cpus)


def _golden_mismatch(
    entry: CpuRegionEntry,
    library: bytes,
    golden_envs: Sequence[Mapping[str, Any]],
    work: Path | None,
) -> str | None:
    module = load_library(library, "build", entry.name, folder=work)
    vm = relax.VirtualMachine(module, tvm.cpu())
    where = f"CPU region {entry.name}"
    for i, env in enumerate(golden_envs):
        values = {t.name: region_values(env[t.name]) for t in entry.inputs}
        args = [tvm.runtime.tensor(a) for a in region_arguments(entry, values, where)]
        result = vm["main"](*args)
        got = [result] if isinstance(result, tvm.runtime.Tensor) else list(result)
        for spec, tensor in zip(entry.outputs, got, strict=True):
            diff = output_difference(spec.name, tensor.numpy(), region_values(env[spec.name]))
            if diff is not None:
                return f"its library differs from the integer executor on golden sample {i}: {diff}"
    return None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200] if text else ''}"


def compile_region(
    qm: QuantizedModel,
    region: CpuRegion,
    target: CpuTarget,
    golden_envs: Sequence[Mapping[str, Any]] = (),
    work: Path | None = None,
) -> CompiledRegion:
    """Lower, compile and check one region; a fallback entry with the reason when refused.

    ``golden_envs``: the integer executor's full environments of the golden samples
    (every tensor by name), to check the library against. ``work``: a folder for the
    linker's files (:func:`export_bytes`).
    """
    from npuc.backend.cpu.build import compile_module
    from npuc.backend.cpu.qlower import lower_layers

    def fallback(reason: str) -> CompiledRegion:
        entry = CpuRegionEntry(
            name=region.name, layers=region.layers, inputs=(), outputs=(), library=None,
            sha256="", target=None, tvm_version=tvm.__version__, fallback_reason=reason,
        )  # fmt: skip
        return CompiledRegion(region, entry, b"")

    try:
        mod = lower_layers(qm, list(region.layers), list(region.inputs), list(region.outputs))
        ins, outs = interface(mod, region)
    except UnsupportedError as err:
        return fallback(f"not lowered to the CPU library: {err.message}")
    except Exception as err:  # a gap in the CPU path: the executor still runs the layers
        return fallback(f"lowering failed (a gap in npuc's CPU path): {_first_line(err)}")
    try:
        executable = compile_module(mod, target)
    except Exception as err:  # a TVM failure: keep the layers on the integer executor
        return fallback(f"TVM failed compiling it: {_first_line(err)}")
    library = export_bytes(executable, work)
    entry = CpuRegionEntry(
        name=region.name, layers=region.layers, inputs=tuple(ins), outputs=tuple(outs),
        library=f"cpu/{region.name}.so", sha256=hashlib.sha256(library).hexdigest(),
        target=target, tvm_version=tvm.__version__, fallback_reason=None,
    )  # fmt: skip
    try:
        mismatch = _first_mismatch(entry, library, golden_envs, work)
    except Exception as err:  # the TVM VM failed running it
        mismatch = f"its library failed on a golden sample: {_first_line(err)}"
    if mismatch is not None:
        return fallback(mismatch)
    return CompiledRegion(region, entry, library)


def compile_cpu_regions(
    qm: QuantizedModel,
    partitions: Sequence[Partition],
    target: CpuTarget,
    golden_envs: Sequence[Mapping[str, Any]] = (),
    work: Path | None = None,
) -> list[CompiledRegion]:
    """Every CPU region of ``qm`` compiled (or refused, with the reason) for ``target``."""
    return [
        compile_region(qm, region, target, golden_envs, work)
        for region in find_cpu_regions(qm, partitions)
    ]


def stored_regions(
    qm: QuantizedModel,
    partitions: Sequence[Partition],
    entries: Sequence[Mapping[str, Any]],
    where: str,
) -> list[CompiledRegion]:
    """The regions an artifact's manifest records (``entries``), without their library
    bytes, matched with :func:`find_cpu_regions` (for ``npuc report``).

    Raises
    ------
    InvalidInputError
        The manifest's regions are not those of the stored model.
    """
    regions = find_cpu_regions(qm, partitions)
    parsed = [CpuRegionEntry.from_json(e, where) for e in entries]
    if [r.layers for r in regions] != [e.layers for e in parsed]:
        raise InvalidInputError(
            f"{where}: the manifest's CPU regions are not those of the stored model",
            hint="rebuild the artifact with this npuc: npuc build MODEL --target npu ...",
        )
    return [CompiledRegion(r, e, b"") for r, e in zip(regions, parsed, strict=True)]
