""".npuq format 2: the Relax module's constants as stored ``relax/<i>.npy`` members."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable

import numpy as np
import pytest
import tvm

from npuc.core.errors import InvalidInputError
from npuc.midend.quantize.float_exec import FloatExecutor
from npuc.midend.quantize.relax_constants import split_constants
from npuc.midend.quantize.serialize import from_bytes, to_bytes

from .tiny_model import samples, tiny_quantized

Edit = Callable[[str, bytes], bytes | None]


def _rewrite(data: bytes, edit: Edit) -> bytes:
    """``data`` with each member replaced by ``edit(name, content)`` (``None`` drops it)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = edit(info.filename, src.read(info))
            if content is not None:
                dst.writestr(info, content)
    return out.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def test_module_round_trip_is_structurally_equal_and_runs_the_same() -> None:
    model = tiny_quantized(8)
    data = to_bytes(model)
    loaded = from_bytes(data, "m.npuq")
    tvm.ir.assert_structural_equal(loaded.graph.relax_module, model.graph.relax_module)
    feeds = next(samples(1, seed=3))
    want = FloatExecutor(model.graph).run(feeds)
    got = FloatExecutor(loaded.graph).run(feeds)
    assert set(got) == set(want)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, strict=True)
    assert to_bytes(loaded) == data


def test_constants_are_stored_members_not_json() -> None:
    model = tiny_quantized(8)
    _, constants = split_constants(model.graph.relax_module)
    assert constants, "the tiny model has weights"
    with zipfile.ZipFile(io.BytesIO(to_bytes(model))) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        entries = manifest["relax_constants"]
        assert [e["member"] for e in entries] == [f"relax/{i}.npy" for i in range(len(constants))]
        for entry, array in zip(entries, constants, strict=True):
            info = archive.getinfo(entry["member"])
            assert info.compress_type == zipfile.ZIP_STORED
            assert (tuple(entry["shape"]), entry["dtype"]) == (array.shape, str(array.dtype))
            stored = np.load(io.BytesIO(archive.read(info)), allow_pickle=False)
            np.testing.assert_array_equal(stored, array, strict=True)
        stored_module = tvm.ir.load_json(archive.read("relax.json").decode())
    _, placeholders = split_constants(stored_module)
    assert [p.item() for p in placeholders] == list(range(len(constants)))
    assert all(p.shape == () and p.dtype == np.int64 for p in placeholders)


def _largest_member(data: bytes) -> tuple[str, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = json.loads(archive.read("manifest.json"))["relax_constants"]
        arrays = {
            e["member"]: np.load(io.BytesIO(archive.read(e["member"])), allow_pickle=False)
            for e in entries
        }
    name = max(sorted(arrays), key=lambda n: arrays[n].size)
    return name, arrays[name]


def test_missing_constant_member_is_named() -> None:
    data = to_bytes(tiny_quantized(8))
    member, _ = _largest_member(data)
    bad = _rewrite(data, lambda name, content: None if name == member else content)
    with pytest.raises(InvalidInputError, match=rf"m\.npuq: member {member} is missing"):
        from_bytes(bad, "m.npuq")


@pytest.mark.parametrize("change", ["shape", "dtype"])
def test_wrong_constant_is_named(change: str) -> None:
    data = to_bytes(tiny_quantized(8))
    member, array = _largest_member(data)
    wrong = array.reshape(-1) if change == "shape" else array.astype(np.float64)

    def edit(name: str, content: bytes) -> bytes:
        return _npy(wrong) if name == member else content

    with pytest.raises(InvalidInputError, match=rf"m\.npuq: member {member} holds") as err:
        from_bytes(_rewrite(data, edit), "m.npuq")
    assert str(array.shape) in str(err.value) and str(array.dtype) in str(err.value)


def test_manifest_and_placeholder_types_are_both_checked() -> None:
    """A member rewritten together with its manifest entry still disagrees with the module."""
    data = to_bytes(tiny_quantized(8))
    member, array = _largest_member(data)
    wrong = array.reshape(-1)

    def edit(name: str, content: bytes) -> bytes:
        if name == member:
            return _npy(wrong)
        if name == "manifest.json":
            manifest = json.loads(content)
            for entry in manifest["relax_constants"]:
                if entry["member"] == member:
                    entry["shape"] = list(wrong.shape)
            return json.dumps(manifest).encode()
        return content

    with pytest.raises(InvalidInputError, match=rf"member {member} holds shape \({wrong.size},\)"):
        from_bytes(_rewrite(data, edit), "m.npuq")


def test_version_1_file_asks_for_a_rebuild() -> None:
    def edit(name: str, content: bytes) -> bytes:
        if name != "manifest.json":
            return content
        manifest = json.loads(content)
        manifest["version"] = 1
        del manifest["relax_constants"]
        return json.dumps(manifest).encode()

    with pytest.raises(InvalidInputError, match=r"version 1; this npuc reads .* version 2") as err:
        from_bytes(_rewrite(to_bytes(tiny_quantized(8)), edit), "old.npuq")
    assert "rebuild" in str(err.value.hint)
