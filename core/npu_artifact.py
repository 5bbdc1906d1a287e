"""The ``.npuc`` artifact: one zip file holding everything to run a model on the NPU.

Members (no pickle anywhere; arrays are ``.npy`` with ``allow_pickle=False``):

- ``manifest.json``: format version, npuc version, source file name and
  sha256, hardware name, config hash and fields, build options, the layer
  placements (NPU partition or CPU, and why), the partitions' border tensors;
- ``model.npuq``: the quantized model (:mod:`npuc.midend.quantize.serialize`:
  the float Relax module, every tensor's quantization and every layer's
  integer parameters), which the CPU layers and the reference engine run;
  stored, not deflated again (it compresses its own members);
- ``npu/<partition>.npub``: the compiled NPU programs; ``npu/<partition>/<const>.npy``
  the expanded constant operands fed to them;
- ``cpu/<region>.so``: each compiled CPU region's native library (host CPU, LLVM),
  described in the manifest's ``cpu_regions`` (interface, SHA-256, target, or the
  reason a region stays on the integer executor:
  :mod:`npuc.core.cpu_region_format`);
- ``golden/<i>/in/<input>.npy`` and ``golden/<i>/out/<output>.npy``: test inputs
  and the integer executor's stored-integer outputs (``npuc verify``).

Members are sorted, time-stamped 1980-01-01 and JSON is key-sorted, so the
same inputs give a byte-identical file. Loading validates the format
version and the hardware hash here; the quantized model (its layers against
its graph) is validated by the midend's reader and each program by the
simulator's loader. Written by the backend (``npuc build``), read by the
runtime (:mod:`npuc.runtime.npu_model`): the format lives below both.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import HwConfig, hw_config_from_dict
from npuc.core.isa.program import Program

FORMAT = "npuc-npu-artifact"
#: 2: compiled CPU regions (cpu/<region>.so, manifest cpu_regions);
#: 3: model.npuq of .npuq format 2 (Relax constants as .npy members), stored.
FORMAT_VERSION = 3
_EPOCH = (1980, 1, 1, 0, 0, 0)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def npy_load(data: bytes, where: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError) as err:
        raise InvalidInputError(f"{where}: not a valid .npy member ({err})") from err


def _safe(name: str) -> str:
    return name.replace("/", "_")


#: Deflate level 1: int8 weights barely compress, and level 6 spent 14 s of a
#: ResNet-50 build (100 MB of members) in zlib; level 1 is ~5x faster.
_ZIP_LEVEL = 1

#: Members that are zips themselves and compress their own members (the
#: ``.npuq`` deflates its JSON and int8 arrays and stores the float weights):
#: deflating them again costs seconds for a few percent.
_STORED_SUFFIXES = (".npuq",)


def write_zip(members: Mapping[str, bytes]) -> bytes:
    """A deterministic zip of ``members`` (sorted, fixed time stamps, deflated at
    level 1 except the members named in ``_STORED_SUFFIXES``, which are stored)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            if name.endswith(_STORED_SUFFIXES):
                info.compress_type = zipfile.ZIP_STORED
                zf.writestr(info, members[name])
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, members[name], compresslevel=_ZIP_LEVEL)
    return buf.getvalue()


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, sort_keys=True, indent=1) + "\n").encode()


@dataclass
class Artifact:
    """An opened ``.npuc`` file: manifest, hardware, programs, and member access."""

    path: Path
    manifest: dict[str, Any]
    hw: HwConfig
    members: dict[str, bytes]

    def read(self, name: str) -> bytes:
        if name not in self.members:
            raise InvalidInputError(f"{self.path}: member {name!r} is missing; the file is damaged")
        return self.members[name]

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError as err:
            raise InvalidInputError(f"{self.path}: {name} is not valid JSON ({err})") from err

    def programs(self) -> list[Program]:
        """Every partition's program, validated by the simulator's loader for ``hw``."""
        return [
            Program.from_bytes(self.read(f"npu/{p['name']}.npub"), hw=self.hw)
            for p in self.manifest["partitions"]
        ]

    def model_bytes(self) -> bytes:
        """The stored quantized model's bytes (``model.npuq``; read it with the midend's reader)."""
        return self.read("model.npuq")

    def golden(self) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """(inputs, expected stored-integer outputs) of each golden sample."""
        out = []
        for i in range(int(self.manifest["golden_samples"])):
            feeds = {
                n: npy_load(self.read(f"golden/{i}/in/{_safe(n)}.npy"), n)
                for n in self.manifest["inputs"]
            }
            expected = {
                n: npy_load(self.read(f"golden/{i}/out/{_safe(n)}.npy"), n)
                for n in self.manifest["outputs"]
            }
            out.append((feeds, expected))
        return out


def open_artifact(path: str | Path) -> Artifact:
    """Open and validate a ``.npuc`` file (format, version, source hash, hardware hash)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = {info.filename: zf.read(info) for info in zf.infolist()}
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        # zlib.error: a corrupt compressed member whose CRC was never reached.
        raise InvalidInputError(f"{path}: not an npuc artifact ({err})") from err
    if "manifest.json" not in members:
        raise InvalidInputError(f"{path}: no manifest.json; not an npuc artifact")
    try:
        manifest = json.loads(members["manifest.json"])
    except ValueError as err:
        raise InvalidInputError(f"{path}: manifest.json is not valid JSON ({err})") from err
    if not isinstance(manifest, dict):
        raise InvalidInputError(
            f"{path}: manifest.json is not a JSON object; not an npuc artifact",
            hint="rebuild the artifact with this npuc",
        )
    if manifest.get("format") == "npuc-quantized":
        raise InvalidInputError(
            f"{path}: a quantized model (.npuq from `npuc quantize`), not an NPU artifact (.npuc)",
            hint="build one: npuc build MODEL --target npu -o m.npuc"
            " (or compare the .npuq with its float model: npuc eval)",
        )
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise InvalidInputError(
            f"{path}: format {manifest.get('format')!r} version {manifest.get('format_version')!r};"
            f" this npuc reads {FORMAT!r} version {FORMAT_VERSION}",
            hint="rebuild the artifact with this npuc",
        )
    hw = hw_config_from_dict(dict(manifest["hw"]["fields"]), source=f"{path} manifest")
    if hw.config_hash != manifest["hw"]["hash"]:
        raise InvalidInputError(f"{path}: hardware fields do not match the recorded hash")
    return Artifact(path, manifest, hw, members)
