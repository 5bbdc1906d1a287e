"""The report's per-layer cycles for the parts of a row-band chain (they run interleaved)."""

from __future__ import annotations

from npuc.backend.npu.report import _split_chains


def _row(name: str, tiling: str, sim: int, est: int, macs: int) -> dict:
    return {
        "layer": name,
        "tiling": tiling,
        "sim_cycles": sim,
        "est_cycles": est,
        "macs": macs,
        "unit_busy_cycles": {"DMA_IN": 10, "MAC": est // 2, "ITP": 5, "DMA_OUT": 0},
    }


def test_chain_cycles_are_shared_by_estimate_and_others_kept() -> None:
    chain = "row-band chain (h, m, t, a): 4 band(s) of 3 row(s)"
    rows = [
        _row("h", chain, 900, 100, 1000),
        _row("m", chain, 50, 300, 3000),
        _row("t", chain, 40, 100, 1000),
        _row("a", chain, 10, 0, 0),
        _row("x", "1 band(s) of 8 row(s)", 70, 60, 500),
    ]
    _split_chains(rows, array=16)
    assert [r["sim_cycles"] for r in rows] == [200, 600, 200, 0, 70]  # 1000 split 1:3:1:0
    assert rows[1]["est_error"] == (300 - 600) / 600
    assert "est_error" not in rows[3]  # no cycles: no ratio
    assert rows[0]["layer_cycles"] == 200 and rows[0]["mac_utilisation"] == 1000 / (200 * 16)
    assert "layer_cycles" not in rows[4]  # not a chain: untouched
