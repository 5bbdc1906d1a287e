"""Assembler and disassembler: located errors, exact round trips, examples assemble."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import NPU_M, NPU_S
from npuc.core.isa.asm import assemble, assemble_file, disassemble
from npuc.core.isa.program import Program
from tests.core.isa.strategies import programs

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.s"))

GOOD = """\
.const N = 4 * 4                 ; a comment
.sram a_s N
.sram y_s N
.data c int8 [2, 2] = [1, -2,
    3, 4]
.input  a int8 [1, 16] scale=0.5 zp=1
.output y int8 [1, 16] scale=0.25
top:
dma_load dram=@a sram=@a_s row=sizeof(a) signal=itp
requant ifm=@a_s[int8] ofm=@y_s[i8] count=N ifm_zp=1 ofm_multiplier=16384 post_shift=14 \\
        act=-128..127 wait=dma_in signal=dma_out
dma_store dram=@y sram=@y_s row=N wait=itp
end
"""


def _asm_error(text: str) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        assemble(text, hw=NPU_M, source="t.s")
    return info.value


def test_assembles_and_round_trips() -> None:
    p = assemble(GOOD, hw=NPU_M, source="t.s")
    assert [i.mnemonic for i in p.instructions] == ["dma_load", "requant", "dma_store", "end"]
    assert p.constants[:4] == bytes([1, 0xFE, 3, 4])
    assert p.instructions[1].values()["count"] == 16
    text = disassemble(p)
    again = assemble(text, hw=NPU_M)
    assert again == p and again.to_bytes() == p.to_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_disasm_then_asm_is_identity(program: Program) -> None:
    data = program.to_bytes()
    assert assemble(disassemble(program), hw=NPU_M).to_bytes() == data


def test_syntax_error_has_line_column_token_expected() -> None:
    err = _asm_error("end\nconv ifm= =3\n")
    assert err.message.startswith("t.s:2:11: unexpected")
    assert "'='" in err.message and "expected one of" in err.message and "name" in err.message
    assert err.hint is not None and "^" in err.hint


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("frob x=1\nend\n", "t.s:1:1: unknown instruction 'frob'"),
        ("sync unit=mac bogus=1\nend\n", "t.s:1:15: sync has no operand 'bogus'"),
        ("sync\nend\n", "t.s:1:1: sync: missing operand(s) unit"),
        ("sync unit=mac wait=mac\nend\n", "cannot wait for or signal itself"),
        ("eltwise op=add ifm=0[int8] ifm2=0[int8] ofm=0[int8] count=4 post_shift=48\nend\n",
         "t.s:1:72: eltwise: field post_shift = 48 is outside [0, 47]"),
        ("sync unit=mac\n", "END must be the last"),
        (".sram a 1\n.sram a 1\nend\n", "t.s:2:7: name 'a' is already defined"),
        ("dma_load dram=@nope sram=0 row=1\nend\n", "unknown memory symbol 'nope'"),
        (".sram big 2*1024*1024\nend\n", "exceeds sram_bytes"),
        (".data d int8 = [300]\nend\n", "does not fit int8"),
        ("requant ifm=0[float] ofm=0[int8] count=1 ofm_multiplier=1 post_shift=0\nend\n",
         "unknown type 'float'"),
        ('.config_hash "0000000000000000"\nend\n', "written for config hash"),
    ],
)  # fmt: skip
def test_semantic_errors_are_located(text: str, needle: str) -> None:
    assert needle in _asm_error(text).message


def test_config_mismatch_and_npy_errors(tmp_path: Path) -> None:
    p = assemble(GOOD, hw=NPU_M)
    with pytest.raises(InvalidInputError, match="config hash"):
        assemble(disassemble(p), hw=NPU_S)
    src = tmp_path / "d.s"
    src.write_text('.data w int8 [3] file "w.npy"\nend\n')
    with pytest.raises(InvalidInputError, match="cannot read"):
        assemble_file(src, hw=NPU_M)
    import numpy as np

    np.save(tmp_path / "w.npy", np.array([1, 2, 3, 4], dtype=np.int8))
    with pytest.raises(InvalidInputError, match="shape"):
        assemble_file(src, hw=NPU_M)
    (tmp_path / "w.npy").write_bytes(b"")  # empty file: numpy raises EOFError
    with pytest.raises(InvalidInputError, match="cannot read"):
        assemble_file(src, hw=NPU_M)
    np.save(tmp_path / "w.npy", np.array([1, 2, 2**64 - 1], dtype=np.uint64))
    with pytest.raises(InvalidInputError, match="beyond int64"):  # must not wrap to -1
        assemble_file(src, hw=NPU_M)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_assemble_and_round_trip(path: Path) -> None:
    p = assemble_file(path, hw=NPU_M)
    assert p.instructions[-1].mnemonic == "end" and p.inputs and p.outputs
    assert any(i.values()["wait"] for i in p.instructions)  # units synchronise with tokens
    assert assemble(disassemble(p), hw=NPU_M).to_bytes() == p.to_bytes()


def test_all_four_examples_exist() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"conv_relu", "residual_add", "depthwise", "lut_sigmoid"} <= names


def _npuc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "npuc.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


def test_cli_asm_disasm_exit_codes(tmp_path: Path) -> None:
    src = tmp_path / "p.s"
    src.write_text(GOOD)
    out = tmp_path / "p.npub"
    proc = _npuc("asm", str(src), "-o", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert '"instructions": 4' in proc.stdout
    proc = _npuc("disasm", str(out), "-o", str(tmp_path / "back.s"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = _npuc("asm", str(tmp_path / "back.s"), "-o", str(tmp_path / "back.npub"), cwd=tmp_path)
    assert proc.returncode == 0 and (tmp_path / "back.npub").read_bytes() == out.read_bytes()
    bad = tmp_path / "bad.s"
    bad.write_text("conv ifm= =3\n")
    proc = _npuc("asm", str(bad), cwd=tmp_path)
    assert (
        proc.returncode == 3
        and "bad.s:1:11" in proc.stderr
        and not (tmp_path / "bad.npub").exists()
    )
    corrupt = tmp_path / "c.npub"
    corrupt.write_bytes(out.read_bytes()[:-3])
    assert _npuc("disasm", str(corrupt), cwd=tmp_path).returncode == 3
    assert _npuc("disasm", str(out), "--hw-preset", "npu-s", cwd=tmp_path).returncode == 3
    assert _npuc("asm", str(src), "--hw-preset", "npu-q", cwd=tmp_path).returncode == 2


_FUZZ_TOKENS = [
    *GOOD.replace("\n", " \n ").split(),
    *("\n", "=", "@", "[", "]", "..", ",", "-", "(", ")", "hex", '"zz"', "file", '"no.npy"'),
    *("unit=9", "op=mul", "lut=1", "3x3x3", ":", "1e5", "/0", ".input", ".data", "int16"),
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_FUZZ_TOKENS), min_size=1, max_size=40))
def test_random_text_only_raises_invalid_input(tokens: list[str]) -> None:
    lines = GOOD.splitlines()
    text = "\n".join([*lines[:4], " ".join(tokens), *lines[4:]])
    try:
        assemble(text, hw=NPU_M, source="f.s")
    except InvalidInputError as exc:
        assert exc.message.startswith("f.s")
