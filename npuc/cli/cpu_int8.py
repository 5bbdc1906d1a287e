"""``npuc build MODEL --target cpu --precision int8 --calib DATA -o model.so``.

The handler behind ``cmd_build`` for the integer CPU library
(:mod:`npuc.backend.cpu.qlower.library`): quantizes with the same options as
``npuc quantize`` / ``npuc build --target npu`` and writes a library whose
outputs are the integer executor's (stored integers for integer outputs).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

from npuc.cli import common
from npuc.cli.common import CommandResult
from npuc.core.errors import InvalidInputError


def build_int8(args: argparse.Namespace) -> CommandResult:
    """Build the integer CPU library; refuses options that only the float build has."""
    from npuc import driver
    from npuc.backend.cpu.qlower.library import build_int8_library
    from npuc.cli.quant_options import config_from_args

    if args.input_value:
        raise InvalidInputError(
            "--input-value is not supported with --precision int8 yet",
            hint="fix the value in the model before exporting it, or build --precision float",
        )
    if args.io_dtype is not None:
        raise InvalidInputError(
            f"--io-dtype {args.io_dtype}: the int8 CPU library takes float inputs and gives "
            "the stored integers of its outputs",
            hint="drop --io-dtype",
        )
    target = driver.check_buildable(driver.make_target("cpu", num_threads=args.threads))
    source = common.existing_file(args.model, "model file")
    out_path = Path(args.output) if args.output else Path(source.stem + ".so")
    driver.check_output_path(out_path)
    start_s = time.monotonic()
    with (
        warnings.catch_warnings(record=True) as caught,
        driver.tvm_failures_as_npuc_errors(source, "compiling"),
    ):
        warnings.simplefilter("always")
        built = build_int8_library(
            source,
            out_path,
            args.calib,
            target,
            config=config_from_args(args),
            input_shapes=common.parse_input_shapes(args.input_shape),
            calib_limit=args.calib_limit,
        )
    result, qm = built.result, built.qm
    total_s = time.monotonic() - start_s
    data: dict[str, Any] = result.to_json()
    data["timings_s"] = {**result.timings_s, "total": total_s}
    data["model"] = str(source)
    data["precision"] = "int8"
    data["quantized_outputs"] = result.info.extra.get("quantized_outputs", {})
    float_layers = [name for name, layer in qm.layers.items() if layer.run_on != "npu"]
    data["float_layers"] = float_layers
    lines = [
        f"built {result.library_path} ({result.library_bytes:,} bytes) and "
        f"{result.sidecar_path} (int8, bit-exact with the integer executor)",
        f"  target:  {result.target.cpu_name}, {result.target.num_cores} thread(s)",
        "  inputs:  "
        + ", ".join(f"{t.name} {t.shape_str()} {t.dtype}" for t in result.info.inputs),
        "  outputs: "
        + ", ".join(f"{t.name} {t.shape_str()} {t.dtype}" for t in result.info.outputs),
    ]
    for name, q in data["quantized_outputs"].items():
        real = f"(q - {q['zero_point']}) * {q['scale']:.6g}"
        lines.append(f"  {name}: stored {q['dtype']}; real value = {real}")
    lines.append(
        f"  layers:  {len(qm.layers) - len(float_layers)} integer, {len(float_layers)} float"
        + (f" ({', '.join(float_layers[:5])}{', ...' if len(float_layers) > 5 else ''})"
           if float_layers else "")
    )  # fmt: skip
    lines.append(f"  time:    total {total_s:.1f}s")
    notes = list(dict.fromkeys(str(w.message) for w in caught))
    data["notes"] = notes
    lines += [f"  warning: {note}" for note in notes]
    return CommandResult(data=data, text="\n".join(lines))
