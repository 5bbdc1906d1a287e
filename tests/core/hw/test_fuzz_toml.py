"""Fuzzing the hardware-config TOML loader: every mutant loads or fails with npuc's own error.

Seeds are the presets written out as TOML (every field, and a ``preset =``
with a few overrides). Mutations swap values for other TOML types and sizes
(strings, floats, arrays, tables, dates, integers with thousands of digits),
break keys and tables, and flip, insert or cut bytes. The handed kind (an
integer over Python's 4,300-digit limit) is reproduced for every field.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from npuc.cli.main import main
from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import PRESETS, HwConfig, load_hw_config
from tests.tooling.fuzz import INTERESTING_INTS, Tally, mutate_bytes, time_bound

FIELDS = [f.name for f in dataclasses.fields(HwConfig)]
VALUES = (
    '"npu-x"', '""', '"' + "x" * 100 + '"', "1.5", "-0.0", "inf", "nan", "true", "false", "[]",
    "[1, 2]", '["a"]', "{}", "{ a = 1 }", "1979-05-27", "07:32:00", "1979-05-27T07:32:00Z",
    "0x10", "0o17", "0b101", "1_000", "+1", "-1", "0", "9" * 4301, "9" * 20_000, "-" + "1" * 5000,
    "1" + "0" * 200, '"""multi"""', "'lit'", "[[1]]", "[" * 50 + "1" + "]" * 50,
    *(str(v) for v in INTERESTING_INTS),
)  # fmt: skip


def to_toml(config: HwConfig) -> str:
    return "".join(
        f'{k} = "{v}"\n' if isinstance(v, str) else f"{k} = {v}\n"
        for k, v in config.to_dict().items()
    )


def seeds() -> list[str]:
    texts = [to_toml(c) for c in PRESETS.values()]
    texts.append('preset = "npu-l"\nsram_bytes = 2097152\nname = "mine"\n')
    texts.append("# only a comment\n")
    return texts


def mutate_toml(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    kind = rng.randrange(7)
    i = rng.randrange(len(lines)) if lines else 0
    if lines and kind <= 2:  # a value of another type or size
        key = lines[i].partition("=")[0].strip() or rng.choice(FIELDS)
        lines[i] = f"{key} = {rng.choice(VALUES)}"
    elif kind == 3:  # an unknown, repeated, dotted or quoted key
        lines.insert(i, rng.choice((f"{rng.choice(FIELDS)} = 1", "a.b = 1", '"x y" = 2', "z = 3")))
    elif kind == 4:  # tables
        lines.insert(i, rng.choice(("[hw]", "[[hw]]", "[", "[preset]", f"[{rng.choice(FIELDS)}]")))
    elif kind == 5:
        lines.insert(i, "preset = " + rng.choice(('"npu-s"', '"npu-q"', "1", "[]")))
    else:
        return mutate_bytes(rng, text.encode("utf-8")).decode("utf-8", errors="replace")
    return "\n".join(lines) + "\n"


def fuzz_toml(cases: int, seed: int, tmp_path: Path) -> Tally:
    rng = random.Random(seed)
    tally = Tally(f"hw TOML (seed {seed})")
    path = tmp_path / "hw.toml"
    texts = seeds()
    for text in texts:
        path.write_text(text)
        assert tally.run("seed", text, lambda: load_hw_config(path)) == "ok"
    for _ in range(cases):
        text = rng.choice(texts)
        for _ in range(rng.randint(1, 3)):
            text = mutate_toml(rng, text)
        data = text.encode("utf-8")
        if rng.random() < 0.1:
            data = mutate_bytes(rng, data)  # maybe not UTF-8 any more
        path.write_bytes(data)
        tally.run("toml", data, lambda: load_hw_config(path))
    return tally


def test_fuzz_toml_short(tmp_path: Path) -> None:
    tally = fuzz_toml(1000, seed=1, tmp_path=tmp_path)
    tally.check()
    assert tally.outcomes["ok"] > len(seeds()) and tally.outcomes["InvalidInputError"] > 0


@pytest.mark.slow
def test_fuzz_toml_long(tmp_path: Path) -> None:
    fuzz_toml(40_000, seed=2, tmp_path=tmp_path).check()


# ----------------------------------------------------------------------------- handed kinds


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("digits", [4301, 12_000, 100, 21])
def test_huge_integers_in_every_field(tmp_path: Path, field: str, digits: int) -> None:
    path = tmp_path / "hw.toml"
    path.write_text(f"{field} = {'9' * digits}\n")
    with time_bound(10.0), pytest.raises(InvalidInputError) as info:
        load_hw_config(path)
    assert str(path) in info.value.message
    assert len(info.value.message) < 200  # the value itself is never printed in full


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", ["1.5", '"8"', "[1]", "{ a = 1 }", "true", "1979-05-27"])
def test_wrong_types_name_the_field(tmp_path: Path, field: str, value: str) -> None:
    if field == "name" and value.startswith('"'):
        return  # a string is the right type for the name
    path = tmp_path / "hw.toml"
    path.write_text(f"{field} = {value}\n")
    with pytest.raises(InvalidInputError, match=rf"{path}: hardware config field {field}"):
        load_hw_config(path)


def test_huge_integer_exits_3_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hw.toml"
    path.write_text("sram_bytes = " + "1" + "0" * 4300 + "\n")
    program = tmp_path / "p.npub"
    program.write_bytes(b"")
    for argv in (
        ["sim", str(program), "--hw", str(path)],
        ["asm", str(program), "--hw", str(path)],
    ):
        assert main(argv) == 3
        err = capsys.readouterr().err
        assert "hw.toml" in err and "Traceback" not in err
