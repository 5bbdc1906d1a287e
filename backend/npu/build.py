"""``npuc build --target npu``: float model + calibration data -> one ``.npuc`` artifact.

Stages: import and optimise the float model, quantize on the calibration
samples (:func:`npuc.midend.quantize.api.quantize_module`), partition and
lower (:mod:`.partition`, :mod:`.lower`), compile each partition
(:func:`.compile.compile_npu_graph`), run the first ``golden`` samples through
the integer executor for the golden outputs, compile the CPU regions between
the partitions for the host CPU (:mod:`.cpu_regions`, checked against those
outputs), write the artifact atomically (:mod:`npuc.core.npu_artifact`).
Deterministic: the same model, data and options give a byte-identical file.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from npuc.backend.npu.compile import CompiledNpuProgram, compile_npu_graph, plan_op
from npuc.backend.npu.cpu_regions import CompiledRegion, compile_cpu_regions
from npuc.backend.npu.lower import LoweredPartition, lower_partition
from npuc.backend.npu.partition import Partition, Placement
from npuc.backend.npu.partition_relax import partition_relax as partition
from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.core.hw.config import HwConfig
from npuc.core.npu_artifact import (
    FORMAT,
    FORMAT_VERSION,
    _safe,
    json_bytes,
    npy_bytes,
    write_zip,
)
from npuc.core.target import CpuTarget, host_target
from npuc.core.version import __version__
from npuc.midend.quantize.config import QuantConfig
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.qmodel import QuantizedModel


@dataclass(frozen=True, slots=True)
class NpuBuild:
    """What a build made: the quantized model, placements, partitions, compiled programs."""

    qm: QuantizedModel
    placements: list[Placement]
    partitions: list[Partition]
    lowered: list[LoweredPartition]
    compiled: list[CompiledNpuProgram]
    golden: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]
    refused: dict[str, str]  # layers the code generator refused -> reason (kept on the CPU)
    cpu_regions: list[CompiledRegion] = field(default_factory=list)  # libraries or reasons


def compile_quantized(
    qm: QuantizedModel,
    hw: HwConfig,
    int_exec: IntegerExecutor | None = None,
    exclude: Mapping[str, str] | None = None,
) -> tuple[
    list[Placement],
    list[Partition],
    list[LoweredPartition],
    list[CompiledNpuProgram],
    dict[str, str],
]:
    """Partition, lower and compile every NPU partition of ``qm`` for ``hw``.

    A layer the code generator refuses (UnsupportedError naming its op, e.g.
    it does not fit SRAM) goes to the CPU with that message as its reason and
    the model is partitioned again; returns the placements, partitions,
    lowered graphs, programs and those refused layers (``exclude`` included).
    """
    int_exec = int_exec or IntegerExecutor(qm)
    refused = dict(exclude or {})
    while True:
        parts, placements = partition(qm, int_exec._resize_map, refused)
        lowered = [lower_partition(p, qm) for p in parts]
        cache: dict[tuple[object, ...], Any] = {}  # tilings chosen once, reused by compile
        found = _refused_ops(lowered, hw, cache)
        if not found:
            try:
                compiled = [compile_npu_graph(lp.graph, hw, cache=cache) for lp in lowered]
            except UnsupportedError as err:
                layer = _layer_of(str(err), qm)
                if layer is None or layer in refused:
                    raise
                found = {layer: f"NPU code generation: {err.message}"}
            else:
                return placements, parts, lowered, compiled, refused
        refused.update(found)


def _layer_of(message: str, qm: QuantizedModel) -> str | None:
    match = re.search(r"NPU op '([^']+)'", message)
    if match is None:
        return None
    name = match.group(1).split(".")[0]
    return name if name in qm.layers else None


def _refused_ops(
    lowered: list[LoweredPartition], hw: HwConfig, cache: dict[tuple[object, ...], Any]
) -> dict[str, str]:
    """Layers whose op cannot be planned alone (tiling does not fit), with the reason.

    ``cache`` (filled in place) keeps the tilings chosen, for ``compile_npu_graph``.
    """
    found: dict[str, str] = {}
    for lp in lowered:
        for op in lp.graph.ops:
            try:
                plan_op(op, hw, hw.sram_bytes, cache)
            except UnsupportedError as err:
                layer = op.name.split(".")[0]
                found.setdefault(layer, f"NPU code generation: {err.message}")
    return found


def stored(value: Any) -> np.ndarray:
    """An executor value as the array the artifact stores (integers for integer tensors)."""
    if isinstance(value, IntTensor):
        return np.asarray(value.values, np.int64)
    return np.asarray(value)


def build_quantized(
    qm: QuantizedModel,
    hw: HwConfig,
    golden_feeds: Sequence[Mapping[str, np.ndarray]],
    float_executor: Any = None,
    cpu_target: CpuTarget | None = None,
    work_dir: Path | None = None,
) -> NpuBuild:
    """Compile ``qm`` and compute the golden outputs of ``golden_feeds``; the CPU regions
    are compiled for ``cpu_target`` (default this machine) and checked on those samples,
    linked in ``work_dir`` (default the system temp folder)."""
    ix = IntegerExecutor(qm, float_executor)
    placements, parts, lowered, compiled, refused = compile_quantized(qm, hw, ix)
    golden, envs = [], []
    for feeds in golden_feeds:
        env = ix.run(feeds)
        envs.append(env)
        golden.append(
            (
                {k: np.asarray(v, np.float32) for k, v in feeds.items()},
                {o: stored(env[o]) for o in qm.graph.outputs},
            )
        )
    target = cpu_target if cpu_target is not None else host_target()
    regions = compile_cpu_regions(qm, parts, target, envs, work_dir)
    return NpuBuild(qm, placements, parts, lowered, compiled, golden, refused, regions)


IO_DTYPES = ("float", "int8", "uint8")
"""``--io-dtype``: the artifact's interface takes floats (quantized and dequantized at the
boundary) or the quantized integers themselves (as TFLite's full-integer models)."""


def interface_io(qm: QuantizedModel, io_dtype: str) -> dict[str, dict[str, Any]]:
    """Each model input and output as the artifact's interface carries it (the manifest's
    ``io`` entries).

    A quantized tensor gets ``scale``, ``zero_point`` and ``dtype`` (its storage) and,
    for an integer ``io_dtype``, ``interface``: ``dtype``, ``scale`` and ``zero_point``
    of the integers the caller passes, with ``offset`` = storage - interface. int8 <->
    uint8 with the same scale is exact (zero point and values shift by 128). A tensor
    computed by a float CPU layer stays float (``{"dtype": "float32"}``).

    Raises
    ------
    InvalidInputError
        ``io_dtype`` is not one of :data:`IO_DTYPES`.
    UnsupportedError
        An integer ``io_dtype`` for an int16 tensor (naming it): 16-bit values do not
        fit 8 bits.
    """
    if io_dtype not in IO_DTYPES:
        raise InvalidInputError(f"--io-dtype {io_dtype}: not one of {', '.join(IO_DTYPES)}")
    io: dict[str, dict[str, Any]] = {}
    names = [*(n for n, _ in qm.graph.inputs), *qm.graph.outputs]
    for name in names:
        q = qm.tensors.get(name)
        if q is None:
            io[name] = {"dtype": "float32"}
            continue
        entry: dict[str, Any] = {"scale": float(q.scale), "zero_point": int(q.zero_point)}
        entry["dtype"] = q.dtype
        if io_dtype != "float":
            if q.dtype not in ("int8", "uint8"):
                role = "input" if name in names[: len(qm.graph.inputs)] else "output"
                raise UnsupportedError(
                    f"--io-dtype {io_dtype}: {role} {name!r} is quantized to {q.dtype}, "
                    f"which {io_dtype} cannot carry exactly",
                    hint="use --io-dtype float, or give that tensor 8-bit activations "
                    "(--activation-bits 8, or q_bits_activation = 8 for its layer in "
                    "--layer-config)",
                )
            offset = 0 if q.dtype == io_dtype else (128 if io_dtype == "int8" else -128)
            entry["interface"] = {
                "dtype": io_dtype,
                "scale": float(q.scale),
                "zero_point": int(q.zero_point) - offset,
                "offset": offset,
            }
        io[name] = entry
    return io


def artifact_bytes(
    build: NpuBuild,
    hw: HwConfig,
    *,
    source_name: str,
    source_sha256: str,
    options: Mapping[str, Any],
    io_dtype: str = "float",
    source_outputs: Sequence[str] = (),
) -> bytes:
    """The ``.npuc`` file's bytes (layout: :mod:`npuc.core.npu_artifact`); ``io_dtype``
    as :func:`interface_io`. ``source_outputs``: the source model's output names in
    order; when there is one per graph output they are recorded (manifest
    ``output_names``) and the runtime gives its outputs those names."""
    qm = build.qm
    from npuc.midend.quantize.serialize import to_bytes

    members: dict[str, bytes] = {"model.npuq": to_bytes(qm)}
    parts = []
    for lp, compiled in zip(build.lowered, build.compiled, strict=True):
        name = lp.partition.name
        members[f"npu/{name}.npub"] = compiled.program.to_bytes()
        for cname, value in lp.constants.items():
            members[f"npu/{name}/{_safe(cname)}.npy"] = npy_bytes(value)
        parts.append(
            {
                "name": name,
                "layers": list(lp.partition.layers),
                "inputs": list(lp.partition.inputs),
                "outputs": list(lp.partition.outputs),
                "constants": sorted(lp.constants),
            }
        )
    for region in build.cpu_regions:
        if region.entry.library is not None:
            members[region.entry.library] = region.library
    for i, (feeds, outs) in enumerate(build.golden):
        for n, v in feeds.items():
            members[f"golden/{i}/in/{_safe(n)}.npy"] = npy_bytes(v)
        for n, v in outs.items():
            members[f"golden/{i}/out/{_safe(n)}.npy"] = npy_bytes(v)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "npuc_version": __version__,
        "source": {"name": source_name, "sha256": source_sha256},
        "hw": {"name": hw.name, "hash": hw.config_hash, "fields": hw.to_dict()},
        "options": dict(options),
        "inputs": [n for n, _ in qm.graph.inputs],
        "outputs": list(qm.graph.outputs),
        "output_names": _output_names(qm, source_outputs),
        "io_dtype": io_dtype,
        "io": interface_io(qm, io_dtype),
        "golden_samples": len(build.golden),
        "partitions": parts,
        "cpu_regions": [r.entry.to_json() for r in build.cpu_regions],
        "refused": dict(sorted(build.refused.items())),
        "placements": [
            {"layer": p.layer, "op": p.op, "target": p.target, "reason": p.reason}
            for p in build.placements
        ],
    }
    members["manifest.json"] = json_bytes(manifest)
    return write_zip(members)


def _output_names(qm: QuantizedModel, source_outputs: Sequence[str]) -> dict[str, str]:
    """npuc output tensor name -> the source model's, matched by position (both follow
    the model's output order); empty when the counts differ or names would collide."""
    internal = list(qm.graph.outputs)
    if len(source_outputs) != len(internal) or len(set(source_outputs)) != len(internal):
        return {}
    return dict(zip(internal, source_outputs, strict=True))


def build_npu(
    source: Path,
    out_path: Path,
    hw: HwConfig,
    calib: str | None,
    *,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    config: QuantConfig | None = None,
    golden: int = 2,
    calib_limit: int | None = None,
    io_dtype: str = "float",
    cpu_target: CpuTarget | None = None,
) -> NpuBuild:
    """Build ``source`` for the NPU ``hw`` and write the artifact ``out_path`` atomically.

    ``io_dtype``: the interface's inputs and outputs (:func:`interface_io`).
    ``cpu_target``: the CPU the CPU regions are compiled for (default this machine).
    ``calib`` may be ``None`` for a pre-quantized (QDQ) model, which keeps its own
    scales (:func:`npuc.midend.quantize.api.quantize_prequantized`); the golden
    samples are then seeded random inputs.

    Raises InvalidInputError (model, calibration data), UnsupportedError (a
    model the frontend or NPU compiler cannot handle, an ``io_dtype`` that
    cannot carry an input or output), each naming the culprit.
    """
    from npuc.core.fileio import workspace_beside, write_bytes_atomic
    from npuc.frontend import load
    from npuc.midend.pipeline import Pipeline, graph_passes
    from npuc.midend.quantize.api import quantize_module, quantize_prequantized
    from npuc.midend.quantize.calib_data import load_calibration
    from npuc.midend.quantize.calib_set import calibration_samples, nonfinite

    imported = load(source, input_shapes=dict(input_shapes) if input_shapes else None)
    if calib is None and imported.source_quant is None:
        raise InvalidInputError(
            "--target npu needs calibration data",
            hint="pass --calib DIR|FILE.npz (or --calib random to try the flow)",
        )
    info = imported.info
    mod = Pipeline(graph_passes())(imported.mod)
    from npuc.midend.quantize.config_names import config_by_source_names

    config = config_by_source_names(config, mod, imported.source_graph)
    if io_dtype not in IO_DTYPES:
        raise InvalidInputError(f"--io-dtype {io_dtype}: not one of {', '.join(IO_DTYPES)}")
    samples: Iterable[Mapping[str, np.ndarray]]  # the golden inputs are the first ones
    if imported.source_quant is not None:
        given = load_calibration(calib, info.inputs, limit=calib_limit) if calib else None
        qm = quantize_prequantized(mod, imported.source_quant, config, samples=given)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random golden inputs, not calibration
            samples = given or load_calibration("random", info.inputs, limit=max(golden, 1))
    else:
        assert calib is not None
        data_set = load_calibration(calib, info.inputs, limit=calib_limit)
        meta = {"source": Path(str(calib)).name, "is_random": bool(data_set.is_random)}
        trim = bool(config is not None and config.trim_infinity)
        # NaN/inf refused (or, trimmed, warned about by name) before anything runs on them.
        samples = calibration_samples(
            data_set,
            limit=(config.calibration_samples if config else 0) or None,
            trim_infinity=trim,
        )
        # Underflow to subnormals or zero is harmless here: only overflow and NaN warn.
        with np.errstate(all="ignore" if trim else "warn", under="ignore"):
            qm = quantize_module(mod, samples, config, calibration=meta)
        samples = [s for s in samples if not any(nonfinite(np.asarray(v)) for v in s.values())]
    interface_io(qm, io_dtype)  # refuse an interface that cannot carry the I/O before compiling
    feeds = [s for _, s in zip(range(golden), samples, strict=False)]
    with workspace_beside(out_path) as work:  # a killed build leaves nothing in /tmp
        build = build_quantized(qm, hw, feeds, cpu_target=cpu_target, work_dir=work)
    options = {
        "calib": Path(str(calib)).name if calib else "none (pre-quantized model)",
        "calib_samples": int(qm.calibration.get("samples", 0) or 0),
        "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()},
        "golden": golden,
    }
    data = artifact_bytes(
        build,
        hw,
        source_name=source.name,
        source_sha256=hashlib.sha256(source.read_bytes()).hexdigest(),
        options=options,
        io_dtype=io_dtype,
        source_outputs=[t.name for t in info.outputs],
    )
    write_bytes_atomic(out_path, data)
    return build
