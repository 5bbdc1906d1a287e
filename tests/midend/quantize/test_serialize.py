""".npuq serialization: round trip bit-exact on the integer executor, same bytes, errors."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from npuc.core.errors import InvalidInputError
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.serialize import from_bytes, load_quantized, save_quantized, to_bytes

from .tiny_model import samples, tiny_quantized


@pytest.mark.parametrize("bits", [8, 16])
def test_round_trip_runs_identically(tmp_path: Path, bits: int) -> None:
    model = tiny_quantized(bits)
    path = tmp_path / "m.npuq"
    save_quantized(model, path)
    loaded = load_quantized(path)
    assert loaded.tensors == model.tensors
    assert loaded.config == model.config
    assert dict(loaded.calibration) == dict(model.calibration)
    for name, layer in model.layers.items():
        other = loaded.layers[name]
        assert (other.kind, other.run_on, other.config) == (layer.kind, layer.run_on, layer.config)
        for key, value in layer.params.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(other.params[key], value, strict=True)
            else:
                assert other.params[key] == value, (name, key)
    feeds = next(samples(1, seed=7))
    want = IntegerExecutor(model).run(feeds)
    got = IntegerExecutor(loaded).run(feeds)
    assert set(got) == set(want)
    for name, value in want.items():
        assert isinstance(value, IntTensor), name
        np.testing.assert_array_equal(got[name].values, value.values, strict=True)
    assert to_bytes(loaded) == path.read_bytes()


def test_same_model_same_bytes() -> None:
    assert to_bytes(tiny_quantized(8)) == to_bytes(tiny_quantized(8))


def test_not_a_zip() -> None:
    with pytest.raises(InvalidInputError, match=r"m\.npuq: not a readable"):
        from_bytes(b"not a zip", "m.npuq")


def test_wrong_format_version() -> None:
    data = to_bytes(tiny_quantized(8))
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = src.read(info)
            if info.filename == "manifest.json":
                manifest = json.loads(content)
                manifest["version"] = 999
                content = json.dumps(manifest).encode()
            dst.writestr(info, content)
    with pytest.raises(InvalidInputError, match="format version") as err:
        from_bytes(out.getvalue(), "old.npuq")
    assert "npuc quantize" in str(err.value.hint)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"cannot read .*gone\.npuq"):
        load_quantized(tmp_path / "gone.npuq")
