"""The AVX2 int8 kernel (:mod:`npuc.backend.cpu.schedules.int8_avx2`) is exact at the extremes.

Products at their largest (``u = 255`` with weights ``-128``/``127``, pairs of the
same sign: 2 x 255 x 128 = 65280, beyond int16), every zero-point extreme, the
staged weights' vector body and tail (``cg = 9``), the same pairs made in registers
(one position tile), and a layer too long for the
uncentred sums (``K = 70000``: the centred form) equal the integer executor bit
for bit. A kernel whose pair sums saturated to int16 or whose staged weights
were zero-extended fails ``test_extreme_products_are_exact`` (checked by hand-made
mutants of :func:`~npuc.backend.cpu.schedules.int8_avx2.dot` and ``_halves``; the long
layer, whose pairs are made in registers, fails the zero-extension mutant too).
"""

from __future__ import annotations

import numpy as np
import pytest

from npuc.backend.cpu.qlower.int8_conv import plan_conv
from npuc.backend.cpu.qlower.int8_grouped import plan_grouped
from npuc.backend.cpu.schedules.int8_avx2 import stages_per_job, stages_weights, uncentred
from npuc.backend.cpu.schedules.int8_spec import (
    AVX2,
    RESIDENT_INPUT_BYTES,
    VNNI512,
    ConvKernelSpec,
    plan_tiles,
)
from npuc.core.target import CpuTarget, host_target
from npuc.midend.quantize.qparams import QParams

from ..qlower.harness import Case, assert_cases_exact, node

AVX2_TARGET = CpuTarget(
    cpu_name="haswell",
    features=tuple(sorted(("avx", "avx2", "f16c", "fma", "sse4.1", "sse4.2"))),
    num_cores=2,
)

#: int16 outputs, ``y = sum >> shift``: every error of 1 << shift or more in a sum shows.
OUT = QParams(0.05, 0, "int16")


def _stage(cout: int, shift: int) -> dict[str, object]:
    return {
        "b16": np.zeros(cout, np.int16), "bias_shift": 0, "pre_shift": 0,
        "ofm_multiplier": np.full(cout, 1 << 14, np.uint16), "post_shift": 14 + shift,
        "act_min": -32768, "act_max": 32767,
    }  # fmt: skip


def _extreme_conv(
    rng: np.random.Generator, name: str, xq: QParams, far: int, size: tuple[int, int] = (6, 7)
) -> Case:
    """3x3 conv, 36 -> 12 channels on a ``size`` input: weights only -128/127 (two channels
    all 127, one all -128), the input mostly ``far`` (the stored value farthest from the
    zero point)."""
    w = rng.choice(np.array([-128, 127], np.int8), size=(12, 36, 3, 3))
    w[0], w[1], w[2] = 127, 127, -128
    info = np.iinfo(np.dtype(xq.dtype))
    x = np.full((1, 36, *size), far, xq.dtype)
    x[:, :, ::3] = rng.choice(np.array([info.min, info.max], xq.dtype), size=x[:, :, ::3].shape)
    attrs = {"strides": [1, 1], "padding": [1, 1, 1, 1], "dilation": [1, 1], "groups": 1}
    return Case(
        node=node(name, "conv2d", (f"{name}_x",), **attrs),
        inputs={f"{name}_x": (x, xq)},
        params={"weights": w, **_stage(12, 9)},
        out=OUT,
    )


def _long_dense(rng: np.random.Generator) -> Case:
    """A 2-row dense layer over K = 70000 inputs (weights -127/127, zero point 0 of int8):
    ``255 * 128 * K >= 2^31``, so the kernel centres the input."""
    xq = QParams(0.05, 0, "int8")
    w = rng.choice(np.array([-127, 127], np.int8), size=(70000, 5))
    x = rng.choice(np.array([-128, 127], np.int8), size=(2, 70000))
    return Case(
        node=node("long", "dense", ("long_x",)),
        inputs={"long_x": (x, xq)},
        params={"weights": w, **_stage(5, 16)},
        out=OUT,
    )


def test_extreme_products_are_exact() -> None:
    if "avx2" not in host_target().features:
        pytest.skip("this machine lacks avx2")
    rng = np.random.default_rng(2026)
    cases = [
        _extreme_conv(rng, "s8_zp_min", QParams(0.05, -128, "int8"), 127),  # zp_u 0, u 255
        _extreme_conv(rng, "s8_zp_max", QParams(0.05, 127, "int8"), -128),  # zp_u 255, u 0
        _extreme_conv(rng, "u8_zp_max", QParams(0.05, 255, "uint8"), 0),
        _extreme_conv(rng, "u8_zp_min", QParams(0.05, 0, "uint8"), 255),
        _extreme_conv(rng, "s8_small", QParams(0.05, -128, "int8"), 127, (2, 2)),
    ]
    staged = []
    for case in cases:
        (x, xq), = case.inputs.values()  # fmt: skip
        spec = plan_conv(case.node, case.params, x.shape, xq, OUT)
        assert spec is not None and spec.cg == 9 and uncentred(spec)
        staged.append(stages_weights(plan_tiles(spec, AVX2).pb))
    assert staged == [True] * 4 + [False], "weights staged, and made in registers"
    assert_cases_exact(cases, AVX2_TARGET)


def test_a_layer_too_long_for_uncentred_sums_is_exact() -> None:
    if "avx2" not in host_target().features:
        pytest.skip("this machine lacks avx2")
    assert_cases_exact([_long_dense(np.random.default_rng(7))], AVX2_TARGET)


def _spec(cg: int, q: int = 64, kh: int = 1) -> ConvKernelSpec:
    return ConvKernelSpec(
        n=1, cg=cg, phases=1, q=q, ocp=64, ppad=64, oc=64, oh=8, ow=8, kh=kh, kw=kh,
        stride_h=1, stride_w=1, dil_h=1, dil_w=1, wq=8, zp_u=3, pre_shift=0, post_shift=0,
        ofm_zp=0, act_min=-128, act_max=127, lo=-128, hi=127, need_sat32=0, narrow=1,
        out_signed=1, out_bits=8,
    )  # fmt: skip


def test_uncentred_sums_up_to_the_int32_bound() -> None:
    """``255 * 128 * K < 2^31``: K = 65792 (cg 16448) is the last that fits."""
    assert uncentred(_spec(16448))
    assert not uncentred(_spec(16449))
    assert uncentred(_spec(1827, kh=3)) and not uncentred(_spec(1828, kh=3))


def test_avx2_runs_each_channel_tile_over_a_resident_input() -> None:
    """A small input (ResNet-50's 7x7 layers) is walked by every channel tile in turn
    (weight groups of one tile); a large one keeps the weight groups of staged bytes."""
    small = plan_tiles(_spec(128), AVX2)
    assert (small.wgroups, small.per) == (16, 1)
    big = _spec(128, q=RESIDENT_INPUT_BYTES // (128 * 4) + 1)
    assert plan_tiles(big, AVX2).per > 1
    assert plan_tiles(_spec(128), VNNI512).wgroups == 1


def _pointwise(rng: np.random.Generator, name: str, side: int) -> Case:
    """1x1 conv, 40 -> 9 channels on a ``side x side`` uint8 input."""
    xq = QParams(0.05, 7, "uint8")
    w = rng.integers(-128, 128, size=(9, 40, 1, 1)).astype(np.int8)
    x = rng.integers(0, 256, size=(1, 40, side, side)).astype(np.uint8)
    attrs = {"strides": [1, 1], "padding": [0, 0, 0, 0], "dilation": [1, 1], "groups": 1}
    return Case(
        node=node(name, "conv2d", (f"{name}_x",), **attrs),
        inputs={f"{name}_x": (x, xq)},
        params={"weights": w, **_stage(9, 9)},
        out=OUT,
    )


def test_avx2_skips_the_vectors_of_padding_only() -> None:
    """A 7x7 map (49 positions padded to 64) runs 7 vectors of 8 (the 8th holds only
    padding), a 14x14 one 25 (196 padded to 208), both exact with their last
    positions in a one-vector tail tile; 16-lane kernels keep ``ppad / 16`` vectors."""
    rng = np.random.default_rng(49)
    cases = [_pointwise(rng, "pw7", 7), _pointwise(rng, "pw14", 14)]
    plans = []
    for case in cases:
        (x, xq), = case.inputs.values()  # fmt: skip
        spec = plan_conv(case.node, case.params, x.shape, xq, OUT)
        assert spec is not None
        plan = plan_tiles(spec, AVX2)
        plans.append((spec.ppad, plan.pb, plan.vec_tail))
        wide = plan_tiles(spec, VNNI512)
        assert (wide.pb - 1) * wide.vecs + (wide.vec_tail or wide.vecs) == spec.ppad // 16
    assert plans == [(64, 4, 1), (208, 13, 1)]
    if "avx2" not in host_target().features:
        pytest.skip("this machine lacks avx2")
    assert_cases_exact(cases, AVX2_TARGET)


def _conv3x3(rng: np.random.Generator, name: str, cin: int, cout: int, groups: int) -> Case:
    """3x3 pad-1 conv on a 7x7 int8 input, ``groups`` groups, random weights."""
    xq = QParams(0.05, -5, "int8")
    w = rng.integers(-128, 128, size=(cout, cin // groups, 3, 3)).astype(np.int8)
    x = rng.integers(-128, 128, size=(1, cin, 7, 7)).astype(np.int8)
    attrs = {"strides": [1, 1], "padding": [1, 1, 1, 1], "dilation": [1, 1], "groups": groups}
    return Case(
        node=node(name, "conv2d", (f"{name}_x",), **attrs),
        inputs={f"{name}_x": (x, xq)},
        params={"weights": w, **_stage(cout, 10)},
        out=OUT,
    )


def test_avx2_stages_per_job_when_channel_tiles_walk_a_resident_input() -> None:
    """With a resident input and at least MIN_JOBS_STAGED_PER_JOB channel tiles, each job
    stages its own rows (one tile over every position tile): 64 and 2 x 32 output
    channels on 7x7 stage per job, 12 per call; all exact on AVX2."""
    rng = np.random.default_rng(77)
    cases = [
        _conv3x3(rng, "job1", 40, 64, 1),
        _conv3x3(rng, "job2", 80, 64, 2),
        _conv3x3(rng, "call", 40, 12, 1),
    ]
    per_job = []
    for case in cases:
        (x, xq), = case.inputs.values()  # fmt: skip
        planned = plan_grouped(case.node, case.params, x.shape, xq, OUT)
        spec = (
            plan_conv(case.node, case.params, x.shape, xq, OUT) if planned is None else planned[0]
        )
        assert spec is not None
        plan = plan_tiles(spec, AVX2)
        assert stages_weights(plan.pb) and (plan.wgroups, plan.per) == (plan.ob, 1)
        per_job.append(stages_per_job(True, spec.n * spec.groups * plan.ob))
    assert per_job == [True, True, False]
    if "avx2" not in host_target().features:
        pytest.skip("this machine lacks avx2")
    assert_cases_exact(cases, AVX2_TARGET)
