"""examples/*.s: assemble -> simulate -> outputs equal the int64 reference (core/intref) exactly.

Each example has a layer-level reference written from its header comment and
its .npy data, so the test checks the assembly's intent (geometry, shifts,
zero points), not just that the simulator agrees with itself. A new example
without a reference here fails the test on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from npuc.core import intref
from npuc.core.hw.config import NPU_M
from npuc.core.isa.asm import assemble_file
from npuc.npu_sim import simulate
from npuc.npu_sim.trace import trace_json

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def data(name: str) -> np.ndarray:
    return np.load(EXAMPLES / f"{name}.npy")


def stage(
    m: np.ndarray | int, pre: int, post: int, zp: int, act: tuple[int, int], dtype: str, **kw
):  # type: ignore[no-untyped-def]
    mults = np.atleast_1d(np.asarray(m, dtype=np.uint16))
    return intref.OutputStage(
        pre_shift=pre,
        post_shift=post,
        multipliers=mults,
        ofm_zp=zp,
        act_min=act[0],
        act_max=act[1],
        ofm_dtype=dtype,
        **kw,
    )


NO_CLAMP = (-32768, 65535)  # the assembler's default act range: only the type saturates


def ref_conv_relu(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    y, _ = intref.conv2d(
        x["x"][0],
        data("conv_relu_w"),
        data("conv_relu_b"),
        stage(data("conv_relu_m"), 1, 22, -20, (-20, 127), "int8"),
        bias_shift=2,
        ifm_zp=-3,
        pads=(1, 1, 1, 1),
    )
    return {"y": y[None]}


def ref_residual_add(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    h1, _ = intref.conv2d(
        x["x"][0],
        data("residual_add_w1"),
        data("residual_add_b1"),
        stage(data("residual_add_m1"), 2, 20, 0, (0, 127), "int8"),
        bias_shift=0,
        ifm_zp=0,
        pads=(1, 1, 1, 1),
    )
    h2, _ = intref.conv2d(
        h1,
        data("residual_add_w2"),
        data("residual_add_b2"),
        stage(27962, 2, 20, 0, NO_CLAMP, "int8"),
        bias_shift=1,
        ifm_zp=0,
        pads=(1, 1, 1, 1),
    )
    y, _ = intref.eltwise(
        "add",
        h2,
        x["x"][0],
        ifm_zp=0,
        ifm2_zp=0,
        ofm_zp=-128,
        ifm_multiplier=28087,
        ifm2_multiplier=4681,
        post_shift=15,
        act_min=-128,
        act_max=127,
        ofm_dtype="int8",
    )
    return {"y": y[None]}


def ref_depthwise(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    d, _ = intref.conv2d(
        x["x"][0],
        data("depthwise_w"),
        data("depthwise_b"),
        stage(data("depthwise_m"), 0, 21, 0, (0, 120), "uint8"),
        bias_shift=0,
        ifm_zp=128,
        stride=(2, 2),
        pads=(1, 1, 1, 1),
        depthwise=True,
    )
    p, _ = intref.avg_pool(
        d,
        kernel=(8, 8),
        stride=(8, 8),
        pads=(0, 0, 0, 0),
        ifm_zp=0,
        ofm_zp=0,
        ofm_multiplier=1024,
        post_shift=16,
        act_min=NO_CLAMP[0],
        act_max=NO_CLAMP[1],
        ofm_dtype="uint8",
    )
    return {"d": d[None], "p": p[None]}


def ref_lut_sigmoid(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    h, _ = intref.fully_connected(
        x["x"],
        data("lut_sigmoid_w1"),
        data("lut_sigmoid_b1"),
        stage(26844, 0, 15, 0, NO_CLAMP, "int16"),
        bias_shift=0,
        ifm_zp=0,
    )
    y16 = intref.saturate(
        intref.lut_lookup(h, data("lut_sigmoid_t16"), in_dtype="int16", lut_bits=8), "int16"
    )
    y8, _ = intref.fully_connected(
        x["x"],
        data("lut_sigmoid_w2"),
        np.zeros(32, np.int16),
        stage(
            data("lut_sigmoid_m2"),
            0,
            22,
            0,
            NO_CLAMP,
            "int8",
            lut=data("lut_sigmoid_t8"),
            lut_in_dtype="int8",
        ),
        bias_shift=0,
        ifm_zp=0,
    )
    return {"y16": y16, "y8": y8}


REFERENCES: dict[str, Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]] = {
    "conv_relu": ref_conv_relu,
    "residual_add": ref_residual_add,
    "depthwise": ref_depthwise,
    "lut_sigmoid": ref_lut_sigmoid,
}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.s")), ids=lambda p: p.stem)
def test_example_matches_int64_reference(path: Path) -> None:
    assert path.stem in REFERENCES, f"add an int64 reference for {path.name} to this test"
    program = assemble_file(path, hw=NPU_M)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        inputs = {}
        for t in program.inputs:
            info = np.iinfo(t.dtype)
            inputs[t.name] = rng.integers(info.min, int(info.max) + 1, size=t.shape).astype(t.dtype)
        result = simulate(program, inputs, NPU_M, trace=True)
        expected = REFERENCES[path.stem](inputs)
        assert set(result.outputs) == set(expected)
        for name, value in result.outputs.items():
            np.testing.assert_array_equal(value, expected[name].astype(value.dtype), strict=True)
        assert result.overflow == ()
    doc = json.loads(trace_json(result.trace_events))
    spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == result.stats.instructions
    assert all(isinstance(e["ts"], float) and e["dur"] >= 0 and e["tid"] in range(4) for e in spans)
