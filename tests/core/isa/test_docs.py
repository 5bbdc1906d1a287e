"""docs/npu_isa.md and docs/hw_config.md are generated from the code and up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from npuc.core.isa.definition import OPS

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
