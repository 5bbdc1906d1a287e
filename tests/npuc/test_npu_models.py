"""The central test: real models on the simulator == the integer executor, bit for bit, at
every NPU partition border and at the outputs (2 random calibration samples; accuracy is not
the point here). Per model the placements, cycles and MAC utilisation are recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from npuc.cli.npu_exec import NpuModelExecutor
from npuc.core.hw.config import NPU_S
from tests.backend.npu.qmodels import quantized
from tests.frontend.torch_onnx import export_onnx
from tools.real_models import (
    NUDENET_YOLOV8N,
    ORIENTATION,
    PPOCR_CLS,
    PPOCR_DET,
    PPOCR_REC,
    RealModel,
)

SHAPES = {
    PPOCR_DET.key: (1, 3, 320, 320),
    PPOCR_REC.key: (1, 3, 48, 320),
    PPOCR_CLS.key: (1, 3, 48, 192),
    ORIENTATION.key: (1, 3, 224, 224),
    NUDENET_YOLOV8N.key: (1, 3, 320, 320),
}


def _real(model: RealModel) -> Callable[[Path], onnx.ModelProto | Path]:
    def get(tmp: Path) -> Path:
        try:
            return model.path()
        except FileNotFoundError as err:
            pytest.skip(str(err))

    return get


def _mobilenet_v2(tmp: Path) -> onnx.ModelProto:
    import torch

    from tests.tooling.torch_nets import mobilenet_v2

    return export_onnx(mobilenet_v2(), (torch.zeros(1, 3, 224, 224),), names=["input"])


MODELS: dict[str, tuple[Callable[[Path], onnx.ModelProto | Path], str | None]] = {
    "mobilenet_v2": (_mobilenet_v2, None),
    **{m.key: (_real(m), m.input_name) for m in (ORIENTATION, PPOCR_CLS, PPOCR_REC, PPOCR_DET)},
    NUDENET_YOLOV8N.key: (_real(NUDENET_YOLOV8N), NUDENET_YOLOV8N.input_name),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "key",
    sorted(MODELS),
)
def test_model_on_simulator_equals_integer_executor(
    key: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    get, input_name = MODELS[key]
    source = get(tmp_path)
    shapes = {input_name: SHAPES[key]} if input_name else None
    qm, fx, feeds = quantized(source, samples=2, input_shapes=shapes)
    ex = NpuModelExecutor(qm, NPU_S, fx)
    assert ex.partitions, "no layer of a CNN on the NPU"
    got = ex.verify(feeds[0])  # every partition border and output, assert_array_equal
    expected = ex.int_exec.run(feeds[0])
    for name in qm.graph.outputs:
        a, b = got[name], expected[name]
        np.testing.assert_array_equal(getattr(a, "values", a), getattr(b, "values", b))
    cpu = {p.layer: p.reason for p in ex.placements if p.target == "cpu"}
    assert all(cpu.values()), "a CPU layer without a reason"
    cycles = sum(s.cycles[-1] for s in ex.stats)
    macs = sum(s.macs for s in ex.stats)
    record_property("npu_layers", len(ex.placements) - len(cpu))
    record_property("cpu_layers", cpu)
    record_property("cycles", cycles)
    record_property("mac_utilisation", macs / (cycles * NPU_S.mac_rows * NPU_S.mac_cols))
