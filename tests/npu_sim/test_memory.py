"""Strided regions: exact byte sets, self-overlap and intersection against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.core.errors import SimulatorFault
from npuc.npu_sim.memory import Memory, StridedRegion, regions_intersect


def byte_set(r: StridedRegion) -> set[int]:
    return {
        r.addr + i2 * r.plane_stride + i1 * r.row_stride + b
        for i2 in range(r.plane_count)
        for i1 in range(r.row_count)
        for b in range(r.row_bytes)
    }


@st.composite
def regions(draw: st.DrawFn) -> StridedRegion:
    return StridedRegion(
        draw(st.integers(0, 64)),
        draw(st.integers(1, 8)),
        draw(st.integers(1, 5)),
        draw(st.integers(0, 24)),
        draw(st.integers(1, 4)),
        draw(st.integers(0, 64)),
    )


@settings(max_examples=300, deadline=None)
@given(regions(), regions())
def test_intersection_and_self_overlap_match_brute_force(
    a: StridedRegion, b: StridedRegion
) -> None:
    assert regions_intersect(a, b) == bool(byte_set(a) & byte_set(b))
    assert a.self_overlapping() == (len(byte_set(a)) < a.total_bytes)
    assert a.extent_bytes == max(byte_set(a)) - a.addr + 1


def test_typed_read_write_round_trip_and_high_water() -> None:
    mem = Memory("SRAM", 256)
    values = np.array([-2, 300, -32768], dtype=np.int16)
    mem.write(10, values, what="t")
    np.testing.assert_array_equal(
        mem.read(10, 3, np.dtype(np.int16), what="t"), values, strict=True
    )
    assert mem.high_water_bytes == 16
    with pytest.raises(SimulatorFault, match="not aligned"):
        mem.read(11, 1, np.dtype(np.int16), what="t")
    with pytest.raises(SimulatorFault, match="outside"):
        mem.write(250, np.zeros(8, np.int8), what="t")
    assert mem.high_water_bytes == 16  # a faulting access touches nothing
