"""``npuc build``: compile a model into a native library for this CPU.

Runs :func:`npuc.driver.build` with a progress bar and prints what was
written (files, sizes), the target and where the time went. ``--json``
prints :meth:`npuc.backend.cpu.BuildResult.to_json` plus ``timings_s.total``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from npuc.cli import common
from npuc.cli.common import CommandResult
from npuc.core.errors import InvalidInputError
from npuc.core.target import TARGET_KINDS

DESCRIPTION = """\
Compile a model (ONNX, TFLite, PyTorch .pt2) for the host CPU: writes a native
shared library (-o model.so) and its description (model.so.json). Run it with
`npuc run model.so --input ...`.

--target npu quantizes the model on calibration data (--calib), compiles the
layers the NPU can run and writes one artifact (-o model.npuc) with the NPU
programs, the quantization, the CPU fallback and golden test samples; run it
with `npuc run model.npuc`, check it with `npuc verify model.npuc`.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "build",
        help="compile a model into a native library for this CPU",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="model file (.onnx, .tflite, .pt2)")
    parser.add_argument(
        "--target", default="cpu", choices=TARGET_KINDS, help="what to compile for (default: cpu)"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT.so",
        help="library to write (default: <model name>.so in the current folder)",
    )
    common.add_input_shape_flag(parser)
    common.add_input_value_flag(parser)
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="threads the compiled code may use (default: the physical cores this process may use)",
    )
    parser.add_argument(
        "--precision",
        choices=("float", "int8", "weight-int8", "fp16-weights"),
        default="float",
        help="(--target cpu) float (default); int8: quantize on --calib and compile the "
        "integer model, bit-exact with the integer executor; weight-int8 / fp16-weights: "
        "float compute, conv/matmul weights stored as int8 + per-channel scale / float16 "
        "(library about 3x / 1.8x smaller on real models, no calibration)",
    )
    parser.add_argument(
        "--tuning-db",
        metavar="DIR",
        help="(--target cpu; float, weight-int8 or fp16-weights: float kernels) use the tuned "
        "kernels `npuc tune --db DIR` recorded; the other kernels keep the hand schedules",
    )
    from npuc.cli.npu_commands import add_npu_build_flags

    add_npu_build_flags(parser)
    common.add_common_flags(parser)
    parser.set_defaults(handler=run)


_WEIGHTS = {
    "float": "float32",
    "weight-int8": "conv/matmul int8 + per-channel scale, float32 at load",
    "fp16-weights": "conv/matmul float16, float32 at load",
}


def _size(num_bytes: int) -> str:
    for unit, scale in (("MB", 1 << 20), ("kB", 1 << 10)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes} B"


def run(args: argparse.Namespace) -> CommandResult:
    from npuc import driver
    from npuc.core.progress import Progress

    if args.target == "npu" and args.precision != "float":
        raise InvalidInputError(
            f"--precision {args.precision} applies to --target cpu; an NPU build is always "
            "quantized to the NPU's integer datapath",
            hint="drop --precision (choose the activation bits with --activation-bits)",
        )
    if args.tuning_db is not None and (args.target == "npu" or args.precision == "int8"):
        raise InvalidInputError(
            f"--tuning-db {args.tuning_db} applies to float CPU builds (--target cpu); "
            "it would be ignored here",
            hint="drop --tuning-db",
        )
    if args.target == "npu":
        from npuc.cli.npu_commands import build

        if args.input_value:
            raise InvalidInputError(
                "--input-value is not supported with --target npu yet",
                hint="build for the CPU, or fix the value in the model before exporting it",
            )

        return build(args)

    if args.precision == "int8":
        from npuc.cli.cpu_int8 import build_int8

        return build_int8(args)
    if args.calib is not None and args.precision != "float":
        raise InvalidInputError(
            f"--calib {args.calib}: --precision {args.precision} stores weights compactly and "
            "computes in float; it needs no calibration data, so it would be ignored",
            hint="drop --calib, or use --precision int8 for an integer library calibrated on it",
        )
    if args.calib is not None:
        raise InvalidInputError(
            f"--calib {args.calib}: a float CPU build does not quantize, so it would be ignored",
            hint="add --precision int8 for an integer CPU library, or --target npu",
        )
    if args.io_dtype is not None:
        raise InvalidInputError(
            f"--io-dtype {args.io_dtype}: only an NPU build (--target npu) has a quantized "
            "interface; the CPU library takes and gives the model's own dtypes",
            hint="add --target npu, or drop --io-dtype",
        )
    target = driver.check_buildable(driver.make_target(args.target, num_threads=args.threads))
    source = common.existing_file(args.model, "model file")
    out_path = Path(args.output) if args.output else Path(source.stem + ".so")
    shapes = common.parse_input_shapes(args.input_shape)
    values = common.parse_input_values(args.input_value)

    start_s = time.monotonic()
    with Progress(
        len(driver.BUILD_STAGES), "npuc build", enabled=None if not args.json else False
    ) as bar:
        result = driver.build(
            source,
            out_path=out_path,
            target=target,
            input_shapes=shapes,
            progress=bar,
            input_values=values,
            precision=args.precision,
            tuning_db=args.tuning_db,
        )
    timings_s = {**result.timings_s, "total": time.monotonic() - start_s}
    data = result.to_json()
    data["timings_s"] = timings_s
    data["model"] = str(source)
    data["precision"] = args.precision

    target = result.target
    isa = (
        "AVX-512" + (" VNNI" if target.has_avx512_vnni else "")
        if target.has_avx512
        else "no AVX-512"
    )
    lines = [
        f"built {result.library_path} ({_size(result.library_bytes)}) and "
        f"{result.sidecar_path} ({_size(result.sidecar_bytes)})",
        f"  target:  {target.cpu_name}, {target.num_cores} thread(s), {isa}",
        f"  weights: {_WEIGHTS[args.precision]} (--precision {args.precision})",
        f"  kernels: {sum(result.schedule_counts.values())}, "
        f"{result.schedule_counts.get('tuned', 0)} tuned"
        + (f" (--tuning-db {args.tuning_db})" if args.tuning_db else ""),
        "  inputs:  "
        + ", ".join(f"{t.name} {t.shape_str()} {t.dtype}" for t in result.info.inputs),
        "  outputs: "
        + ", ".join(f"{t.name} {t.shape_str()} {t.dtype}" for t in result.info.outputs),
        "  time:    "
        + ", ".join(f"{stage} {timings_s[stage]:.1f}s" for stage in timings_s if stage != "total")
        + f" (total {timings_s['total']:.1f}s)",
    ]
    return CommandResult(data=data, text="\n".join(lines))
