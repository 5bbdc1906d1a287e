"""``npuc sim``: outputs, stats, trace file, preset auto-pick, faults with exit code 5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from npuc.cli.main import main
from npuc.core.errors import SimulatorFault
from npuc.core.hw.config import NPU_S
from npuc.core.isa.builder import ProgramBuilder


def copy_program(tmp_path: Path, *, hw=NPU_S, wait_for_load: bool = True) -> Path:  # type: ignore[no-untyped-def]
    """x (int8, 256) -> requant (+5) -> y, on npu-s."""
    b = ProgramBuilder(hw)
    x = b.input("x", (16, 16), "int8", scale=1.0)
    y = b.output("y", (16, 16), "int8", scale=1.0)
    b.emit(
        "dma_load", dram_addr=x, sram_addr=0, row_bytes=256, signal=0b0100 if wait_for_load else 0
    )
    b.emit(
        "requant",
        wait=1 if wait_for_load else 0,
        signal=0b1000,
        ifm_addr=0,
        ifm_dtype=0,
        ofm_addr=256,
        ofm_dtype=0,
        count=256,
        ofm_zp=5,
        ofm_multiplier=1,
        post_shift=0,
    )
    b.emit("dma_store", wait=0b0100, dram_addr=y, sram_addr=256, row_bytes=256)
    path = tmp_path / "prog.npub"
    b.build().save(path)
    return path


def test_sim_writes_outputs_and_valid_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prog = copy_program(tmp_path)
    x = (np.arange(256) - 128).astype(np.int8).reshape(16, 16)
    np.save(tmp_path / "x.npy", x)
    out, trace = tmp_path / "out.npz", tmp_path / "trace.json"
    code = main(
        [
            "sim",
            str(prog),
            "--input",
            f"x={tmp_path / 'x.npy'}",
            "--output",
            str(out),
            "--trace",
            str(trace),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "npu-s" in text and "total cycles" in text and "DMA_IN" in text
    with np.load(out) as archive:
        expected = np.clip(x.astype(np.int64) + 5, -128, 127).astype(np.int8)
        np.testing.assert_array_equal(archive["y"], expected, strict=True)
    doc = json.loads(trace.read_text())
    events = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert {e["tid"] for e in events} == {0, 2, 3}
    for e in events:
        assert {"name", "ph", "pid", "tid", "ts", "dur"} <= set(e)
        assert e["dur"] >= 0 and e["ts"] >= 0
    # 1 GHz: one cycle is 0.001 us; the store ends at the total cycle count
    last = max(e["ts"] + e["dur"] for e in events)
    code = main(["sim", str(prog), "--input", str(tmp_path / "x.npy"), "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["program"] == str(prog)
    assert doc["hw"] == "npu-s" and doc["config_hash"] == NPU_S.config_hash
    assert doc["overflow"] == []
    assert doc["outputs"] == {"y": {"shape": [16, 16], "dtype": "int8"}}
    assert doc["output_file"] is None and doc["trace_file"] is None
    stats = doc["stats"]
    assert last == pytest.approx(stats["total_cycles"] / 1000)
    assert {u: stats["units"][u]["instructions"] for u in ("DMA_IN", "ITP", "DMA_OUT")} == {
        "DMA_IN": 1,
        "ITP": 1,
        "DMA_OUT": 1,
    }


def test_sim_fault_exits_5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prog = copy_program(tmp_path, wait_for_load=False)  # ITP reads while DMA_IN writes: a race
    np.save(tmp_path / "x.npy", np.zeros((16, 16), np.int8))
    code = main(
        ["sim", str(prog), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "o.npz")]
    )
    assert code == SimulatorFault.exit_code
    assert "data race" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def test_sim_wrong_preset_is_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prog = copy_program(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((16, 16), np.int8))
    code = main(["sim", str(prog), "--input", str(tmp_path / "x.npy"), "--hw-preset", "npu-m"])
    assert code == 3
    assert "built for hardware config" in capsys.readouterr().err
