"""Waste analysis of the performance report: idle MAC rows/columns, padding, DMA bursts."""

from __future__ import annotations

import numpy as np
import pytest

from npuc.backend.npu.compile import compile_npu_graph
from npuc.backend.npu.ops import NpuGraph
from npuc.backend.npu.report_waste import FLAG_FRACTION, dma_waste, mac_waste, padding_fraction
from tests.backend.npu.graphs import NPU_S, conv, tensor


def _waste(cin: int, cout: int, size: int = 16, k: int = 3) -> dict[str, dict[str, object]]:
    """Waste entries by kind of one conv ``cin -> cout`` (k x k, 'same') compiled for npu-s."""
    rng = np.random.default_rng(cin * 100 + cout)
    x = tensor("x", (1, size, size, cin))
    pad = k // 2
    op = conv(rng, x, cout=cout, kernel=(k, k), padding=(pad, pad, pad, pad))
    compiled = compile_npu_graph(NpuGraph(ops=(op,), inputs=(x,), outputs=(op.ofm,)), NPU_S)
    instructions = compiled.program.instructions
    entries = mac_waste([op], instructions, NPU_S) + dma_waste(instructions, NPU_S)
    return {str(e["kind"]): e for e in entries}


def test_17_output_channels_are_flagged_16_are_not() -> None:
    assert NPU_S.mac_rows == 16
    full = _waste(16, 16)
    assert "idle_rows" not in full and "idle_cols" not in full
    odd = _waste(16, 17)["idle_rows"]
    assert odd["flag"] is True and float(str(odd["fraction"])) >= FLAG_FRACTION
    assert "17 -> 16" in str(odd["fix"]) and "halve" in str(odd["fix"])
    assert "2 pass(es)" in str(odd["detail"])


def test_few_input_channels_leave_columns_idle() -> None:
    entry = _waste(3, 16, k=1)["idle_cols"]
    assert entry["flag"] is True
    assert "3 of 16 array columns" in str(entry["fix"])


@pytest.mark.parametrize(
    ("size", "expected"),
    [(7, 1 - (19 / 21) ** 2), (56, 1 - ((56 * 3 - 2) / (56 * 3)) ** 2)],
)
def test_padding_fraction_of_a_same_3x3(size: int, expected: float) -> None:
    rng = np.random.default_rng(0)
    op = conv(rng, tensor("x", (1, size, size, 8)), cout=8, kernel=(3, 3), padding=(1, 1, 1, 1))
    assert padding_fraction(op) == pytest.approx(expected)
    valid = conv(rng, tensor("x", (1, size, size, 8)), cout=8, kernel=(3, 3))
    assert padding_fraction(valid) == 0.0


def test_waste_cycles_never_exceed_the_unit_cycles() -> None:
    for kind, entry in _waste(5, 17, size=8).items():
        assert 0 < float(str(entry["fraction"])) <= 1, kind
