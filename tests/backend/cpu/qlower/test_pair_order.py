"""The packed input-channel order and signs (``qlower/pair_order.py``): its cost is the AVX2
kernels' remainder count, it cuts that count, and a layer lowered with it (complemented
slots included) stores the integer executor's integers bit for bit on the host's kernels,
AVX2 and generic x86-64."""

from __future__ import annotations

import numpy as np
import pytest

from npuc.backend.cpu.qlower import pair_order as po
from npuc.backend.cpu.qlower.int8_conv import pack_constants, plan_conv
from npuc.backend.cpu.schedules.int8_ubsw import split_groups, unsafe_pair
from npuc.core.target import CpuTarget, host_target
from npuc.midend.quantize.qparams import QParams

from ..schedules.test_int8_avx2 import AVX2_TARGET, OUT, _stage
from .harness import Case, assert_cases_exact, node

GENERIC = CpuTarget(cpu_name="x86-64", features=("sse2",), num_cores=2)


def _real_like(rng: np.random.Generator, cout: int, cin: int, k: int) -> np.ndarray:
    """Per-output-channel symmetric int8 weights of a Laplace draw (each row reaches 127)."""
    w = rng.laplace(0, 1, size=(cout, cin, k, k))
    scale = np.abs(w).reshape(cout, -1).max(axis=1).reshape(cout, 1, 1, 1) / 127
    return np.round(w / scale).astype(np.int8)


def _conv(name: str, w: np.ndarray, x: np.ndarray, xq: QParams, stride: int) -> Case:
    k = w.shape[-1]
    attrs = {"strides": [stride, stride], "padding": [k // 2, k // 2, k // 2 + 1, k // 2],
             "dilation": [1, 1], "groups": 1}  # fmt: skip
    return Case(
        node=node(name, "conv2d", (f"{name}_x",), **attrs),
        inputs={f"{name}_x": (x, xq)},
        params={"weights": w, **_stage(w.shape[0], 9)},
        out=OUT,
    )


def test_cost_is_the_kernels_unsafe_pair() -> None:
    """``|a + b| > 128`` is :func:`int8_ubsw.unsafe_pair` on every pair of int8 weights."""
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128))
    np.testing.assert_array_equal(np.abs(a + b) > 128, unsafe_pair(a, b), strict=True)


def test_sparse_pair_costs_equal_the_dense_count() -> None:
    """:func:`_pair_costs` (rows over their large weights only) counts every column where
    ``|w_i + w_j| > 128`` and where ``|w_i - w_j| > 128``, as a dense count does."""
    rng = np.random.default_rng(2)
    columns = rng.integers(-128, 128, (37, 300)).astype(np.int16)
    columns[3] = 0  # a channel with no large weight
    same, opposite = po._pair_costs(columns)
    for got, sign in ((same, 1), (opposite, -1)):
        want = (np.abs(columns[:, None, :] + sign * columns[None]) > 128).sum(axis=2)
        off = ~np.eye(37, dtype=bool)
        np.testing.assert_array_equal(got[off], want[off], strict=True)


@pytest.mark.parametrize("cin", [5, 24, 37])
def test_unsafe_groups_are_the_remainder_groups_of_the_packed_weights(cin: int) -> None:
    """The count the order minimises is the AVX2 split's remainder groups of the weights
    :func:`pack_constants` packs in that order (and the order is a permutation)."""
    rng = np.random.default_rng(cin)
    w = _real_like(rng, 12, cin, 3)
    xq = QParams(0.05, 0, "uint8")
    case = _conv("c", w, np.zeros((1, cin, 6, 6), np.uint8), xq, 1)
    spec = plan_conv(case.node, case.params, (1, cin, 6, 6), xq, OUT)
    assert spec is not None
    order = po.pair_order(w)
    assert order is not None and order.flip.any()
    np.testing.assert_array_equal(np.sort(order.order), np.arange(cin), strict=True)
    shuffled = po.PairOrder(order=rng.permutation(cin), flip=rng.random(cin) < 0.5)
    for o in (None, order, shuffled):
        _, rem = split_groups(pack_constants(spec, case.params, o)[0])
        assert po.unsafe_groups(w, o) == int((rem[: w.shape[0]] != 0).sum())
    assert po.unsafe_groups(w, order) <= (1 - po.MIN_GAIN) * po.unsafe_groups(w)


def test_order_pairs_opposite_signs() -> None:
    """Four channels of +100 then four of -100: the model's order pairs equal signs (every
    group unsafe), a good order none (pairs of a + and a -, or a complemented slot)."""
    w = np.zeros((16, 8, 1, 1), np.int8)
    w[:, :4], w[:, 4:] = 100, -100
    order = po.pair_order(w)
    assert po.unsafe_groups(w) == 32
    assert order is not None and po.unsafe_groups(w, order) == 0


def test_complements_one_slot_of_equal_sign_pairs() -> None:
    """Every weight 127 (onnx's light graphs): every pair needs one complemented slot; a
    channel holding -128 is never complemented (its negation is not an int8)."""
    w = np.full((8, 16, 3, 3), 127, np.int8)
    order = po.pair_order(w)
    assert po.unsafe_groups(w) == 8 * 4 * 9
    assert order is not None and po.unsafe_groups(w, order) == 0
    assert order.flip.sum() == 8 and not (order.flip[0::2] & order.flip[1::2]).any()
    w[:, :8], w[:, 8:] = -128, -100  # a -128 channel must pair with a complemented -100
    order = po.pair_order(w)
    assert order is not None and po.unsafe_groups(w, order) == 0
    assert (order.order[order.flip] >= 8).all() and order.flip.sum() == 8


def test_keeps_the_model_order_when_no_order_helps() -> None:
    rng = np.random.default_rng(3)
    assert po.pair_order(rng.integers(-30, 31, (8, 16, 3, 3)).astype(np.int8)) is None
    w = np.full((4, 2, 1, 1), 100, np.int8)
    w[1::2, 1] = -100  # one pair: a complement makes the other half of the outputs unsafe
    assert po.pair_order(w) is None
    assert po.pair_order(np.full((4, 1, 3, 3), 127, np.int8)) is None  # no pair at all


def test_sampled_columns_still_give_a_permutation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over :data:`BUDGET` the cost is taken on some (output, tap) columns: any order is
    exact, and it is only kept when it removes unsafe groups of the whole layer."""
    w = _real_like(np.random.default_rng(9), 32, 40, 3)
    monkeypatch.setattr(po, "BUDGET", 40 * 40 * 7)
    order = po.pair_order(w)
    assert order is not None
    np.testing.assert_array_equal(np.sort(order.order), np.arange(40), strict=True)
    assert po.unsafe_groups(w, order) <= (1 - po.MIN_GAIN) * po.unsafe_groups(w)


@pytest.mark.parametrize("kind", ["host", "avx2", "generic"])
def test_layers_lowered_in_pair_order_are_bit_exact(kind: str) -> None:
    """Real-like weights, extreme inputs with zero points 0, 135 and 7 (the padding of a
    complemented slot is ``255 - zp_u``): a 3x3 stride-2 layer with a partial last channel
    group and asymmetric padding, a 1x1 layer, a 3x3 layer of all-127 weights (every pair
    gets a complemented slot) and one whose channels hold a -128 (never complemented). The
    orders apply and complement slots (asserted)."""
    if kind == "avx2" and "avx2" not in host_target().features:
        pytest.skip("this machine lacks avx2")
    target = {"host": None, "avx2": AVX2_TARGET, "generic": GENERIC}[kind]
    rng = np.random.default_rng(17)
    s8, u8, s8z = QParams(0.05, -128, "int8"), QParams(0.05, 7, "uint8"), QParams(0.05, 7, "int8")
    light, low = np.full((8, 12, 3, 3), 127, np.int8), _real_like(rng, 8, 16, 3)
    low[:, ::3, 1, 1] = -128
    weights = {
        "p3": (_real_like(rng, 12, 22, 3), 2, s8, 13),
        "p1": (_real_like(rng, 20, 48, 1), 1, u8, 9),
        "light": (light, 1, s8z, 7),
        "low": (low, 1, u8, 6),
    }
    cases = []
    for name, (w, stride, xq, hw) in weights.items():
        order = po.pair_order(w)
        assert order is not None and order.flip.any(), name
        info = np.iinfo(np.dtype(xq.dtype))
        x = rng.choice(np.array([info.min, info.max], xq.dtype), size=(1, w.shape[1], hw, hw))
        cases.append(_conv(name, w, x, xq, stride))
    assert_cases_exact(cases, target)
