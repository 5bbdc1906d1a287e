"""Opening a damaged ``.npuc``: every kind of corruption is npuc's own error, never zlib's."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from npuc.core.errors import InvalidInputError
from npuc.core.npu_artifact import FORMAT, FORMAT_VERSION, open_artifact, write_zip


def test_corrupt_compressed_member_is_an_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "m.npuc"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", '{"format": "x"}' + " " * 4000)
    data = bytearray(path.read_bytes())
    start = data.index(b"manifest.json") + len("manifest.json")
    for offset in range(start, start + 8):
        data[offset] ^= 0xFF  # inside the deflate stream, before its CRC is checked
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match=r"m\.npuc: not an npuc artifact .*decompress"):
        open_artifact(path)


def test_write_zip_stores_the_npuq_and_deflates_the_rest() -> None:
    members = {"model.npuq": b"PK" + bytes(range(256)) * 64, "manifest.json": b"{}" * 500}
    data = write_zip(members)
    assert write_zip(dict(reversed(members.items()))) == data
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        kinds = {info.filename: info.compress_type for info in zf.infolist()}
        assert {name: zf.read(name) for name in kinds} == members
    assert kinds == {"manifest.json": zipfile.ZIP_DEFLATED, "model.npuq": zipfile.ZIP_STORED}


def test_previous_format_version_asks_for_a_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "old.npuc"
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION - 1}
    path.write_bytes(write_zip({"manifest.json": json.dumps(manifest).encode()}))
    with pytest.raises(
        InvalidInputError, match=rf"old\.npuc: .* version {FORMAT_VERSION - 1}"
    ) as err:
        open_artifact(path)
    assert "rebuild" in str(err.value.hint)


@pytest.mark.parametrize("manifest", ["[]", "3", '"npuc"', "null"])
def test_manifest_that_is_not_an_object_is_refused(tmp_path: Path, manifest: str) -> None:
    path = tmp_path / "m.npuc"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", manifest)
    with pytest.raises(InvalidInputError, match=r"manifest\.json is not a JSON object"):
        open_artifact(path)
