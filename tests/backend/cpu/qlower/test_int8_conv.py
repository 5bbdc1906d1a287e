"""The int8 dot-product convolution kernels equal the integer executor bit for bit, on every
kernel variant (AVX-512 VNNI, AVX-VNNI, AVX2 ``vpmaddwd``, generic).

Each variant is selected through the :class:`~npuc.core.target.CpuTarget` the
library is compiled for (never the build machine); targets with fewer
features than this machine run here too, and a variant this machine cannot
run is skipped. Cases are seeded and many per compilation, lowered once and
compiled per variant; the default suite runs a representative subset on every
variant, the ``slow`` sweep all of them. They cover input
channels and output channels that are not multiples of the kernel's blocks,
output grids that are not whole tiles, strides 1-3, dilation, asymmetric
padding, int8/uint8 inputs with any zero point, every output type, and
output stages in both the int32 (``narrow``) and int64 forms, with and
without the 32-bit saturation.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tvm import relax, tirx

from npuc.backend.cpu.qlower.int8_conv import emit_int8_dense, plan_conv
from npuc.backend.cpu.schedules.int8_conv import dot_kind
from npuc.backend.cpu.schedules.int8_kernel import (
    SPEC_ATTR,
    ConvKernelSpec,
    clamp_bounds,
    make_kernel,
)
from npuc.backend.cpu.schedules.int8_matvec import BLOCK, make_matvec
from npuc.core.target import CpuTarget, host_target

from .harness import (
    DTYPES,
    Case,
    LoweredCases,
    assert_cases_exact,
    assert_lowered_exact,
    ints,
    lower_cases,
    node,
    qparams,
)
from .test_conv import _out_stage

AVX2_FEATURES = ("avx", "avx2", "f16c", "fma", "sse4.1", "sse4.2")

#: (expected kernel, LLVM CPU name, features, host feature it needs to run here). The
#: AVX2 kernel is compiled for Haswell, not Zen 3: LLVM's znver3 code may use AMD-only
#: SSE4a instructions (``insertq`` seen in the per-lane stores), which fault on Intel.
AVX512_VNNI = (*AVX2_FEATURES, "avx512bw", "avx512f", "avx512vnni")
TARGETS = {
    "vnni512": ("icelake-server", AVX512_VNNI, "avx512vnni"),
    "avxvnni": ("alderlake", (*AVX2_FEATURES, "avxvnni"), "avxvnni"),
    "avx2": ("haswell", AVX2_FEATURES, "avx2"),
    "generic": ("x86-64", ("sse2",), "sse2"),
}  # fmt: skip


def _target(kind: str) -> CpuTarget:
    cpu, features, needs = TARGETS[kind]
    if needs not in host_target().features:
        pytest.skip(f"this machine lacks {needs}, needed to run the {kind} kernels")
    return CpuTarget(cpu_name=cpu, features=tuple(sorted(features)), num_cores=2)


def int8_conv_case(rng: np.random.Generator, index: int) -> Case:
    """A random conv2d layer the int8 kernels take (groups 1, 8-bit input)."""
    cin, cout = int(rng.integers(1, 11)), int(rng.integers(1, 11))
    kh, kw = (int(k) for k in rng.choice([1, 2, 3, 5], size=2))
    dil = tuple(int(d) for d in rng.integers(1, 3, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
    pads = tuple(int(p) for p in rng.integers(0, 3, size=4))
    h = max(1, dil[0] * (kh - 1) + 1 - pads[0] - pads[2]) + int(rng.integers(0, 20))
    w = max(1, dil[1] * (kw - 1) + 1 - pads[1] - pads[3]) + int(rng.integers(0, 40))
    xq = qparams(rng, ("int8", "uint8")[index % 2])
    out = qparams(rng, str(rng.choice(DTYPES)))
    name = f"conv{index}"
    return Case(
        node=node(name, "conv2d", (f"{name}_x",), strides=list(stride), padding=list(pads),
                  dilation=list(dil), groups=1),
        inputs={f"{name}_x": (ints(rng, xq.dtype, (1, cin, h, w)), xq)},
        params={"weights": ints(rng, "int8", (cout, cin, kh, kw)),
                **_out_stage(rng, cout, xq, out, taps=cin * kh * kw, extreme=index % 3 == 0)},
        out=out,
    )  # fmt: skip


def int8_dense_case(rng: np.random.Generator, index: int) -> Case:
    """A random fully connected layer over a 2-D or 3-D 8-bit input (odd ``index``: one row,
    the matvec kernel; its outputs span several weight blocks when ``index % 4 == 1``)."""
    k = int(rng.integers(1, 70))
    n = int(rng.integers(65, 150)) if index % 4 == 1 else int(rng.integers(1, 21))
    lead = (1,) if index % 2 else (int(rng.integers(1, 3)), int(rng.integers(1, 20)))
    xq = qparams(rng, ("int8", "uint8")[index // 2 % 2])
    out = qparams(rng, str(rng.choice(DTYPES)))
    name = f"dense{index}"
    return Case(
        node=node(name, "dense", (f"{name}_x",)),
        inputs={f"{name}_x": (ints(rng, xq.dtype, (*lead, k)), xq)},
        params={"weights": ints(rng, "int8", (k, n)),
                **_out_stage(rng, n, xq, out, taps=k, extreme=index % 3 == 0)},
        out=out,
    )  # fmt: skip


def _specs(cases: list[Case]) -> list[ConvKernelSpec]:
    """The kernel spec of every case; each case must be one the int8 kernels take."""
    specs = []
    for case in cases:
        (x, xq), = case.inputs.values()  # fmt: skip
        assert case.out is not None
        spec = plan_conv(case.node, case.params, x.shape, xq, case.out)
        assert spec is not None, f"{case.node.name} does not take the int8 kernel"
        specs.append(spec)
    return specs


#: Every kernel variant: the default suite runs a representative subset on each
#: (:data:`SMALL_CONV`, :data:`SMALL_DENSE`), the ``slow`` sweep runs every case.
KINDS = ("vnni512", "avxvnni", "avx2", "generic")

#: Sweep indices the default suite keeps: int32 and int64 stages, with and without the
#: 32-bit saturation, multiply results proven in int32 or not, one and several stride
#: phases, int8 and uint8 inputs, every output type, channels and widths off the kernel's
#: blocks.
SMALL_CONV = (0, 1, 10, 11, 12)

#: A 3-D (several rows) dense layer and two one-row ones (the matvec kernel; one with its
#: outputs over several weight blocks).
SMALL_DENSE = (0, 1, 3)


@functools.cache
def _variant_cases(full: bool) -> LoweredCases:
    """The seeded sweep (18 conv, 8 dense layers), or its :data:`SMALL_CONV` and
    :data:`SMALL_DENSE` subset, lowered once per process and compiled per kernel variant."""
    rng = np.random.default_rng(14)
    cases = [int8_conv_case(rng, i) for i in range(18)]
    dense = [int8_dense_case(rng, i) for i in range(8)]
    if not full:
        cases, dense = [cases[i] for i in SMALL_CONV], [dense[i] for i in SMALL_DENSE]
    specs = _specs(cases)
    assert {s.narrow for s in specs} == {0, 1}, "cases cover the int32 and int64 stages"
    assert {s.need_sat32 for s in specs} == {0, 1}, "cases cover the 32-bit saturation"
    assert {s.phases > 1 for s in specs} == {False, True}, "cases cover strided phases"
    assert {s.fits32 for s in specs} == {0, 1}, "int32 and int64 results of the multiply"
    assert {len(c.inputs[f"{c.node.name}_x"][0].shape) for c in dense} == {2, 3}, "matvec too"
    return lower_cases(cases + dense)


def assert_exact_on_variant(kind: str, lowered: LoweredCases) -> None:
    """Compile ``lowered`` for the ``kind`` kernel variant (checked) and compare bit for bit."""
    target = _target(kind)
    assert dot_kind(target).name == kind
    assert_lowered_exact(lowered, target)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kernel_variant_is_bit_exact(kind: str) -> None:
    assert_exact_on_variant(kind, _variant_cases(full=False))


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_kernel_variant_is_bit_exact_on_the_whole_sweep(kind: str) -> None:
    assert_exact_on_variant(kind, _variant_cases(full=True))


def _sized_cases(rng: np.random.Generator) -> list[Case]:
    """A 3x3 conv 256 -> 72 channels on 30x30 and one-row dense layers 4096 -> 1000 and
    25090 -> 70: many channel groups, position and channel tiles, weight blocks."""
    cases = []
    for index, (cin, cout, size) in enumerate(((256, 72, 30), (4096, 1000, 0), (25090, 70, 0))):
        xq = qparams(rng, ("int8", "uint8")[index % 2])
        out = qparams(rng, "int8")
        name = f"sized{index}"
        shape, wshape = (
            ((1, cin, size, size), (cout, cin, 3, 3)) if size else ((1, cin), (cin, cout))
        )
        attrs = {"strides": [1, 1], "padding": [1, 1, 1, 1], "dilation": [1, 1], "groups": 1}
        taps = cin * 9 if size else cin
        cases.append(Case(
            node=node(name, "conv2d", (f"{name}_x",), **attrs) if size
            else node(name, "dense", (f"{name}_x",)),
            inputs={f"{name}_x": (ints(rng, xq.dtype, shape), xq)},
            params={"weights": ints(rng, "int8", wshape),
                    **_out_stage(rng, cout, xq, out, taps=taps, extreme=False)},
            out=out,
        ))  # fmt: skip
    return cases


@pytest.mark.slow
def test_model_sized_layers_are_bit_exact() -> None:
    assert_cases_exact(_sized_cases(np.random.default_rng(19)), host_target())


def _dense_kernel_specs(case: Case) -> list[ConvKernelSpec]:
    """The int8 kernel specs ``emit_int8_dense`` emits for ``case`` (a one-layer dense case)."""
    (x, xq), = case.inputs.values()  # fmt: skip
    assert case.out is not None
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType(x.shape, xq.dtype))
    with bb.function("main", [xv]):
        y = emit_int8_dense(bb, case.node, case.params, xv, xq, case.out)
        assert y is not None
        bb.emit_func_output(y)
    return [
        ConvKernelSpec.from_attr(f.attrs[SPEC_ATTR])
        for f in bb.get().functions.values()
        if isinstance(f, tirx.PrimFunc) and f.attrs is not None and SPEC_ATTR in f.attrs
    ]


def test_one_row_dense_runs_the_matvec_kernel() -> None:
    """A dense layer over one row gets the matvec kernel; more rows get the conv kernel."""
    rng = np.random.default_rng(5)
    for index, want in ((1, [1]), (2, [0])):
        kernels = _dense_kernel_specs(int8_dense_case(rng, index))
        assert [k.matvec for k in kernels] == want
        if want == [1]:
            assert kernels[0].ocp % BLOCK == 0
            with pytest.raises(ValueError, match="matvec"):
                make_kernel(kernels[0], dot_kind(host_target()))


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_matvec_kernel_builds_for_every_dot_kind(kind: str) -> None:
    """Found by the breaker: on AVX2 without VNNI the matvec kernel failed to build (a
    16-index Shuffle of a 4-lane vector), so every one-row int8 dense layer fell back to the
    generic path (still exact, so the bit-exact cases above did not see it)."""
    cpu, features, _ = TARGETS[kind]
    target = CpuTarget(cpu_name=cpu, features=tuple(sorted(features)), num_cores=2)
    (spec,) = _dense_kernel_specs(int8_dense_case(np.random.default_rng(5), 1))
    assert spec.matvec
    assert isinstance(make_matvec(spec, dot_kind(target)), tirx.PrimFunc)


def test_host_target_picks_vnni_where_present() -> None:
    host = host_target()
    if host.has_avx512_vnni:
        assert dot_kind(host).name == "vnni512"
    zen3 = CpuTarget(cpu_name="znver3", features=AVX2_FEATURES, num_cores=2)
    assert dot_kind(zen3).name == "avx2"


def test_layers_outside_the_kernels_keep_the_generic_path() -> None:
    """int16 input, grouped weights and accumulators beyond int32 get no int8 kernel."""
    rng = np.random.default_rng(3)
    base = int8_conv_case(rng, 1)
    (x, xq), = base.inputs.values()  # fmt: skip
    assert base.out is not None
    assert plan_conv(base.node, base.params, x.shape, xq, base.out) is not None
    wide = qparams(rng, "int16")
    assert plan_conv(base.node, base.params, x.shape, wide, base.out) is None
    grouped = replace(base.node, attrs={**base.node.attrs, "groups": 2})
    assert plan_conv(grouped, base.params, x.shape, xq, base.out) is None
    huge = {**base.params, "weights": np.full((2, 16384, 3, 3), -128, np.int8)}
    assert plan_conv(base.node, huge, (1, 16384, 8, 8), xq, base.out) is None


@given(
    v=st.integers(-(2**47), 2**47),
    a=st.integers(-(2**16), 2**16),
    b=st.integers(-(2**16), 2**16),
    dtype=st.sampled_from(["int8", "uint8", "int16"]),
)
def test_one_clamp_equals_the_reference_two(v: int, a: int, b: int, dtype: str) -> None:
    info = np.iinfo(np.dtype(dtype))
    spec = ConvKernelSpec(
        n=1, cg=1, phases=1, q=48, ocp=4, ppad=48, oc=1, oh=1, ow=1, kh=1, kw=1, stride_h=1,
        stride_w=1, dil_h=1, dil_w=1, wq=1, zp_u=0, pre_shift=0, post_shift=0, ofm_zp=0,
        act_min=a, act_max=b, lo=int(info.min), hi=int(info.max), need_sat32=0, narrow=1,
        out_signed=int(dtype != "uint8"), out_bits=info.bits,
    )  # fmt: skip
    want = int(np.clip(np.clip(v, a, b), info.min, info.max))
    got = v
    bounds = clamp_bounds(spec)
    for k in range(0, len(bounds), 2):
        got = min(max(got, bounds[k]), bounds[k + 1])
    assert got == want
