"""The NPU target's command handlers: ``build --target npu``, ``run model.npuc``, ``verify``.

Shared by :mod:`npuc.cli.cmd_build`, :mod:`npuc.cli.cmd_run` and
:mod:`npuc.cli.cmd_verify`; heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from npuc.cli import common
from npuc.cli.common import CommandResult
from npuc.core.errors import InvalidInputError


def add_npu_build_flags(parser: argparse.ArgumentParser) -> None:
    """``--calib``, ``--hw``, ``--golden``, ``--calib-limit``, ``--report`` (``--target npu``)."""
    group = parser.add_argument_group("NPU target (--target npu)")
    group.add_argument(
        "--calib",
        metavar="DATA",
        help="calibration data: a folder or .npz/.npy file of samples, or 'random' to try the flow",
    )
    group.add_argument(
        "--hw",
        default="npu-s",
        metavar="PRESET|FILE.toml",
        help="NPU configuration: npu-s, npu-m, npu-l or a TOML file (default: npu-s)",
    )
    group.add_argument(
        "--golden",
        type=int,
        default=2,
        metavar="N",
        help="calibration samples stored with their expected outputs for `npuc verify` (default 2)",
    )
    group.add_argument(
        "--calib-limit", type=int, metavar="N", help="use at most N calibration samples"
    )
    group.add_argument(
        "--io-dtype",
        choices=("float", "int8", "uint8"),
        help="what the artifact's inputs and outputs are: float (quantized and dequantized "
        "at the boundary; default) or the quantized integers themselves",
    )
    from npuc.cli.quant_options import add_quant_flags

    add_quant_flags(parser)
    group.add_argument(
        "--report",
        metavar="DIR",
        help="write the performance report (report.json/.html/.txt, trace.json) to DIR",
    )
    group.add_argument(
        "--show-cpu-ops", action="store_true", help="list every layer kept on the CPU and why"
    )


def resolve_hw(text: str) -> Any:
    """A preset name or a TOML file -> HwConfig (InvalidInputError otherwise)."""
    from npuc.core.hw.config import PRESETS, load_hw_config

    if text in PRESETS:
        return PRESETS[text]
    if Path(text).suffix == ".toml":
        return load_hw_config(common.existing_file(text, "hardware configuration"))
    raise InvalidInputError(
        f"--hw {text}: not a preset ({', '.join(sorted(PRESETS))}) or a .toml file"
    )


def build(args: argparse.Namespace) -> CommandResult:
    """``npuc build model --target npu --calib DATA -o model.npuc``."""
    from npuc.backend.npu.build import build_npu
    from npuc.backend.npu.report import report_table

    source = common.existing_file(args.model, "model file")
    out_path = Path(args.output) if args.output else Path(source.stem + ".npuc")
    if out_path.suffix != ".npuc":
        raise InvalidInputError(f"-o {out_path}: an NPU build writes a .npuc file")
    if args.golden < 0:
        raise InvalidInputError(f"--golden {args.golden}: must be 0 or more")
    from npuc.cli.quant_options import config_from_args

    hw = resolve_hw(args.hw)
    config = config_from_args(args)
    shapes = common.parse_input_shapes(args.input_shape)
    if args.report:
        from npuc.cli.npu_report import check_report_dir

        check_report_dir(Path(args.report))
    from npuc.core.target import CpuTarget
    from npuc.driver import make_target

    # The CPU regions are compiled for this machine, with --threads like a CPU build.
    cpu_target = make_target("cpu", num_threads=args.threads)
    assert isinstance(cpu_target, CpuTarget)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = build_npu(
            source,
            out_path,
            hw,
            args.calib,
            input_shapes=shapes,
            config=config,
            golden=args.golden,
            calib_limit=args.calib_limit,
            io_dtype=args.io_dtype or "float",
            cpu_target=cpu_target,
        )
    notes = list(dict.fromkeys(str(w.message) for w in caught))  # each warning once
    if len(result.golden) < args.golden:
        notes.append(
            f"--golden {args.golden}: only {len(result.golden)} sample(s) were available, "
            f"so the artifact stores {len(result.golden)} golden sample(s)"
        )
    report: dict[str, Any] | None = None
    if args.report:
        from npuc.cli.npu_report import make_report, write_report_files

        made = make_report(result, hw, [feeds for feeds, _ in result.golden])
        report = made.report
        written = write_report_files(Path(args.report), made, hw)
    npu = sum(p.target == "npu" for p in result.placements)
    cpu = [p for p in result.placements if p.target == "cpu"]
    lines = [
        f"built {out_path} ({out_path.stat().st_size:,} bytes) for {hw.name}",
        f"  layers: {npu} on the NPU in {len(result.partitions)} partition(s),"
        f" {len(cpu)} on the CPU",
        f"  estimated NPU cycles: {sum(c.est_cycles for c in result.compiled):,}",
    ]
    if report is not None:
        t = report["totals"]
        lines.append(
            f"  simulated NPU cycles: {t['sim_cycles']:,} ({t['time_ms']:.3f} ms),"
            f" MAC utilisation {t['mac_utilisation']:.1%}"
        )
    lines += _interface_lines(result.qm, args.io_dtype or "float")
    lines += [f"  warning: {note}" for note in notes]
    meta = result.qm.calibration
    if meta.get("pre_quantized"):
        changes = meta.get("forced_changes", [])
        lines.append(f"  {meta.get('note')}; forced changes: {len(changes)}")
        lines += [f"    {c['layer']} ({c['kind']}): {c['detail']}" for c in changes]
    if args.show_cpu_ops or cpu:
        lines += [f"  cpu: {p.layer} ({p.op}): {p.reason}" for p in cpu]
        from npuc.core.cpu_region_format import summary_lines

        lines += [f"  {line}" for line in summary_lines([r.entry for r in result.cpu_regions])]
    if report is not None:
        lines.append(f"  report: {', '.join(str(p) for p in written)}")
        lines += report_table(report, cpu_layers=False)
    from npuc.backend.npu.build import interface_io

    data: dict[str, Any] = {
        "output": str(out_path),
        "bytes": out_path.stat().st_size,
        "hw": hw.name,
        "io_dtype": args.io_dtype or "float",
        "npu_layers": npu,
        "partitions": len(result.partitions),
        "cpu_layers": [{"layer": p.layer, "op": p.op, "reason": p.reason} for p in cpu],
        "cpu_regions": [r.entry.to_json() for r in result.cpu_regions],
        "estimated_npu_cycles": sum(c.est_cycles for c in result.compiled),
        "interface": interface_io(result.qm, args.io_dtype or "float"),
        "calibration": dict(meta),
        "notes": notes,
    }
    if report is not None:
        data["report"] = report
    return CommandResult(data=data, text="\n".join(lines))


def _interface_lines(qm: Any, io_dtype: str) -> list[str]:
    """The ``interface:`` lines of ``npuc build --target npu``'s text output."""
    from npuc.backend.npu.build import interface_io

    if io_dtype == "float":
        return ["  interface: float32 inputs and outputs (quantized at the boundary)"]
    lines = []
    for name, entry in interface_io(qm, io_dtype).items():
        face = entry.get("interface")
        if face is None:
            lines.append(
                f"  interface: {name} float32 (not quantized: only float CPU layers use it)"
            )
        else:
            lines.append(
                f"  interface: {name} {face['dtype']} scale {face['scale']:.6g} "
                f"zero point {face['zero_point']}"
                + (f" (stored as {entry['dtype']}, shifted by 128)" if face["offset"] else "")
            )
    return lines


class _Interface:
    def __init__(self, inputs: list[Any]) -> None:
        self.inputs = inputs


def run(args: argparse.Namespace) -> CommandResult:
    """``npuc run model.npuc --input x=x.npy [--output out.npz] [--raw] [--engine sim|ref]``.

    Runs through :mod:`npuc.runtime.npu_model` (``npuc.runtime.load``); ``--engine ref``
    adds the compiler's integer reference (:func:`npuc.cli.npu_exec.reference_runner`).
    """
    from npuc.core.model_info import TensorInfo
    from npuc.runtime.npu_model import load_npuc
    from npuc.runtime.tensor_files import read_input_files, write_outputs_npz

    path = common.existing_file(args.library, "compiled model")
    if args.output and not args.output.endswith(".npz"):
        raise InvalidInputError(f"--output {args.output}: must end in .npz", hint="e.g. out.npz")
    if args.trace and args.engine != "sim":
        raise InvalidInputError("--trace needs --engine sim (the integer executor has no timing)")
    model = load_npuc(path)
    if args.engine == "ref":
        from npuc.cli.npu_exec import reference_runner

        model.reference = reference_runner(model)
    info = _Interface(
        [
            TensorInfo(name=n, shape=tuple(ty.shape), dtype=model.input_dtypes[n])
            for n, ty in model.qm.graph.inputs
        ]
    )
    try:
        feeds = read_input_files(args.input, info)
    except InvalidInputError as err:
        named = [n for n in model.interface if f"input {n!r}: expected dtype" in err.message]
        if not named:
            raise
        name = named[0]
        raise InvalidInputError(
            f"{err.message}: {model.interface_text(name)}", hint=model.quantize_hint(name)
        ) from None
    for name, value in feeds.items():
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise InvalidInputError(
                f"input {name!r} holds NaN or infinite values; the NPU quantizes its inputs "
                "to integers, where they have no value",
                hint="clean the input (np.nan_to_num) before running",
            )
    outputs = model.run(feeds, raw=args.raw, engine=args.engine, trace=bool(args.trace))
    if args.trace:
        write_trace(Path(args.trace), model)
    if args.output:
        write_outputs_npz(args.output, outputs)
    cycles = sum(s.cycles[-1] for s in model.stats if s.cycles)
    lines = [f"ran {path} on the {'simulator' if args.engine == 'sim' else 'integer executor'}"]
    if args.engine == "sim":
        lines.append(
            f"  NPU cycles: {cycles:,} ({model.hw.cycles_to_seconds(cycles) * 1e3:.3f} ms)"
        )
    for name, v in outputs.items():
        lines.append(f"  {name}: {'x'.join(map(str, v.shape))} {v.dtype}")
    if args.output:
        lines.append(f"wrote {args.output}")
    data = {
        "outputs": {n: list(v.shape) for n, v in outputs.items()},
        "npu_cycles": cycles,
        "io_dtype": model.io_dtype,
    }
    return CommandResult(data=data, text="\n".join(lines))


def write_trace(path: Path, ex: Any) -> None:
    """Chrome trace of the last run: partition ``i`` is process ``i + 1``."""
    import json

    from npuc.core.fileio import write_text_atomic

    events: list[dict[str, Any]] = []
    for i, st in enumerate(ex.stats):
        for event in st.trace:
            if event.get("ph") == "M" and event.get("name") == "process_name":
                event = {**event, "args": {"name": st.name}}
            events.append({**event, "pid": i + 1})
    write_text_atomic(path, json.dumps({"traceEvents": events, "displayTimeUnit": "ns"}))


def verify(args: argparse.Namespace) -> CommandResult:
    """``npuc verify model.npuc``: replay golden samples on the simulator."""
    from npuc.runtime.verify_stages import verify_artifact

    path = common.existing_file(args.artifact, "compiled model")
    lines = verify_artifact(path)
    return CommandResult(data={"result": lines[-1], "lines": lines}, text="\n".join(lines))
