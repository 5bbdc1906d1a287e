"""The NPU performance report: ``npuc build --report DIR`` and ``npuc report model.npuc``.

A generated network (conv 16->16, depthwise, conv 16->17) is built for npu-s
(16 x 16 MAC array); the report's fields must be present and consistent, the
17-channel layer's idle array rows flagged with the shape change and the
16-channel layer's not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from npuc.cli.main import main
from npuc.core.hw.config import PRESETS
from tests.frontend.torch_onnx import export_onnx

HW = PRESETS["npu-s"]
FILES = ("report.json", "report.html", "trace.json", "report.txt")


class OddNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.full = nn.Conv2d(16, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.odd = nn.Conv2d(16, 17, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.odd(torch.relu(self.dw(torch.relu(self.full(x))))))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("report")
    torch.manual_seed(0)
    onnx.save(
        export_onnx(OddNet(), (torch.randn(1, 16, 16, 16),), names=["x"]), str(d / "odd.onnx")
    )
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", x=rng.standard_normal((2, 1, 16, 16, 16)).astype(np.float32))
    argv = ["build", str(d / "odd.onnx"), "--target", "npu", "--calib", str(d / "calib.npz")]
    assert main([*argv, "--hw", "npu-s", "-o", str(d / "m.npuc"), "--report", str(d / "rep")]) == 0
    return d


def _report(built: Path) -> dict[str, Any]:
    return dict(json.loads((built / "rep" / "report.json").read_text()))


def test_build_writes_every_file(built: Path) -> None:
    for name in FILES:
        assert (built / "rep" / name).stat().st_size > 0, name
    html = (built / "rep" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<script" not in html
    trace = json.loads((built / "rep" / "trace.json").read_text())
    names = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert names == {"DMA_IN", "MAC", "ITP", "DMA_OUT", "layers"}
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    layers = {r["layer"] for r in _report(built)["layers"] if r["target"] == "npu"}
    assert {e["name"] for e in spans if e["tid"] == 4} == layers


def test_fields_are_consistent(built: Path) -> None:
    report = _report(built)
    t = report["totals"]
    array = HW.mac_rows * HW.mac_cols
    npu = [r for r in report["layers"] if r["target"] == "npu"]
    assert len(npu) == 3 and t["npu_layers"] == 3 and t["cpu_layers"] == 0
    unattributed = sum(p["unattributed_cycles"] for p in report["partitions"])
    assert sum(r["sim_cycles"] for r in npu) + unattributed == t["sim_cycles"]
    assert t["sim_cycles"] == sum(p["sim_cycles"] for p in report["partitions"])
    assert t["time_ms"] == pytest.approx(t["sim_cycles"] / HW.clock_hz * 1e3)
    assert t["macs"] == sum(r["macs"] for r in npu)
    assert t["mac_utilisation"] == pytest.approx(t["macs"] / (t["sim_cycles"] * array))
    assert t["dram_bytes"] == t["dram_read_bytes"] + t["dram_written_bytes"]
    assert t["dram_bytes"] >= t["dram_lower_bound_bytes"] > 0
    dw = sum(r["sim_cycles"] for r in npu if r["depthwise"])
    assert t["depthwise_share"] == pytest.approx(dw / t["sim_cycles"]) and dw > 0
    for r in npu:
        own = max(r["sim_cycles"], *r["unit_busy_cycles"].values())
        assert r["layer_cycles"] == own and 0 < r["mac_utilisation"] <= 1
        assert r["mac_utilisation"] == pytest.approx(r["macs"] / (own * array))
        assert r["est_error"] == pytest.approx(
            (r["est_cycles"] - r["sim_cycles"]) / r["sim_cycles"]
        )
        assert r["dram_bytes"] == r["dram_read_bytes"] + r["dram_written_bytes"]
        assert sum(r["unit_busy_cycles"].values()) > 0 and r["sram_peak_bytes"] > 0
        assert r["tiling"] and "cascade" in r
        assert 0.9 < r["similarity"]["cosine"] <= 1.0 + 1e-9
    assert any("similarity" in n for n in t["notes"])


def test_waste_flags_17_channels_not_16(built: Path) -> None:
    npu = [r for r in _report(built)["layers"] if r["target"] == "npu"]
    by_channels = {(r["output"][1], r["depthwise"]): r for r in npu}
    odd, full = by_channels[(17, False)], by_channels[(16, False)]
    idle = [w for w in odd["waste"] if w["kind"] == "idle_rows"]
    assert idle and idle[0]["flag"] and "17 -> 16" in idle[0]["fix"] and "halve" in idle[0]["fix"]
    assert not [w for w in full["waste"] if w["kind"] in ("idle_rows", "idle_cols")]
    assert next(w for w in by_channels[(16, True)]["waste"] if w["kind"] == "depthwise")["flag"]
    table = (built / "rep" / "report.txt").read_text()
    assert "idle_rows" in table and "total:" in table


def test_report_command_matches_the_build(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "again"
    assert main(["report", str(built / "m.npuc"), "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(Path(f).name for f in data["files"]) == sorted(FILES)
    again = json.loads((out / "report.json").read_text())
    assert again == data["report"] == _report(built)
    assert main(["report", str(built / "m.npuc"), "-o", str(out), "--top", "2"]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("  conv2d_")]
    assert "total:" in text and len(rows) == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.onnx", b"not a zip", "not a .npuc file"),
        ("broken.npuc", b"PK\x03\x04 truncated", "not an npuc artifact"),
        ("missing.npuc", None, "does not exist"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | None,
    message: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "rep"
    assert main(["report", str(path), "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


def _headless(page: Path, profile: Path) -> tuple[str, str]:
    """(DOM after load, chromium's log) of ``page`` opened in headless chromium."""
    browser = _chromium()
    assert browser is not None
    cmd = [browser, "--headless", "--disable-gpu", f"--user-data-dir={profile}"]
    if os.geteuid() == 0:
        cmd.append("--no-sandbox")  # chromium refuses to run as root with its sandbox
    cmd += ["--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom"]
    proc = subprocess.run(
        [*cmd, page.as_uri()], capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


# Counts the images that failed to decode and logs one console message (to prove the log is read).
PROBE = """<script>window.addEventListener("load", function () {
var imgs = Array.from(document.images);
var bad = imgs.filter(function (x) { return !(x.complete && x.naturalWidth > 0); }).length;
document.body.setAttribute("data-probe", "images=" + imgs.length + " broken=" + bad);
console.error("npuc-probe-message"); });</script>"""


@pytest.mark.slow
def test_html_renders_in_a_headless_browser(built: Path, tmp_path: Path) -> None:
    if _chromium() is None:
        pytest.skip("no chromium binary found (Debian: `apt-get install -y chromium` as root)")
    page = built / "rep" / "report.html"
    dom, log = _headless(page, tmp_path / "profile1")
    assert "NPU performance report" in dom and "Per layer" in dom
    assert not [line for line in log.splitlines() if "CONSOLE" in line], log
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom, log = _headless(probe, tmp_path / "profile2")
    assert 'data-probe="images=2 broken=0"' in dom
    assert "npuc-probe-message" in log  # console messages do reach the log we check


def test_without_golden_samples_similarity_is_omitted_with_a_note(built: Path) -> None:
    from npuc.cli.npu_report import build_from_artifact, make_report

    build, hw = build_from_artifact(built / "m.npuc")
    made = make_report(build, hw, [])
    report = made.report
    assert not [r for r in report["layers"] if "similarity" in r]
    notes = " ".join(report["totals"]["notes"])
    assert "similarity omitted" in notes and "zero input" in notes
    assert report["totals"]["sim_cycles"] == _report(built)["totals"]["sim_cycles"]
