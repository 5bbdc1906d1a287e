"""Opening a damaged ``.npuc``: every kind of corruption is npuc's own error, never zlib's."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from npuc.core.errors import InvalidInputError
from npuc.core.npu_artifact import open_artifact


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
