"""Make and write the NPU performance report (``npuc build --report DIR``, ``npuc report``).

:func:`make_report` simulates one sample with a trace (timing does not depend
on the values; the first golden sample when there is one, else zeros),
measures each layer's quantization similarity on the golden samples (which are
calibration samples) and returns the report of :mod:`npuc.backend.npu.report`
with what the trace file needs. :func:`write_report_files` renders every file
in memory first, then writes each atomically (temp file, rename), so a failure
leaves no half-written file. :func:`build_from_artifact` recompiles a
``.npuc``'s stored quantized model (the per-layer compile statistics are not
stored) and refuses when the programs differ from the stored ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from npuc.backend.npu.build import NpuBuild
from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import HwConfig

FILES = ("report.json", "report.html", "trace.json", "report.txt")


@dataclass(frozen=True, slots=True)
class MadeReport:
    """The report dict, and per partition the simulator's trace events and layer instructions."""

    report: dict[str, Any]
    traces: list[list[dict[str, Any]]]
    layer_ranges: list[dict[str, list[int]]]


def layer_similarity(qm: Any, samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Per layer, the mean over ``samples`` of the cosine between the integer executor's
    (dequantized) tensor and the float model's (accumulated error up to the layer)."""
    from npuc.midend.quantize.analysis_metrics import cosine
    from npuc.midend.quantize.float_exec import FloatExecutor
    from npuc.midend.quantize.int_exec import IntegerExecutor

    fx = FloatExecutor(qm.graph)
    ix = IntegerExecutor(qm, fx)
    sums: dict[str, list[float]] = {}
    for feeds in samples:
        floats = fx.run(feeds)
        ints = ix.run(feeds)
        for node in qm.graph.nodes:
            ref = floats.get(node.name)
            if not isinstance(ref, np.ndarray) or node.name not in ints:
                continue
            got = np.asarray(ix.as_float(ints[node.name]), np.float64)
            if got.shape == ref.shape:
                r = ref.astype(np.float64).ravel()
                sums.setdefault(node.name, []).append(cosine(r, got.ravel()))
    return {name: float(np.mean(v)) for name, v in sums.items()}


def layer_ranges(build: NpuBuild) -> list[dict[str, list[int]]]:
    """Per partition: layer -> the indices of the instructions compiled for it."""
    out = []
    for compiled in build.compiled:
        ranges: dict[str, list[int]] = {}
        for st in compiled.ops:
            ranges.setdefault(st.name.split(".")[0], []).extend(st.instruction_list())
        out.append(ranges)
    return out


def make_report(
    build: NpuBuild, hw: HwConfig, samples: Sequence[Mapping[str, np.ndarray]]
) -> MadeReport:
    """Simulate, measure similarity on ``samples`` (golden/calibration inputs) and report."""
    from npuc.backend.npu.report import layer_report
    from npuc.cli.npu_exec import NpuModelExecutor

    notes = []
    if samples:
        feeds = dict(samples[0])
        notes.append(
            "timing: one simulated run of golden sample 0 (cycles do not depend on values)"
        )
    else:
        feeds = {n: np.zeros(ty.shape, np.float32) for n, ty in build.qm.graph.inputs}
        notes.append("timing: one simulated run of a zero input (no golden samples stored)")
    ex = NpuModelExecutor(
        build.qm, hw, programs=[c.program for c in build.compiled], refused=build.refused
    )
    ex.run(feeds, trace=True)
    traces = [list(s.trace) for s in ex.stats]
    sim_cycles = [s.cycles[-1] for s in ex.stats]
    similarity = None
    if not samples:
        notes.append(
            "quantization similarity omitted: no golden (calibration) samples in the artifact "
            "(build with --golden 1 or more)"
        )
    else:
        similarity = layer_similarity(build.qm, samples)
        kind = "RANDOM calibration" if build.qm.calibration.get("is_random") else "calibration"
        notes.append(
            f"similarity: cosine of each layer's integer output (dequantized) vs the float model, "
            f"accumulated, mean over {len(samples)} {kind} sample(s) stored as golden samples"
        )
    report = layer_report(build, hw, traces, sim_cycles, similarity, notes)
    return MadeReport(report, traces, layer_ranges(build))


def check_report_dir(directory: Path) -> None:
    """InvalidInputError when ``directory`` cannot become a folder: it, or the nearest
    ancestor that exists, is not a folder (checked before a build, so that a bad
    ``--report DIR`` fails before the artifact is written)."""
    if directory.exists() and not directory.is_dir():
        raise InvalidInputError(f"report directory {directory} exists and is not a folder")
    for parent in directory.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InvalidInputError(
                    f"cannot create report directory {directory}: {parent} is not a folder",
                    hint="pass a folder path whose parents are folders (-o/--report DIR)",
                )
            return


def write_report_files(directory: Path, made: MadeReport, hw: HwConfig) -> list[Path]:
    """Write :data:`FILES` into ``directory`` (created); returns their paths."""
    import json

    from npuc.backend.npu.report import report_table
    from npuc.backend.npu.report_html import render_html
    from npuc.backend.npu.report_trace import layer_trace
    from npuc.core.fileio import write_text_atomic

    check_report_dir(directory)
    texts = {
        "report.json": json.dumps(made.report, indent=1, sort_keys=True) + "\n",
        "report.html": render_html(made.report),
        "trace.json": layer_trace(made.report, made.traces, made.layer_ranges, hw.clock_hz),
        "report.txt": "\n".join(report_table(made.report, top=20)) + "\n",
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot create report directory {directory}: {exc.strerror}",
            hint="pass a folder path whose parents are folders you can write (-o/--report DIR)",
        ) from None
    paths = []
    for name in FILES:
        write_text_atomic(directory / name, texts[name])
        paths.append(directory / name)
    return paths


def build_from_artifact(path: Path) -> tuple[NpuBuild, HwConfig]:
    """Recompile the quantized model stored in the ``.npuc`` at ``path`` for its recorded
    hardware; InvalidInputError for a file that is not an artifact or whose programs this
    npuc does not reproduce (rebuild it)."""
    from npuc.backend.npu.build import compile_quantized
    from npuc.core.npu_artifact import open_artifact
    from npuc.runtime.npu_model import read_quantized_model

    if path.suffix != ".npuc":
        raise InvalidInputError(
            f"{path}: not a .npuc file", hint="build one with `npuc build MODEL --target npu`"
        )
    artifact = open_artifact(path)
    qm = read_quantized_model(artifact)
    hw = artifact.hw
    stored = artifact.programs()
    placements, parts, lowered, compiled, refused = compile_quantized(
        qm, hw, exclude=artifact.manifest.get("refused", {})
    )
    if [p.to_bytes() for p in stored] != [c.program.to_bytes() for c in compiled]:
        raise InvalidInputError(
            f"{path}: this npuc compiles the stored model to other NPU programs than the "
            "artifact holds (built by another npuc version or options)",
            hint="rebuild the artifact with this npuc, or pass --report DIR to npuc build",
        )
    from npuc.backend.npu.cpu_regions import stored_regions

    regions = stored_regions(qm, parts, artifact.manifest.get("cpu_regions", []), str(path))
    build = NpuBuild(qm, placements, parts, lowered, compiled, artifact.golden(), refused, regions)
    return build, hw
