"""Random NPU layers and graphs for the compiler tests, and the compile-simulate-compare check."""

from __future__ import annotations

import math

import numpy as np

from npuc.backend.npu.compile import CompiledNpuProgram, compile_npu_graph
from npuc.backend.npu.ops import (
    NpuConv2d,
    NpuElementwise,
    NpuGraph,
    NpuPool,
    NpuTensor,
    window_out,
)
from npuc.backend.npu.reference import run_reference
from npuc.core.hw.config import NPU_S, HwConfig
from npuc.core.isa.program import Program
from npuc.npu_sim import SimResult, simulate

# A config whose SRAM forces tiling of everything but the smallest layers.
TINY = HwConfig(
    name="npu-tiny",
    mac_rows=16,
    mac_cols=16,
    sram_bytes=16 * 1024,
    dram_bytes_per_cycle=8,
    itp_lanes=16,
    mac_pipeline_fill_cycles=32,
)
CONFIGS = {"npu-s": NPU_S, "npu-tiny": TINY}
RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def tensor(
    name: str, shape: tuple[int, int, int, int], dtype: str = "int8", zp: int = 0
) -> NpuTensor:
    return NpuTensor(name=name, shape=shape, dtype=dtype, scale=0.05, zero_point=zp)


def _post_shift(k: int, pre_shift: int, in_dtype: str) -> int:
    """A shift that maps a typical accumulator of ``k`` products to about +-60 (values vary)."""
    spread = 70.0 if in_dtype != "int16" else 9000.0
    acc = spread * 70.0 * math.sqrt(k) / (1 << pre_shift)
    return max(1, min(47, round(math.log2(acc * 20000 / 60))))


def conv(
    rng: np.random.Generator,
    ifm: NpuTensor,
    *,
    cout: int,
    kernel: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    depthwise: bool = False,
    name: str = "conv",
    ofm_name: str = "y",
    per_channel: bool = True,
    bias: bool = True,
) -> NpuConv2d:
    """A random-weight convolution of ``ifm`` with output values spread over the int8 range."""
    _, h, w, cin = ifm.shape
    kh, kw = kernel
    oh = window_out(h, padding[0], padding[2], kh, stride[0], dilation[0])
    ow = window_out(w, padding[1], padding[3], kw, stride[1], dilation[1])
    cin_pg = 1 if depthwise else cin
    pre_shift = int(rng.integers(0, 3))
    n_mult = cout if per_channel else 1
    return NpuConv2d(
        name=name,
        ifm=ifm,
        ofm=tensor(ofm_name, (1, oh, ow, cout), "int8", int(rng.integers(-10, 10))),
        weights=rng.integers(-127, 128, (cout, kh, kw, cin_pg)).astype(np.int8),
        bias=rng.integers(-3000, 3000, cout).astype(np.int16) if bias else None,
        bias_shift=int(rng.integers(0, 6)) if bias else 0,
        ofm_multiplier=rng.integers(10000, 32768, n_mult).astype(np.uint16),
        pre_shift=pre_shift,
        post_shift=_post_shift(kh * kw * cin_pg, pre_shift, ifm.dtype),
        act_min=int(rng.integers(-128, -60)),
        act_max=127,
        stride=stride,
        dilation=dilation,
        padding=padding,
        groups=cin if depthwise else 1,
    )


def eltwise(
    rng: np.random.Generator,
    a: NpuTensor,
    b: NpuTensor,
    op: str = "add",
    name: str = "add",
    ofm_name: str = "z",
) -> NpuElementwise:
    """Random two-multiplier element-wise op on same-shape tensors."""
    return NpuElementwise(
        name=name,
        op=op,
        ifm=a,
        ifm2=b,
        ofm=tensor(ofm_name, a.shape, "int8", int(rng.integers(-5, 5))),
        ifm_multiplier=int(rng.integers(1, 32768)),
        ifm2_multiplier=int(rng.integers(1, 32768)),
        ofm_multiplier=int(rng.integers(1, 32768)),
        post_shift=15 if op != "mul" else 20,
        act_min=-128,
        act_max=127,
    )


def pool(
    rng: np.random.Generator,
    ifm: NpuTensor,
    *,
    op: str,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    name: str = "pool",
    ofm_name: str = "y",
) -> NpuPool:
    """Random max/avg pool; avg folds 1/(kh*kw) into the multiplier."""
    _, h, w, c = ifm.shape
    oh = window_out(h, padding[0], padding[2], kernel[0], stride[0])
    ow = window_out(w, padding[1], padding[3], kernel[1], stride[1])
    same = op == "max"
    ofm_zp = ifm.zero_point + (0 if same else int(rng.integers(0, 5)))
    return NpuPool(
        name=name,
        op=op,
        ifm=ifm,
        ofm=NpuTensor(
            name=ofm_name, shape=(1, oh, ow, c), dtype=ifm.dtype, scale=ifm.scale, zero_point=ofm_zp
        ),
        kernel=kernel,
        stride=stride,
        padding=padding,
        ofm_multiplier=max(1, round((1 << 14) / (kernel[0] * kernel[1]))) if not same else 1,
        post_shift=14 if not same else 0,
        act_min=RANGES[ifm.dtype][0],
        act_max=RANGES[ifm.dtype][1],
    )


def random_input(rng: np.random.Generator, t: NpuTensor) -> np.ndarray:
    lo, hi = RANGES[t.dtype]
    return rng.integers(lo, hi + 1, t.shape).astype(t.dtype)


def compile_and_check(
    graph: NpuGraph,
    hw: HwConfig,
    rng: np.random.Generator,
    *,
    sram_budget: int | None = None,
    cascade: bool = True,
) -> tuple[CompiledNpuProgram, SimResult]:
    """Compile, reload from bytes (the loader's view), simulate, and assert == the reference."""
    compiled = compile_npu_graph(graph, hw, sram_budget=sram_budget, cascade=cascade)
    program = Program.from_bytes(compiled.program.to_bytes(), hw=hw)
    inputs = {t.name: random_input(rng, t) for t in graph.inputs}
    result = simulate(program, inputs, hw)
    expected = run_reference(graph, inputs)
    for t in graph.outputs:
        np.testing.assert_array_equal(result.outputs[t.name], expected[t.name], strict=True)
    return compiled, result
