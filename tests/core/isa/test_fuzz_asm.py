"""Fuzzing the assembler: every mutated source assembles or fails with npuc's own error.

Seeds are the repository's examples plus a directive-only program; mutations
are grammar-aware (literals swapped for malformed or huge ones, names and
operators swapped, tokens dropped or repeated, deep nesting and exploding
``.const`` chains inserted) and byte-level. The handed fault kinds (``0x_``,
literals over Python's 4,300-digit limit, a huge ``scale=``, 1,000-deep
expressions, squaring ``.const`` chains) are reproduced with generated inputs.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from npuc.cli.main import main
from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import NPU_M
from npuc.core.isa.asm import assemble, assemble_file, disassemble
from npuc.core.isa.asm.symbols import MAX_EXPR_DEPTH, MAX_LITERAL_DIGITS
from npuc.core.isa.definition import OPS
from npuc.core.isa.program import Program
from tests.tooling.fuzz import Tally, mutate_bytes, time_bound

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
DIRECTIVES_ONLY = """\
.const N = 4 * 4 + 0x10 - 1_0
.sram a_s N align=64
.data c int8 [2, 2] = [1, -2, 3, 4]
.sram b_s sizeof(c) at=4096
.data d uint8 [3] hex "0a0b0c"
.dram scratch 256
.input  a int8 [1, 16] scale=0.5 zp=1
.output y int16 [1, 16] scale=0.25
end
"""
TOKEN = re.compile(r"0[xX][0-9a-fA-F_]+|\d[\d_]*(?:\.\d+)?(?:[eE][-+]?\d+)?|[A-Za-z_.][\w.]*|\S")
BAD_LITERALS = (
    "0x_", "0X__", "0x_1_", "1__0", "7_", "0x", "9" * 5000, "0x" + "f" * 5000, "1" + "0" * 4300,
    str(2**64), str(2**64 + 1), "18446744073709551615", "1e999", "-1e999", "0.0", "1.5", "007",
    "1x" + "9" * 5000, "8x8x" + "1" * 50,
)  # fmt: skip
WORDS = (
    *(op.mnemonic for op in OPS), ".const", ".sram", ".dram", ".data", ".input", ".output",
    ".data_base", ".config_hash", "sizeof", "int8", "uint8", "int16", "int32", "file", "hex",
    "scale", "zp", "align", "at", "none", "mac", "itp", "dma_in", "dma_out", "@", "=", ",", "..",
    "[", "]", "(", ")", "-", "*", "/", "%", "+", "\\\n", "\n", ";", '"', "\t",
)  # fmt: skip


def _seeds() -> list[tuple[str, Path]]:
    seeds = [(p.read_text(encoding="utf-8"), EXAMPLES) for p in sorted(EXAMPLES.glob("*.s"))]
    return [*seeds, (DIRECTIVES_ONLY, EXAMPLES)]


def _deep(rng: random.Random) -> str:
    depth = rng.choice((MAX_EXPR_DEPTH - 1, MAX_EXPR_DEPTH + 1, 1000, 3000))
    return rng.choice(
        (
            "-" * depth + "1",
            "(" * depth + "1" + ")" * depth,
            "1" + "+1" * depth,
            "2" + "*2" * depth,
            "-(" * depth + "1" + ")" * depth,
        )
    )


def const_chain(rng: random.Random, length: int) -> str:
    """``.const G0 = <big>`` then each line squares (or cubes) the previous constant."""
    lines = [f".const G0 = {rng.randint(2, 10**12)}"]
    for i in range(1, length):
        power = rng.choice((2, 3))
        lines.append(f".const G{i} = " + "*".join([f"G{i - 1}"] * power))
    return "\n".join(lines) + "\n"


def mutate_text(rng: random.Random, text: str) -> str:
    """One grammar-aware mutation of assembly ``text``."""
    tokens = [(m.start(), m.end()) for m in TOKEN.finditer(text)]
    if not tokens:
        return text + rng.choice(WORDS)
    start, end = rng.choice(tokens)
    tok = text[start:end]
    kind = rng.randrange(9)
    if kind == 0 or (kind == 1 and tok[0].isdigit()):  # a literal becomes a malformed/huge one
        return text[:start] + rng.choice(BAD_LITERALS) + text[end:]
    if kind == 1:
        return text[:start] + rng.choice(WORDS) + text[end:]
    if kind == 2:
        return text[:start] + text[end:]
    if kind == 3:
        return text[:end] + rng.choice((" ", "")) + tok * rng.randint(1, 3) + text[end:]
    if kind == 4:
        other = text[slice(*rng.choice(tokens))]
        return text[:start] + other + text[end:]
    if kind == 5:
        return text[:start] + _deep(rng) + text[end:]
    if kind == 6:
        return const_chain(rng, rng.randint(2, 40)) + text
    if kind == 7:
        lines = text.splitlines(keepends=True)
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        return "".join([*lines[:i], lines[j], *lines[i:]])
    return mutate_bytes(rng, text.encode("utf-8")).decode("utf-8", errors="replace")


def _assemble_and_round_trip(text: str, base: Path) -> None:
    program = assemble(text, hw=NPU_M, source="fuzz.s", base_dir=base)
    data = program.to_bytes()
    assert Program.from_bytes(data, hw=NPU_M) == program
    assert assemble(disassemble(program), hw=NPU_M).to_bytes() == data


def fuzz_assembler(cases: int, seed: int, tmp_path: Path) -> Tally:
    rng = random.Random(seed)
    tally = Tally(f"asm (seed {seed})")
    seeds = _seeds()
    for text, base in seeds:  # the seeds themselves must assemble
        assert (
            tally.run("seed", text, lambda t=text, b=base: _assemble_and_round_trip(t, b)) == "ok"
        )
    for i in range(cases):
        text, base = rng.choice(seeds)
        for _ in range(rng.randint(1, 3)):
            text = mutate_text(rng, text)
        if i % 10 == 0:  # through a file: bytes that are not UTF-8, and the .npy paths
            path = tmp_path / "fuzz.s"
            path.write_bytes(mutate_bytes(rng, text.encode("utf-8")))
            tally.run("file", text, lambda p=path: assemble_file(p, hw=NPU_M))
        else:
            tally.run("text", text, lambda t=text, b=base: _assemble_and_round_trip(t, b))
    return tally


def test_fuzz_assembler_short(tmp_path: Path) -> None:
    tally = fuzz_assembler(300, seed=1, tmp_path=tmp_path)
    tally.check()
    assert tally.outcomes["ok"] > len(_seeds())  # some mutants still assemble
    assert tally.outcomes["InvalidInputError"] > 0


@pytest.mark.slow
def test_fuzz_assembler_long(tmp_path: Path) -> None:
    fuzz_assembler(6000, seed=2, tmp_path=tmp_path).check()


# ----------------------------------------------------------------------------- handed kinds


def _fails(text: str, message: str) -> InvalidInputError:
    with time_bound(60.0), pytest.raises(InvalidInputError, match=message) as info:
        assemble(text, hw=NPU_M, source="gen.s")
    assert len(info.value.message) < 300 and len(info.value.hint or "") < 600
    return info.value


@pytest.mark.parametrize("literal", ["0x_", "0X_", "0x__", "0x_1", "0x1_", "1_", "1__2"])
def test_malformed_literals(literal: str) -> None:
    _fails(f".const A = {literal}\nend\n", "malformed integer literal")


@pytest.mark.parametrize("digits", [MAX_LITERAL_DIGITS + 1, 4301, 25_000])
@pytest.mark.parametrize("form", ["{d}", "0x{d}", ".sram a {d}", "k={d}x3"])
def test_literals_beyond_the_digit_bound(digits: int, form: str) -> None:
    literal = "1" + "0" * (digits - 1)
    body = form.format(d=literal)
    text = f"{body}\nend\n" if body.startswith(".") else f".const A = {body}\nend\n"
    if body.startswith("k="):
        text = f"conv {body}\nend\n"
    _fails(text, rf"has {digits} digits; at most {MAX_LITERAL_DIGITS}")


@pytest.mark.parametrize("length", [3, 8, 40])
def test_exploding_const_chains_stop_at_the_value_bound(length: int) -> None:
    rng = random.Random(length)
    _fails(const_chain(rng, length) + "end\n", r"beyond 2\*\*64")


@pytest.mark.parametrize(
    "scale",
    ["1e999", "99999999999999999999", "18446744073709551616*2", "10" + "*10" * 30, "1/0"],
)
def test_huge_scale(scale: str) -> None:
    _fails(f".input x int8 [1] scale={scale}\nend\n", "scale|2\\*\\*64|division")


@pytest.mark.parametrize("depth", [MAX_EXPR_DEPTH + 1, 1000, 50_000])
@pytest.mark.parametrize("form", ["unary minus", "parenthesised minus", "sum chain"])
def test_deep_expressions(depth: int, form: str) -> None:
    expr = {
        "unary minus": "-" * depth + "1",
        "parenthesised minus": "-(" * depth + "1" + ")" * depth,
        "sum chain": "1" + "+1" * depth,
    }[form]
    _fails(f".const A = {expr}\nend\n", f"deeper than {MAX_EXPR_DEPTH}")


def test_handed_kinds_exit_3_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sources = {
        "hex.s": ".const A = 0x_\nend\n",
        "digits.s": ".const A = " + "7" * 4301 + "\nend\n",
        "depth.s": ".const A = " + "-" * 1000 + "1\nend\n",
        "chain.s": const_chain(random.Random(0), 25) + "end\n",
        "scale.s": ".input x int8 [1] scale=" + "9" * 39 + "\nend\n",
    }
    for name, text in sources.items():
        (tmp_path / name).write_text(text)
        with time_bound(20.0):
            code = main(["asm", str(tmp_path / name), "-o", str(tmp_path / "out.npub")])
        err = capsys.readouterr().err
        assert code == 3, (name, err)
        assert err.startswith("error: ") and "Traceback" not in err
