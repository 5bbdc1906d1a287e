"""Stage-by-stage replay of a golden sample: each NPU partition and CPU region alone.

Every stage (an NPU partition on the simulator, a CPU region from its library)
is fed the integer executor's own border tensors and its outputs are compared
with the executor's, so a difference is pinned on the stage that made it, not
on whatever it propagated to. NPU partitions must be bit-exact; a CPU region's
integer outputs too, its float outputs within
:data:`~npuc.core.cpu_region_format.FLOAT_TOLERANCE`.

End to end, a model output is exact unless a float layer run from a compiled
CPU region lies upstream of it (:func:`float_tainted`): float results of the
library differ from numpy's in the last bits, and a later quantization may
round such a value to the neighbouring integer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from npuc.core.cpu_region_format import output_difference
from npuc.midend.quantize.int_exec import IntTensor
from npuc.runtime.cpu_regions import region_lines
from npuc.runtime.npu_model import MismatchError, NpuModel, first_difference, load_npuc


def plain(value: Any) -> np.ndarray:
    """An executor value as an array (stored integers of an :class:`IntTensor`)."""
    return np.asarray(value.values if isinstance(value, IntTensor) else value)


def stage_differences(model: NpuModel, reference: Mapping[str, Any]) -> str | None:
    """The first stage whose outputs differ from ``reference`` (the integer executor's
    environment of one sample) when fed ``reference``'s inputs, in words, or None."""
    for index, part in enumerate(model.partitions):
        made = model.run_partition(index, reference)
        for name in part.outputs:
            diff = output_difference(name, plain(made[name]), plain(reference[name]))
            if diff is not None:
                return f"NPU partition {part.name} output {diff}"
    for region in model.cpu_regions:
        made = region.run(reference)
        for spec in region.entry.outputs:
            diff = output_difference(spec.name, plain(made[spec.name]), plain(reference[spec.name]))
            if diff is not None:
                return f"CPU region {region.entry.name} output {diff}"
    return None


def float_tainted(model: NpuModel) -> set[str]:
    """Tensors computed from a float layer that runs in a compiled CPU region (that layer
    and everything downstream of it)."""
    qm = model.qm
    tainted = {
        name
        for region in model.cpu_regions
        for name in region.layers
        if qm.layers[name].run_on != "npu"
    }
    for node in qm.graph.nodes:
        if any(n in tainted for n in node.inputs):
            tainted.add(node.name)
    return tainted


def end_to_end_note(sample: int, name: str, got: Any, want: np.ndarray) -> str:
    """One line on how an output downstream of compiled float layers compares with the
    stored golden output.

    Raises
    ------
    MismatchError
        A float output beyond :data:`~npuc.core.cpu_region_format.FLOAT_TOLERANCE`.
    """
    a, b = plain(got), np.asarray(want)
    if np.issubdtype(b.dtype, np.floating):
        diff = output_difference(name, a, b)
        if diff is not None:
            raise MismatchError(f"golden sample {sample}: model output {diff}")
        return f"  output {name}: within float tolerance of the integer executor"
    delta = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return (
        f"  output {name}: {int((delta > 0).sum())} of {delta.size} integers differ "
        f"(at most {int(delta.max(initial=0))}) after float CPU layers"
    )


def verify_artifact(path: str | Path) -> list[str]:
    """Replay the golden samples on the simulator and the CPU regions' libraries; lines
    ending in "bit-exact", or raise :class:`MismatchError` naming the first differing
    tensor (partition or region output, model output) and values.

    Outputs downstream of float layers run from a compiled CPU region are reported, not
    required to be exact; every stage is then also replayed alone on the integer
    executor's tensors (:func:`stage_differences`)."""
    model = load_npuc(path)
    assert model.artifact is not None
    lines = region_lines(model.artifact)
    tainted = float_tainted(model)
    borders = [("NPU partition", t) for p in model.partitions for t in p.outputs]
    borders += [("CPU region", t.name) for r in model.cpu_regions for t in r.entry.outputs]
    for i, (feeds, expected) in enumerate(model.artifact.golden()):
        got = model.run_env(feeds)
        # The integer executor on this machine must still agree with the stored outputs.
        reference = model.int_exec.run(feeds)
        for kind, name in borders:
            diff = (
                None
                if name in tainted
                else output_difference(name, plain(got[name]), plain(reference[name]))
            )
            if diff is not None:
                raise MismatchError(f"golden sample {i}: {kind} output {diff}")
        stage = stage_differences(model, reference) if tainted else None
        if stage is not None:
            raise MismatchError(f"golden sample {i}: {stage}")
        notes = []
        for name, want in expected.items():
            try:
                # Downstream of compiled float layers the stored output must still be the
                # integer executor's own; the artifact's may differ in the last bits.
                first_difference(name, reference[name] if name in tainted else got[name], want)
            except MismatchError as err:
                raise MismatchError(f"golden sample {i}: model output {err}") from err
            if name in tainted:
                notes.append(end_to_end_note(i, name, got[name], want))
        cycles = sum(s.cycles[-1] for s in model.stats if s.cycles)
        lines.append(f"golden sample {i}: {len(expected)} output(s), {cycles:,} NPU cycles")
        lines += notes
    if tainted:
        lines.append("float CPU layers: within float tolerance of the integer executor")
    lines.append("NPU partitions and integer CPU layers: bit-exact" if tainted else "bit-exact")
    return lines
