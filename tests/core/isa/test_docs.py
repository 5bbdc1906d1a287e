"""docs/npu_isa.md and docs/hw_config.md are generated from the code and up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from npuc.core.isa.definition import OPS
from npuc.core.isa.fields import LUT_TIMING

ROOT = Path(__file__).resolve().parents[3]


def test_generated_docs_are_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_npu_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr


def test_isa_doc_lists_every_instruction_and_field() -> None:
    text = (ROOT / "docs" / "npu_isa.md").read_text(encoding="utf-8")
    for op in OPS:
        assert f"### `{op.mnemonic}` (opcode 0x{op.opcode:02x}" in text
        for f in op.all_fields:
            assert f"`{f.name}`" in text
    assert "rshift_round(v, s)" in text and "T[i] + rshift_round((T[i+1] - T[i]) * t, f)" in text


def test_lut_timing_is_worded_identically_in_both_docs() -> None:
    for doc in ("npu_isa.md", "npu_sim.md"):
        assert LUT_TIMING in (ROOT / "docs" / doc).read_text(encoding="utf-8"), doc


def test_npu_docs_and_sources_cite_nothing_outside_the_repository() -> None:
    paths = [*(ROOT / "docs").glob("npu_*.md"), ROOT / "docs" / "hw_config.md"]
    for folder in ("core/isa", "core/intref", "npu_sim"):
        paths += (ROOT / folder).rglob("*.py")
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert "/work/" not in text and "../shared" not in text, path
