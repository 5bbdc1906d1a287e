"""``vpmaddubsw`` on safe weight pairs (:mod:`npuc.backend.cpu.schedules.int8_ubsw`) is exact.

The split is checked on every pair at the boundary (``|a| + |b| = 128`` safe, 129
unsafe, same-sign extremes, opposite signs, zeros); whole kernels compiled for AVX2 equal
the integer executor bit for bit with ``u`` at 0 and 255, boundary weights,
real-like weights (per-channel scaled to 127), remainder lists of different lengths
per channel (one longer than a channel's share of its tile's pool), tiles that decline
(all weights 127) next to tiles that do not, stride 2, a grouped convolution, one and
two threads. A kernel that treats every group as safe (``_mask`` and the numpy
``unsafe_pair`` made false) gives different integers: the tests can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from npuc.backend.cpu.qlower import int8_conv
from npuc.backend.cpu.qlower.int8_conv import pack_constants, plan_conv
from npuc.backend.cpu.schedules import int8_ubsw
from npuc.backend.cpu.schedules.int8_ubsw import capacity, split_groups, unsafe_pair
from npuc.core.target import CpuTarget, host_target
from npuc.midend.quantize.qparams import QParams

from ..qlower.harness import Case, assert_cases_exact, node, run_cases
from .test_int8_avx2 import AVX2_TARGET, OUT, _stage

#: (a, b, unsafe): the pairs at the bound and the extremes.
PAIRS = [
    (64, 64, False), (64, 65, True), (1, 127, False), (2, 127, True), (-1, -127, False),
    (-1, -128, True), (0, -128, False), (-128, 0, False), (127, 127, True),
    (-128, -128, True), (127, -128, False), (-128, 127, False), (0, 0, False),
    (-64, -64, False), (-64, -65, True), (100, -100, False), (65, 64, True),
]  # fmt: skip


def _groups(b: np.ndarray) -> np.ndarray:
    """int32 groups of int8 bytes ``b`` (..., 4), channel ``4c + g`` in byte ``g``."""
    return np.ascontiguousarray(b.astype(np.int8)).view("<i4")[..., 0]


def test_pairs_at_the_bound() -> None:
    a = np.array([p[0] for p in PAIRS], np.int64)
    b = np.array([p[1] for p in PAIRS], np.int64)
    assert unsafe_pair(a, b).tolist() == [p[2] for p in PAIRS]
    # the bound itself: every safe pair's sum fits int16 at u = 255, every unsafe one can not
    worst = 255 * np.maximum(np.abs(a + b), np.maximum(np.abs(a), np.abs(b)))
    assert ((worst > 32767) == unsafe_pair(a, b)).all()


def test_split_is_exact_and_safe() -> None:
    rng = np.random.default_rng(3)
    b = rng.integers(-128, 128, size=(500, 4))
    b[: len(PAIRS) ** 2 // 17] = 0
    pairs = np.array([p[:2] for p in PAIRS])
    quads = np.concatenate(
        [pairs[:, None].repeat(len(PAIRS), 1), pairs[None].repeat(len(PAIRS), 0)], -1
    )
    b = np.concatenate([b, quads.reshape(-1, 4)])
    w = _groups(b[:, None]).reshape(-1)
    main, rem = split_groups(w)
    mb = main[:, None].view(np.int8).astype(np.int64)
    rb = rem[:, None].view(np.int8).astype(np.int64)
    np.testing.assert_array_equal(mb + rb, b, strict=True)
    for part in (mb, rb):
        for k in range(2):
            assert not unsafe_pair(part[:, 2 * k], part[:, 2 * k + 1]).any()
    unsafe = unsafe_pair(b[:, 0], b[:, 1]) | unsafe_pair(b[:, 2], b[:, 3])
    np.testing.assert_array_equal(rem != 0, unsafe, strict=True)


def _conv(
    name: str, w: np.ndarray, x: np.ndarray, xq: QParams, stride: int = 1, groups: int = 1
) -> Case:
    k = w.shape[-1]
    attrs = {
        "strides": [stride, stride], "padding": [k // 2] * 4, "dilation": [1, 1],
        "groups": groups,
    }  # fmt: skip
    return Case(
        node=node(name, "conv2d", (f"{name}_x",), **attrs),
        inputs={f"{name}_x": (x, xq)},
        params={"weights": w, **_stage(w.shape[0], 9)},
        out=OUT,
    )


def _boundary_weights(rng: np.random.Generator, cout: int, cin: int, k: int) -> np.ndarray:
    """Weights from :data:`PAIRS` (pairs along the input channels), 1 in 10 pairs unsafe
    at most, then per channel ``c`` about ``c`` extra unsafe pairs (lists of different
    lengths)."""
    safe = np.array([p[:2] for p in PAIRS if not p[2]])
    bad = np.array([p[:2] for p in PAIRS if p[2]])
    w = np.zeros((cout, cin, k, k), np.int64)
    for o in range(cout):
        for i in range(0, cin - 1, 2):
            for t in range(k * k):
                table = bad if rng.random() < 0.03 * (o % 4) else safe
                w[o, i : i + 2].reshape(2, -1)[:, t] = table[rng.integers(len(table))]
    return w.astype(np.int8)


def _extreme_input(rng: np.random.Generator, xq: QParams, shape: tuple[int, ...]) -> np.ndarray:
    """Stored values at the ends of the type (``u`` 0 and 255), a few in between."""
    info = np.iinfo(np.dtype(xq.dtype))
    x = rng.choice(np.array([info.min, info.max], xq.dtype), size=shape)
    x[..., ::5] = rng.integers(int(info.min), int(info.max) + 1, size=x[..., ::5].shape)
    return x


def _real_like(rng: np.random.Generator, cout: int, cin: int, k: int) -> np.ndarray:
    w = rng.laplace(0, 1, size=(cout, cin, k, k))
    scale = np.abs(w).reshape(cout, -1).max(axis=1).reshape(cout, 1, 1, 1) / 127
    return np.round(w / scale).astype(np.int8)


def _cases(rng: np.random.Generator) -> list[Case]:
    s8 = QParams(0.05, -128, "int8")  # zp_u 0: u = x + 128 in [0, 255]
    u8 = QParams(0.05, 0, "uint8")
    mixed = _boundary_weights(rng, 16, 40, 3)
    mixed[4:8] = 127  # this tile declines (every group unsafe)
    mixed[9, :, 0, :] = 127  # 30 groups: over one channel's share, within its tile's pool
    mixed[12:16] = _real_like(rng, 4, 40, 3)
    grouped = _real_like(rng, 16, 20, 3)
    ext = _extreme_input
    return [
        _conv("bnd3", _boundary_weights(rng, 12, 36, 3), ext(rng, s8, (1, 36, 9, 10)), s8),
        _conv("bnd1", _boundary_weights(rng, 20, 64, 1), ext(rng, u8, (1, 64, 7, 7)), u8),
        _conv("mixed", mixed, ext(rng, s8, (1, 40, 12, 12)), s8),
        _conv("real_s2", _real_like(rng, 24, 24, 3), ext(rng, u8, (1, 24, 15, 16)), u8, 2),
        _conv("all127", np.full((8, 16, 3, 3), 127, np.int8), ext(rng, s8, (1, 16, 6, 6)), s8),
        _conv("grouped", grouped, ext(rng, s8, (1, 40, 8, 8)), s8, groups=2),
    ]


def test_layers_take_both_forms() -> None:
    """The cases above hold tiles in both forms and lists of several lengths."""
    rng = np.random.default_rng(11)
    counts = {}
    for case in _cases(rng):
        (x, xq), = case.inputs.values()  # fmt: skip
        if case.node.attrs["groups"] != 1:
            continue
        spec = plan_conv(case.node, case.params, x.shape, xq, OUT)
        assert spec is not None and int8_ubsw.applies(spec)
        w = pack_constants(spec, case.params)[0]
        _, rem = split_groups(w)
        per_row = (rem != 0).reshape(spec.ocp, -1).sum(axis=1)
        counts[case.node.name] = per_row
        if case.node.name == "mixed":
            tiles = per_row.reshape(-1, 4).sum(axis=1) <= 4 * capacity(spec)
            assert tiles.tolist() == [True, False, True, True]
            assert per_row[9] > capacity(spec), "a list longer than one channel's share"
    assert len(set(counts["bnd3"].tolist())) > 3, "lists of different lengths"
    pool = 4 * capacity(plan_conv(*_plan_args(_cases(rng)[4])))
    assert (counts["all127"].reshape(-1, 4).sum(axis=1) > pool).all()


def _plan_args(case: Case) -> tuple:
    (x, xq), = case.inputs.values()  # fmt: skip
    return case.node, case.params, x.shape, xq, OUT


def _avx2(cores: int) -> CpuTarget:
    return CpuTarget(cpu_name=AVX2_TARGET.cpu_name, features=AVX2_TARGET.features, num_cores=cores)


@pytest.mark.parametrize(("cores", "ordered"), [(1, False), (2, False), (2, True)])
def test_ubsw_kernels_are_exact(cores: int, ordered: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the model's channel order (the cases' tile forms and list lengths as built) and in
    the lowering's pair order (``qlower/pair_order.py``: most lists empty, complemented
    slots)."""
    if "avx2" not in host_target().features:
        pytest.skip("this machine lacks avx2")
    if not ordered:
        monkeypatch.setattr(int8_conv, "pair_order", lambda w: None)
    assert_cases_exact(_cases(np.random.default_rng(11)), _avx2(cores))


def test_treating_unsafe_groups_as_safe_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutant: every group in the main weights (``vpmaddubsw`` saturates on the unsafe
    pairs) gives other integers on the boundary layer."""
    if "avx2" not in host_target().features:
        pytest.skip("this machine lacks avx2")
    # both forms of the split: the TIR block's mask and the numpy twin the build folds with
    monkeypatch.setattr(int8_ubsw, "_mask", lambda w: 0 * w)
    monkeypatch.setattr(int8_ubsw, "unsafe_pair", lambda a, b: np.zeros(np.shape(a), bool))
    monkeypatch.setattr(int8_conv, "pair_order", lambda w: None)  # the lists as built
    case = _cases(np.random.default_rng(11))[0]
    want, got = run_cases([case], AVX2_TARGET)[case.node.name]
    assert not np.array_equal(got.astype(np.int64), want)
