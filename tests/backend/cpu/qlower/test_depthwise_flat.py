"""The flat integer depthwise kernel (schedules/int_depthwise_flat.py) stores the row
kernel's integers bit for bit, and the row kernel stores the integer executor's
(test_depthwise.py): random layers of every storage type, strides 1-3, dilations,
channel multipliers, batch 2, widths below and above one vector, both output stages
(float64 and the integer tail), at this machine's widest vectors and at 4 lanes."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
import tvm_ffi

from npuc.backend.cpu.fuse_lut import _store_lanes
from npuc.backend.cpu.schedules.int_depthwise import DepthwiseSpec, make_kernel, prefers_flat
from npuc.backend.cpu.schedules.int_depthwise_flat import (
    BAND_BYTES,
    band_rows,
    column_pairs,
    copy_vectors,
    flat_strip,
    make_flat_kernel,
    pair_block,
    plane_buffers,
)
from npuc.backend.cpu.schedules.int_depthwise_stage import channels_per_task
from npuc.core.target import host_target

from .harness import Case, ints
from .test_depthwise import depthwise_case, planned_case, tail_case


def _run_both(
    cases: list[Case], lanes: int, band: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each case's stored output from the flat kernel (``band`` output rows at a time, default
    its own choice) and the row kernel (one compiled module)."""
    funcs, inputs = {}, []
    for i, case in enumerate(cases):
        spec, consts, x = planned_case(case)
        kernels = {
            "flat": make_flat_kernel(spec, lanes, band),
            "row": make_kernel(spec, lanes, False),
        }
        for kind, kernel in kernels.items():
            name = f"k{i}_{kind}"
            funcs[name] = kernel.with_attr("global_symbol", name)
        inputs.append((spec, [x, consts["W"], consts["B"], consts["M"]]))
    lib = tvm.compile(tvm.IRModule(funcs), target=host_target().to_tvm())
    outs = []
    for i, (spec, args) in enumerate(inputs):
        shape = (spec.n, spec.c * spec.mult, spec.oh, spec.ow)
        got = []
        for kind in ("flat", "row"):
            y = tvm.runtime.tensor(np.full(shape, 7, spec.out_dtype))
            lib[f"k{i}_{kind}"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args], y)
            got.append(y.numpy())
        outs.append((got[0], got[1]))
    return outs


@pytest.mark.parametrize("lanes", [4, 16])
def test_flat_kernel_equals_the_row_kernel(lanes: int) -> None:
    rng = np.random.default_rng(31 + lanes)
    cases = [depthwise_case(rng, i) for i in range(14)] + [tail_case(rng, i) for i in range(10)]
    for flat, row in _run_both(cases, lanes):
        np.testing.assert_array_equal(flat, row, strict=True)


@pytest.mark.parametrize("band", [1, 2, 3])
def test_flat_kernel_in_bands_equals_the_row_kernel(band: int) -> None:
    """Bands of 1-3 output rows (many bands, the last one overlapping, padding rows at the
    top and bottom of a band, strides 1-3, dilations, multipliers, int16 inputs)."""
    rng = np.random.default_rng(41 + band)
    cases = [depthwise_case(rng, i) for i in range(12)] + [tail_case(rng, i) for i in range(6)]
    for flat, row in _run_both(cases, 16, band):
        np.testing.assert_array_equal(flat, row, strict=True)


@pytest.mark.parametrize("hw, stride", [(112, 1), (112, 2), (101, 2), (99, 1), (112, 3)])
def test_band_rows_keep_the_plane_within_its_budget(hw: int, stride: int) -> None:
    rng = np.random.default_rng(3)
    spec, _consts, _x = planned_case(depthwise_case(rng, 1))
    oh = (hw - 1) // stride + 1
    values = spec.to_attr() | {"h": hw, "w": hw, "kh": 3, "kw": 3, "pad_t": 1, "pad_l": 1,
                               "stride_h": stride, "stride_w": stride, "dil_h": 1, "dil_w": 1,
                               "oh": oh, "ow": oh, "acc": "float32"}  # fmt: skip
    s = DepthwiseSpec(**values)
    rows = band_rows(s)
    bands = -(-oh // rows)
    assert 1 <= rows <= oh and bands * rows - oh < bands
    assert stride * stride * (rows + 2 // stride) * s.wq * 4 <= BAND_BYTES
    assert bands > 1  # every plane above is over the budget whole


def _sized_case(
    rng: np.random.Generator, hw: int, stride: int, index: int, pad: int, c: int = 5
) -> Case:
    """A 3x3 depthwise layer of ``c`` channels on ``hw x hw`` planes, left padding ``pad``."""
    case = tail_case(rng, index)
    ((name, (_x, xq)),) = case.inputs.items()
    attrs = dict(case.node.attrs, strides=[stride, stride], padding=[1, pad, 1, 1], groups=c)
    params = dict(case.params, weights=ints(rng, "int8", (c, 1, 3, 3)))
    for key in ("b16", "ofm_multiplier"):
        params[key] = np.resize(params[key], c)
    return Case(
        node=type(case.node)(name=case.node.name, op="conv2d", inputs=case.node.inputs,
                             out=case.node.out, attrs=attrs, consts={}),
        inputs={name: (ints(rng, xq.dtype, (1, c, hw, hw)), xq)},
        params=params,
        out=case.out,
    )  # fmt: skip


def test_double_buffered_small_planes_equal_the_row_kernel() -> None:
    """Planes of at most DOUBLE_BYTES in two buffers (the fill of the next plane before the
    taps of this one): 128 channels, so every task runs 4 planes and the buffers alternate;
    7x7 and 14x14, stride 1 and 2."""
    rng = np.random.default_rng(8)
    shapes = [(7, 1, 1, 1), (14, 2, 3, 1), (14, 1, 2, 0), (9, 2, 1, 2)]
    cases = [_sized_case(rng, hw, stride, index, pad, c=128) for hw, stride, index, pad in shapes]
    for case in cases:
        spec = planned_case(case)[0]
        assert plane_buffers(spec, band_rows(spec)) == 2 and channels_per_task(spec.c) == 4
    for flat, row in _run_both(cases, 16):
        np.testing.assert_array_equal(flat, row, strict=True)


def test_flat_kernel_at_mobilenet_sizes() -> None:
    """14x14 and 7x7 planes (the flat kernel's MobileNetV2 layers), stride 1 and 2; planes in
    several bands (112x112 stride 1 and 2, odd 101 and 99: a partial last band); stride 2
    rows of at least 8 columns (int8 and uint8: the 16-bit pair fill in blocks of 16, 8
    and 4 pairs, its overlapping last block, left padding 0-2, and the scalar columns
    after it)."""
    rng = np.random.default_rng(5)
    shapes = [(14, 1, 1, 1), (7, 1, 1, 1), (28, 2, 1, 1), (15, 2, 1, 1), (56, 2, 3, 1),
              (57, 2, 1, 1), (67, 2, 3, 0), (40, 2, 1, 2), (112, 2, 3, 1), (112, 1, 2, 1),
              (101, 2, 1, 1), (99, 1, 3, 0), (8, 2, 1, 1), (9, 2, 3, 0), (20, 2, 1, 2),
              (30, 2, 3, 1), (17, 2, 1, 0)]  # fmt: skip
    cases = [
        _sized_case(rng, hw, stride, index if i > 3 else 2 * i + 1, pad)
        for i, (hw, stride, index, pad) in enumerate(shapes)
    ]
    for flat, row in _run_both(cases, 16):
        np.testing.assert_array_equal(flat, row, strict=True)


@pytest.mark.parametrize("flat", [1, 5, 15, 16, 61, 222, 838, 3246, 12766])
@pytest.mark.parametrize("lanes", [4, 8, 16])
def test_flat_strips_are_whole_vectors_with_little_waste(flat: int, lanes: int) -> None:
    strip = flat_strip(flat, lanes)
    assert 1 <= strip <= flat
    if flat >= lanes:
        assert strip in (lanes, 2 * lanes, 4 * lanes)
        if strip > lanes:
            assert (-(-flat // strip) * strip - flat) * 8 <= flat


def test_prefers_flat_at_mobilenet_sizes() -> None:
    """Flat where rows waste lanes (14x14, 7x7 at 16 lanes), up to 5/4 of the row kernel's
    vector operations (56x56 at 8 lanes) or where the row kernel's plane is over the band
    budget (112x112); rows for strided planes narrower than half a vector unless
    the column-pair fill takes them (8-bit input summed in float32)."""
    rng = np.random.default_rng(2)
    spec, _consts, _x = planned_case(depthwise_case(rng, 1))

    def at(hw: int, stride: int, in_dtype: str = "int8") -> DepthwiseSpec:
        acc = "float64" if in_dtype == "int16" else "float32"
        values = spec.to_attr() | {"h": hw, "w": hw, "kh": 3, "kw": 3, "pad_t": 1, "pad_l": 1,
                                   "stride_h": stride, "stride_w": stride, "dil_h": 1,
                                   "dil_w": 1, "oh": (hw - 1) // stride + 1,
                                   "ow": (hw - 1) // stride + 1, "in_dtype": in_dtype,
                                   "acc": acc}  # fmt: skip
        return DepthwiseSpec(**values)

    assert prefers_flat(at(14, 1), 16) and prefers_flat(at(7, 1), 16)
    assert prefers_flat(at(28, 2), 16)
    assert prefers_flat(at(112, 1), 16)  # the row kernel's plane would not fit L1
    assert prefers_flat(at(56, 1), 8)  # 408 flat vector operations against 392 in rows
    assert prefers_flat(at(14, 2), 16) and prefers_flat(at(14, 2, "uint8"), 16)  # pair fill
    assert column_pairs(at(14, 2)) == 7 and column_pairs(at(14, 2, "int16")) == 0
    assert not prefers_flat(at(14, 2, "int16"), 16)


@pytest.mark.parametrize("pairs", [0, 3, 4, 7, 8, 15, 16, 56])
def test_pair_blocks_fit_the_row(pairs: int) -> None:
    k = pair_block(pairs)
    assert k == (0 if pairs < 4 else 4 if pairs < 8 else 8 if pairs < 16 else 16)


@pytest.mark.parametrize("ow", [1, 3, 7, 14, 15, 16, 17, 28, 31, 32, 56, 63, 64, 65, 112])
@pytest.mark.parametrize("rows", [1, 2, 3, 14, 56])
def test_copy_vectors_stay_inside_the_band(ow: int, rows: int) -> None:
    """Vector rows write inside the band's ``rows * ow`` values (a short row's vector runs
    on into the rows after it, never past the band); rows of 16 or more are all vector rows
    and their vectors fit the row; short rows take every vector row that fits."""
    lanes, vector_rows = copy_vectors(ow, rows)
    assert lanes in (16, 32, 64) and 0 <= vector_rows <= rows
    if ow >= 16:
        assert vector_rows == rows and lanes <= ow and (lanes == 64 or 2 * lanes > ow)
    else:
        assert lanes == 16
        assert all(oy * ow + lanes <= rows * ow for oy in range(vector_rows))
        assert vector_rows == rows or vector_rows * ow + lanes > rows * ow


@pytest.mark.parametrize("hw, stride", [(112, 1), (56, 2), (28, 1), (14, 1), (7, 1)])
def test_flat_kernel_stores_vectors_a_lookup_can_fuse(hw: int, stride: int) -> None:
    """The band copy to ``Y`` stores vectors of 16-64 lanes (what
    :func:`~npuc.backend.cpu.fuse_lut.fuse_lookup` looks up with ``vpermi2b``); its
    value-by-value loop runs only over the rows :func:`copy_vectors` leaves (none for rows
    of 16 or more: test above)."""
    spec = planned_case(_sized_case(np.random.default_rng(9), hw, stride, 1, 1))[0]
    kernel = make_flat_kernel(spec, 16)
    lanes = _store_lanes(kernel, kernel.params[-1])  # what FuseLookups checks
    copy, vector_rows = copy_vectors(spec.ow, band_rows(spec))
    assert lanes - {1} == {copy}, lanes
    assert _scalar_copy_rows(kernel) == [band_rows(spec) - vector_rows]
    assert spec.ow < 16 or vector_rows == band_rows(spec)


def _scalar_copy_rows(kernel: tvm.tirx.PrimFunc) -> list[int]:
    """The row extents of the loops ``for oy: for ox: Y[...] = <scalar>`` in ``kernel``."""
    out = kernel.params[-1]
    extents: list[int] = []

    def loop(node: tvm.tirx.For) -> None:
        inner = node.body
        if isinstance(inner, tvm.tirx.For) and isinstance(inner.body, tvm.tirx.BufferStore):
            store = inner.body
            if store.buffer.same_as(out) and store.value.ty.dtype.lanes == 1:
                extents.append(int(node.extent))

    tvm_ffi.structural_walk(kernel.body, [(tvm.tirx.For, loop)])
    return extents
