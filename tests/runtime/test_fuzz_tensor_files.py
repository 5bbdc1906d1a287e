"""Fuzzing ``--input`` files: every mutated .npy/.npz gives the input or npuc's own error.

Seeds are arrays saved with numpy (the model's shape and dtype, and others)
as ``.npy`` and ``.npz`` (stored and compressed). Mutations rewrite the
``.npy`` header (shapes with 2**40 elements, negative or non-integer
dimensions, object/void/string/big-endian dtypes, bad ``fortran_order``,
versions, header lengths), cut or flip bytes, swap formats (a zip named
``.npy``, a ``.npy`` named ``.npz``) and corrupt archive members. A case that
loads must give exactly the declared shape and dtype.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from npuc.cli.main import main
from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import NPU_M
from npuc.core.isa.builder import ProgramBuilder
from npuc.core.model_info import ModelInfo, TensorInfo
from npuc.runtime.tensor_files import read_input_files
from tests.tooling.fuzz import Tally, mutate_bytes, time_bound

SHAPE = (1, 4, 4, 2)
INFO = ModelInfo(
    source_path="m.onnx",
    source_format="onnx",
    source_sha256="",
    inputs=(
        TensorInfo(name="x", shape=SHAPE, dtype="float32"),
        TensorInfo(name="ids", shape=("batch", 3), dtype="int64"),  # symbolic: any batch
    ),
    outputs=(),
)
SHAPES = (
    "(1099511627776,)", "(1, 4, 4, 2)", "(2, 4, 4, 2)", "(-1, 4, 4, 2)", "()", "(0,)",
    "(1.5, 4)", "('a',)", "(1, 4, 4, 2, 1)", "(2**40,)", "[1, 4, 4, 2]", "None", "(1, 4, 4, 2",
    "(4294967296, 4294967296)", "(9" + "9" * 50 + ",)", "(1099511627776, 3)", "(-1, 3)",
    "(-5, -3)", "(0, 3)", "(5, 3)", "(2, 3)",
)  # fmt: skip
DESCRS = (
    "'<f4'", "'<i8'", "'|O'", "'|V0'", "'<U0'", "'>f4'", "'xx'", "'<f4'*2", "[('a', '<f4')]",
    "('<f4', (2,))", "'|b1'", "'<c16'", "'<M8[s]'", "1", "None", "{}",
)  # fmt: skip


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def npz_bytes(arrays: dict[str, np.ndarray], compressed: bool) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def with_header(data: bytes, header: str, version: bytes = b"\x01\x00") -> bytes:
    """``data``'s array bytes (all of it if not a .npy 1.0) behind a new header text."""
    body = data
    if data.startswith(b"\x93NUMPY\x01") and len(data) >= 10:
        body = data[10 + struct.unpack("<H", data[8:10])[0] :]
    text = header.encode("latin1", errors="replace")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    size = struct.pack("<H", len(text)) if version[0] == 1 else struct.pack("<I", len(text))
    return b"\x93NUMPY" + version + size + text + body


def mutate_header(rng: random.Random, data: bytes) -> bytes:
    descr, shape = rng.choice(DESCRS), rng.choice(SHAPES)
    order = rng.choice(("False", "True", "1", "'x'"))
    if rng.random() < 0.5:
        descr = rng.choice(("'<f4'", "'<i8'"))  # the inputs' own dtypes: reach the data
    header = f"{{'descr': {descr}, 'fortran_order': {order}, 'shape': {shape}, }}"
    if rng.random() < 0.2:
        header = rng.choice(("{}", "[]", "{'descr': '<f4'}", header[:-3], header + "'extra': 1}"))
    version = rng.choice((b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x09\x00"))
    return with_header(data, header, version)


def seeds() -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    ids = rng.integers(0, 100, (5, 3))
    out = [
        (".npy", npy_bytes(x)),
        (".npy", npy_bytes(np.asfortranarray(x))),
        (".npy", npy_bytes(x.astype(np.float64))),
        (".npz", npz_bytes({"x": x, "ids": ids}, compressed=False)),
        (".npz", npz_bytes({"x": x, "ids": ids}, compressed=True)),
        (".npz", npz_bytes({"x": x}, compressed=True)),
    ]
    return out


def mutate_file(rng: random.Random, suffix: str, data: bytes) -> tuple[str, bytes]:
    kind = rng.randrange(6)
    if kind == 0 and suffix == ".npy":
        return suffix, mutate_header(rng, data)
    if kind == 1:  # the other format's name
        return (".npz" if suffix == ".npy" else ".npy"), data
    if kind == 2 and suffix == ".npz":  # a corrupt or lying archive member
        inner = mutate_header(rng, npy_bytes(np.zeros(SHAPE, np.float32)))
        if rng.random() < 0.5:
            inner = mutate_bytes(rng, inner)
        buf = io.BytesIO()
        method = rng.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED))
        with zipfile.ZipFile(buf, "w", method) as archive:
            archive.writestr(rng.choice(("x.npy", "x", "ids.npy", "dir/x.npy")), inner)
        return suffix, buf.getvalue()
    return suffix, mutate_bytes(rng, data)


def _read(spec: str) -> None:
    """Read one ``--input`` spec; what loads has exactly the declared shape and dtype."""
    for name, value in read_input_files([spec], INFO).items():
        tensor = INFO.input_named(name)
        assert tensor is not None and str(value.dtype) == tensor.dtype
        assert len(value.shape) == len(tensor.shape)
        pairs = zip(value.shape, tensor.shape, strict=True)
        assert all(isinstance(e, str) or e == g for g, e in pairs)


def fuzz_tensor_files(cases: int, seed: int, tmp_path: Path) -> Tally:
    rng = random.Random(seed)
    tally = Tally(f"--input .npy/.npz (seed {seed})")
    files = seeds()
    for i in range(cases + len(files)):
        suffix, data = files[i] if i < len(files) else rng.choice(files)
        if i >= len(files):
            for _ in range(rng.randint(1, 2)):
                suffix, data = mutate_file(rng, suffix, data)
        path = tmp_path / f"case{suffix}"
        path.write_bytes(data)
        spec = rng.choice((f"x={path}", str(path), f"ids={path}"))
        tally.run(suffix, data, lambda s=spec: _read(s))
    return tally


def test_fuzz_tensor_files_short(tmp_path: Path) -> None:
    tally = fuzz_tensor_files(1500, seed=1, tmp_path=tmp_path)
    tally.check()
    assert tally.outcomes["ok"] > 0 and tally.outcomes["InvalidInputError"] > 0


@pytest.mark.slow
def test_fuzz_tensor_files_long(tmp_path: Path) -> None:
    fuzz_tensor_files(40_000, seed=2, tmp_path=tmp_path).check()


# ----------------------------------------------------------------------------- handed kinds


@pytest.mark.parametrize("elements", [2**40, 2**33 + 1, 10**30])
@pytest.mark.parametrize("name", ["x", "ids"])
def test_header_claiming_a_huge_array_reads_nothing(
    tmp_path: Path, elements: int, name: str
) -> None:
    """Refused from the header (shape, or bytes missing for a symbolic batch), no MemoryError."""
    dtype = "<f4" if name == "x" else "<i8"
    shape = f"({elements},)" if name == "x" else f"({elements}, 3)"
    data = with_header(npy_bytes(np.zeros(4, np.float32)), f"{{'descr': '{dtype}', "
                       f"'fortran_order': False, 'shape': {shape}, }}")  # fmt: skip
    path = tmp_path / "big.npy"
    path.write_bytes(data)
    want = "expected shape" if name == "x" else "truncated"
    with time_bound(10.0), pytest.raises(InvalidInputError, match=rf"big\.npy.*{want}|{want}.*big"):
        read_input_files([f"{name}={path}"], INFO)


@pytest.mark.parametrize(
    "content",
    [b"PK\x03\x04not-a-zip", npz_bytes({"x": np.zeros(SHAPE, np.float32)}, compressed=False)],
    ids=["zip-magic-junk", "real-npz"],
)
def test_zip_named_npy(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=r"x\.npy: .*zip archive: name it \.npz"):
        read_input_files([f"x={path}"], INFO)


@pytest.mark.parametrize("shape", ["(-1, 3)", "(-2, -3)", "(2, -3)"])
def test_negative_dimensions(tmp_path: Path, shape: str) -> None:
    path = tmp_path / "ids.npy"
    header = f"{{'descr': '<i8', 'fortran_order': False, 'shape': {shape}, }}"
    path.write_bytes(with_header(npy_bytes(np.zeros(6, np.int64)), header))
    with pytest.raises(InvalidInputError, match=r"ids\.npy: .*negative dimension|expected shape"):
        read_input_files([f"ids={path}"], INFO)


def test_truncated_and_wrong_dtype(tmp_path: Path) -> None:
    good = npy_bytes(np.zeros(SHAPE, np.float32))
    path = tmp_path / "x.npy"
    path.write_bytes(good[:-5])
    with pytest.raises(InvalidInputError, match=r"x\.npy: truncated"):
        read_input_files([f"x={path}"], INFO)
    path.write_bytes(npy_bytes(np.zeros(SHAPE, np.float64)))
    with pytest.raises(InvalidInputError, match=r"expected dtype float32, got float64"):
        read_input_files([f"x={path}"], INFO)
    path.write_bytes(with_header(good, "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"))
    with pytest.raises(InvalidInputError, match="Python objects"):
        read_input_files([f"x={path}"], INFO)


def test_handed_kinds_exit_3_through_sim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    b = ProgramBuilder(NPU_M)
    b.input("x", (1, 1, 1, 1), "int8", scale=1.0)
    program = tmp_path / "p.npub"
    b.build().save(program)
    header = "{'descr': '|i1', 'fortran_order': False, 'shape': (1099511627776,), }"
    huge = with_header(npy_bytes(np.zeros(4, np.int8)), header)
    files = {"huge.npy": huge, "zip.npy": b"PK\x03\x04junk", "cut.npy": npy_bytes(np.zeros(9))[:70]}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with time_bound(20.0):
            code = main(["sim", str(program), "--input", f"x={tmp_path / name}"])
        err = capsys.readouterr().err
        assert code == 3 and name in err and "Traceback" not in err, err
