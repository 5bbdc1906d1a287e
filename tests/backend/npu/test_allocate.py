"""Liveness allocation: live buffers never overlap, alignment and capacity hold."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.backend.npu.allocate import AllocationError, Buffer, allocate

buffers = st.lists(
    st.tuples(
        st.integers(1, 5000), st.integers(0, 20), st.integers(1, 10), st.sampled_from([1, 2, 64])
    ),
    min_size=1,
    max_size=30,
).map(lambda xs: [Buffer(f"b{i}", n, s, s + d, a) for i, (n, s, d, a) in enumerate(xs)])


@settings(max_examples=100, deadline=None)
@given(bufs=buffers)
def test_live_buffers_never_overlap(bufs: list[Buffer]) -> None:
    result = allocate(bufs, capacity=1 << 30)
    for i, a in enumerate(bufs):
        lo_a = result.addresses[a.name]
        assert lo_a % a.align == 0
        assert lo_a + a.nbytes <= result.peak_bytes
        for b in bufs[i + 1 :]:
            if a.start < b.end and b.start < a.end:
                lo_b = result.addresses[b.name]
                assert lo_a + a.nbytes <= lo_b or lo_b + b.nbytes <= lo_a, (a, b)


@settings(max_examples=100, deadline=None)
@given(bufs=buffers)
def test_peak_is_at_least_the_largest_live_set(bufs: list[Buffer]) -> None:
    result = allocate(bufs, capacity=1 << 30)
    for t in {b.start for b in bufs}:
        live = sum(b.nbytes for b in bufs if b.start <= t < b.end)
        assert result.peak_bytes >= live


def test_does_not_fit_names_buffer() -> None:
    with pytest.raises(AllocationError, match="'big'"):
        allocate([Buffer("big", 2048, 0, 1)], capacity=1024)
