"""The int8 convolutions' input packing equals a numpy model of its documented layout, byte
for byte, on odd shapes, every stride/padding form, int8 and uint8 inputs, serial and
parallel sizes, compiled for AVX-512, AVX2 and baseline x86-64 (SSE2).

The packers are made once per process and compiled per target; the default suite runs a
representative subset on every target, the ``slow`` test every case."""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest
import tvm

from npuc.backend.cpu.schedules.int8_pack import SERIAL_BYTES, PackSpec, make_packer
from npuc.core.target import CpuTarget, host_target

#: (LLVM CPU name, features, host feature needed to run the code here).
TARGETS = {
    "avx512": ("icelake-server", ("avx", "avx2", "avx512bw", "avx512f", "sse4.2"), "avx512bw"),
    "avx2": ("haswell", ("avx", "avx2", "sse4.2"), "avx2"),
    "generic": ("x86-64", ("sse2",), "sse2"),
}


def reference(s: PackSpec, x: np.ndarray) -> np.ndarray:
    """``X[n, cg, ph, pos * 4 + g]`` of :mod:`npuc.backend.cpu.schedules.int8_pack`."""
    u = x.view(np.uint8) ^ np.uint8(128) if s.dtype == "int8" else x
    rows, cols = max(s.hq * s.sh, s.pt + s.h), max(s.wq * s.sw, s.pl + s.w)
    padded = np.full((s.n, s.cg * 4, rows, cols), s.zp_u, np.uint8)
    padded[:, : s.c, s.pt : s.pt + s.h, s.pl : s.pl + s.w] = u
    out = np.full((s.n, s.cg, s.phases, s.q * 4), s.zp_u, np.uint8)
    for a in range(s.sh):
        for b in range(s.sw):
            grid = padded[:, :, a :: s.sh, b :: s.sw][:, :, : s.hq, : s.wq]
            grid = grid.reshape(s.n, s.cg, 4, s.hq * s.wq).transpose(0, 1, 3, 2)
            out[:, :, a * s.sw + b, : s.hq * s.wq * 4] = grid.reshape(s.n, s.cg, -1)
    return out


def random_spec(rng: np.random.Generator, index: int) -> PackSpec:
    """Odd sizes; every third case a 1x1-style stride-1 layout without side padding."""
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 14))
    h, w = int(rng.integers(1, 30)), int(rng.integers(1, 150))
    sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
    pt, pl, pb, pr = (int(v) for v in rng.integers(0, 3, size=4))
    if index % 3 == 0:
        sh = sw = 1
        pl = pr = 0
    hq, wq = -(-(h + pt + pb) // sh), -(-(w + pl + pr) // sw)
    return PackSpec(
        n=n, c=c, h=h, w=w, dtype=("int8", "uint8")[index % 2], pt=pt, pl=pl, sh=sh, sw=sw,
        cg=-(-c // 4), hq=hq, wq=wq, q=hq * wq + int(rng.integers(0, 40)),
        zp_u=int(rng.integers(0, 256)),
    )  # fmt: skip


def model_specs() -> list[PackSpec]:
    """MobileNet-like layers: the 3-channel stride-2 stem, 1x1 maps 56x56 and 7x7 (tile
    padding beyond the grid), a 1x1 with many channel groups (parallel)."""
    return [
        PackSpec(n=1, c=3, h=37, w=37, dtype="int8", pt=1, pl=1, sh=2, sw=2, cg=1, hq=19,
                 wq=19, q=19 * 19 + 20, zp_u=128),
        PackSpec(n=1, c=24, h=56, w=56, dtype="uint8", pt=0, pl=0, sh=1, sw=1, cg=6, hq=56,
                 wq=56, q=56 * 56, zp_u=3),
        PackSpec(n=2, c=162, h=7, w=7, dtype="int8", pt=0, pl=0, sh=1, sw=1, cg=41, hq=7,
                 wq=7, q=64, zp_u=120),
    ]  # fmt: skip


def extra_group_specs() -> list[PackSpec]:
    """More channel groups than the input fills, as the grouped kernel asks for (``c`` a
    multiple of 4 and not): the groups beyond ``c`` hold ``zp_u``."""
    return [
        PackSpec(n=1, c=8, h=5, w=6, dtype="int8", pt=1, pl=1, sh=1, sw=1, cg=3, hq=7, wq=8,
                 q=60, zp_u=77),
        PackSpec(n=2, c=4, h=3, w=3, dtype="uint8", pt=0, pl=0, sh=1, sw=1, cg=2, hq=3, wq=3,
                 q=9, zp_u=5),
        PackSpec(n=1, c=12, h=7, w=9, dtype="int8", pt=1, pl=1, sh=2, sw=2, cg=4, hq=5, wq=6,
                 q=30, zp_u=200),
        PackSpec(n=1, c=6, h=4, w=20, dtype="int8", pt=0, pl=0, sh=1, sw=1, cg=3, hq=4, wq=20,
                 q=80, zp_u=1),
    ]  # fmt: skip


def _target(kind: str) -> CpuTarget:
    cpu, features, needs = TARGETS[kind]
    if needs not in host_target().features:
        pytest.skip(f"this machine lacks {needs}, needed to run the {kind} code")
    return CpuTarget(cpu_name=cpu, features=tuple(sorted(features)), num_cores=2)


#: Random specs the default suite keeps (both input types, the 1x1-style layout every
#: third, strides 1-3 and side padding), with the stride-2 stem and the parallel
#: 162-channel map of :func:`model_specs` and two of :func:`extra_group_specs`.
SMALL_RANDOM, SMALL_MODEL, SMALL_GROUPS = range(6), (0, 2), (0, 2)


@functools.cache
def _packers(full: bool) -> tuple[tuple[PackSpec, ...], tvm.IRModule]:
    """The specs (all, or the default subset) and their packers, made once per process (the
    TVMScript parsing costs as much as compiling) and compiled per target."""
    rng = np.random.default_rng(41)
    random, model, groups = (
        [random_spec(rng, i) for i in range(24)],
        model_specs(),
        extra_group_specs(),
    )
    if not full:
        random = [random[i] for i in SMALL_RANDOM]
        model, groups = [model[i] for i in SMALL_MODEL], [groups[i] for i in SMALL_GROUPS]
    specs = (*random, *model, *groups)
    assert {s.flat for s in specs} == {False, True}, "cases cover the one-run and row forms"
    assert {s.packed_bytes >= SERIAL_BYTES for s in specs} == {False, True}, "serial and parallel"
    assert any(s.cg * 4 > s.c + 3 for s in specs), "channel groups beyond the input"
    funcs = {
        f"pack{i}": make_packer(s).with_attr("global_symbol", f"pack{i}")
        for i, s in enumerate(specs)
    }
    return specs, tvm.IRModule(funcs)


def _check(full: bool, kind: str) -> None:
    target = _target(kind)
    specs, mod = _packers(full)
    lib = tvm.compile(mod, target=target.to_tvm())
    rng = np.random.default_rng(42)
    for i, s in enumerate(specs):
        info = np.iinfo(np.dtype(s.dtype))
        x = rng.integers(int(info.min), int(info.max) + 1, (s.n, s.c, s.h, s.w)).astype(s.dtype)
        got = tvm.runtime.tensor(np.zeros((s.n, s.cg, s.phases, s.q * 4), np.uint8))
        lib[f"pack{i}"](tvm.runtime.tensor(x), got)
        np.testing.assert_array_equal(got.numpy(), reference(s, x), strict=True, err_msg=str(s))


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_packing_equals_the_layout_model(kind: str) -> None:
    _check(full=False, kind=kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_packing_equals_the_layout_model_on_every_case(kind: str) -> None:
    _check(full=True, kind=kind)


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_ordered_packing_reads_channels_in_order(kind: str) -> None:
    """``ordered``: slot ``k`` holds input channel ``order[k]``, its bytes (padding too) xor
    ``xor[k]`` (the model of the unordered packing on ``x[:, order]``, then the slots'
    masks; none beyond ``c``), on a strided padded map, a one-run 1x1 map with a partial
    last group and a parallel one."""
    target = _target(kind)
    plain = (
        model_specs()[0],
        extra_group_specs()[3],
        model_specs()[2],
        random_spec(np.random.default_rng(5), 1),
    )
    specs = [replace(s, ordered=True) for s in plain]
    assert any(s.packed_bytes >= SERIAL_BYTES for s in specs)
    rng = np.random.default_rng(43)
    for s in specs:
        lib = tvm.compile(
            tvm.IRModule({"pack": make_packer(s).with_attr("global_symbol", "pack")}),
            target=target.to_tvm(),
        )
        info = np.iinfo(np.dtype(s.dtype))
        x = rng.integers(int(info.min), int(info.max) + 1, (s.n, s.c, s.h, s.w)).astype(s.dtype)
        order = rng.permutation(s.c).astype(np.int32)
        assert s.c < 3 or (order != np.arange(s.c)).any()
        xor = np.where(rng.random(s.c) < 0.5, 255, 0).astype(np.uint8)
        xor[0] = 255
        got = tvm.runtime.tensor(np.zeros((s.n, s.cg, s.phases, s.q * 4), np.uint8))
        lib["pack"](*(tvm.runtime.tensor(a) for a in (x, order, xor)), got)
        want = reference(s, np.ascontiguousarray(x[:, order]))
        want ^= _slot_masks(s, xor)
        np.testing.assert_array_equal(got.numpy(), want, strict=True, err_msg=str(s))


def _slot_masks(s: PackSpec, xor: np.ndarray) -> np.ndarray:
    """``(1, cg, 1, q * 4)``: each byte's slot mask (``xor`` of its channel, 0 beyond ``c``)."""
    slots = np.zeros(s.cg * 4, np.uint8)
    slots[: s.c] = xor
    return np.tile(slots.reshape(s.cg, 1, 4), (1, s.q, 1)).reshape(1, s.cg, 1, s.q * 4)
