"""The CPU regions of a ``.npuc`` artifact: what the manifest records and the loader checks.

A CPU region is a maximal run of layers the NPU does not run, between NPU
partitions in execution order. The build lowers each one to a Relax function
and compiles it for the host CPU through the LLVM path; the artifact stores the
native library as ``cpu/<region>.so`` and describes it in the manifest's
``cpu_regions`` list (one :class:`CpuRegionEntry` each): the layers, the
interface (tensor names, shapes, dtypes: integer tensors as stored integers,
float tensors as float32), the library member, its SHA-256, the
:class:`~npuc.core.target.CpuTarget` it was built for, the TVM version, and,
for a region that was not compiled, the reason (its layers then run on the
integer executor, layer by layer).

The backend writes these entries and the runtime reads them; the format lives
in the core, below both. :func:`check_library` is the loader's validation.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.core.target import CpuTarget

if TYPE_CHECKING:
    import tvm

REBUILD_HINT = "rebuild the artifact on this machine: npuc build MODEL --target npu ..."


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorSpec:
    """One tensor of a region's interface: name, static shape, numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(
            name=str(data["name"]),
            shape=tuple(int(d) for d in data["shape"]),
            dtype=str(np.dtype(str(data["dtype"]))),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuRegionEntry:
    """One CPU region as the manifest records it.

    ``library`` is the zip member (``cpu/<name>.so``) or ``None`` when the region
    was not compiled; then ``fallback_reason`` says why and ``inputs``,
    ``outputs``, ``sha256`` and ``target`` are empty.
    """

    name: str
    layers: tuple[str, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    library: str | None
    sha256: str
    target: CpuTarget | None
    tvm_version: str
    fallback_reason: str | None

    @property
    def compiled(self) -> bool:
        return self.library is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layers": list(self.layers),
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "library": self.library,
            "sha256": self.sha256,
            "target": None if self.target is None else self.target.to_json(),
            "tvm_version": self.tvm_version,
            "fallback_reason": self.fallback_reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> CpuRegionEntry:
        """Parse one manifest entry; InvalidInputError naming ``where`` if it is malformed."""
        try:
            target = data["target"]
            entry = cls(
                name=str(data["name"]),
                layers=tuple(str(n) for n in data["layers"]),
                inputs=tuple(TensorSpec.from_json(t) for t in data["inputs"]),
                outputs=tuple(TensorSpec.from_json(t) for t in data["outputs"]),
                library=None if data["library"] is None else str(data["library"]),
                sha256=str(data["sha256"]),
                target=None if target is None else CpuTarget.from_json(dict(target)),
                tvm_version=str(data["tvm_version"]),
                fallback_reason=(
                    None if data["fallback_reason"] is None else str(data["fallback_reason"])
                ),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidInputError(
                f"{where}: manifest cpu_regions entry is malformed ({err!r})", hint=REBUILD_HINT
            ) from err
        if entry.compiled == (entry.fallback_reason is not None) or (
            entry.compiled and entry.target is None
        ):
            raise InvalidInputError(
                f"{where}: CPU region {entry.name!r} must have either a library with its "
                "target or a fallback reason",
                hint=REBUILD_HINT,
            )
        return entry


def check_library(
    entry: CpuRegionEntry, data: bytes, host: CpuTarget, tvm_version: str, where: str
) -> None:
    """Check a region's library bytes before loading them.

    Raises
    ------
    InvalidInputError
        The SHA-256 differs from the manifest's (damaged or tampered file), the
        library needs CPU features ``host`` lacks, or it was built by another
        TVM version (its runtime ABI may differ); each says to rebuild.
    """
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise InvalidInputError(
            f"{where}: CPU region {entry.name!r}: library {entry.library} has SHA-256 "
            f"{digest[:16]}..., the manifest records {entry.sha256[:16]}...; the file is "
            "damaged or was modified",
            hint=REBUILD_HINT,
        )
    assert entry.target is not None
    missing = sorted(set(entry.target.features) - set(host.features))
    if missing:
        raise InvalidInputError(
            f"{where}: CPU region {entry.name!r} was compiled for a {entry.target.cpu_name} "
            f"CPU and needs features this machine ({host.cpu_name}) lacks: "
            f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}",
            hint=REBUILD_HINT,
        )
    if entry.tvm_version != tvm_version:
        raise InvalidInputError(
            f"{where}: CPU region {entry.name!r} was compiled with TVM {entry.tvm_version}, "
            f"this runtime has TVM {tvm_version}",
            hint=REBUILD_HINT,
        )


def region_arguments(
    entry: CpuRegionEntry, values: Mapping[str, np.ndarray], where: str
) -> list[np.ndarray]:
    """The region's input arrays in parameter order, cast to the interface's dtypes.

    ``values``: each input's array (stored integers for integer tensors).

    Raises
    ------
    InvalidInputError
        An input is missing or has another shape than the interface records.
    """
    args = []
    for spec in entry.inputs:
        if spec.name not in values:
            raise InvalidInputError(f"{where}: CPU region {entry.name!r}: no value for {spec.name}")
        value = np.asarray(values[spec.name])
        if tuple(value.shape) != spec.shape:
            raise InvalidInputError(
                f"{where}: CPU region {entry.name!r} input {spec.name!r}: shape "
                f"{tuple(value.shape)}, the library takes {spec.shape}"
            )
        args.append(np.ascontiguousarray(value.astype(spec.dtype, copy=False)))
    return args


def summary_lines(entries: Sequence[CpuRegionEntry]) -> list[str]:
    """``CPU regions: 2 compiled (LLVM), 1 on the integer executor`` and one indented line
    per region left on the integer executor, with its reason (empty without CPU layers)."""
    if not entries:
        return []
    fallback = [e for e in entries if e.library is None]
    lines = [
        f"CPU regions: {len(entries) - len(fallback)} compiled (LLVM), "
        f"{len(fallback)} on the integer executor"
    ]
    lines += [
        f"  {e.name} ({len(e.layers)} layer(s) from {e.layers[0]}): {e.fallback_reason}"
        for e in fallback
    ]
    return lines


#: A compiled region's float outputs agree with the integer executor's float32 within
#: this fraction of the tensor's largest magnitude (at least 1): LLVM contracts
#: ``a * b + c`` into FMA for the host CPU and evaluates exp/tanh with its own
#: polynomials, so results differ from numpy's by a few float32 ulps (measured up to
#: 2.4e-7 relative on layer norm, softmax and matmul). Integer outputs must be equal.
FLOAT_TOLERANCE = 1e-5


def output_difference(name: str, got: np.ndarray, want: np.ndarray) -> str | None:
    """How ``got`` differs from the integer executor's ``want``, in words, or None.

    Float tensors may differ by :data:`FLOAT_TOLERANCE` of their magnitude (NaN
    only where ``want`` has NaN); any other tensor must be equal element for element.
    """
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"{name}: shape {got.shape}, the integer executor's is {want.shape}"
    if np.issubdtype(want.dtype, np.floating):
        a, b = got.astype(np.float64), want.astype(np.float64)
        finite = np.isfinite(b)
        scale = max(1.0, float(np.abs(b[finite]).max(initial=0.0)))
        diff = np.where(finite, np.abs(a - b), np.where(np.isnan(b), 0.0, np.inf))
        bad = (diff > FLOAT_TOLERANCE * scale) | (np.isnan(a) & ~np.isnan(b))
        bad |= ~finite & ~np.isnan(b) & (a != b)
        if not bad.any():
            return None
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        return (
            f"{name}: {int(bad.sum())} of {bad.size} float values differ by more than "
            f"{FLOAT_TOLERANCE:g} x {scale:.3g}; first at {where}: {a[where]!r} vs {b[where]!r}"
        )
    bad = got.astype(np.int64) != want.astype(np.int64)
    if not bad.any():
        return None
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    return (
        f"{name}: {int(bad.sum())} of {bad.size} values differ; first at {where}: "
        f"{got[where]} vs {want[where]}"
    )


def load_library(
    data: bytes, where: str, name: str, folder: str | os.PathLike[str] | None = None
) -> tvm.runtime.Module:
    """``dlopen`` a region's library bytes through a private temporary file in ``folder``
    (default the system temp folder), removed once loaded (a loaded file is never
    rewritten in place, which would crash the process).

    Raises
    ------
    InvalidInputError
        TVM cannot load it (naming ``where`` and region ``name``; says to rebuild).
    """
    import tvm

    problem = elf_problem(data)
    if problem:  # dlopen of a damaged file can crash the process (SIGBUS) instead of failing
        raise InvalidInputError(
            f"{where}: CPU region {name!r}: its library is not a whole shared library ({problem})",
            hint=REBUILD_HINT,
        )
    fd, path = tempfile.mkstemp(prefix="npuc-region-", suffix=".so", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return tvm.runtime.load_module(path)
    except Exception as err:  # TVM reports dlopen failures as generic errors
        raise InvalidInputError(
            f"{where}: CPU region {name!r}: cannot load its library ({err})", hint=REBUILD_HINT
        ) from err
    finally:
        os.unlink(path)


def elf_problem(data: bytes) -> str | None:
    """What is wrong with ``data`` as a 64-bit little-endian ELF file, or ``None``.

    Checks the header, and that the program and section header tables and every
    segment's and section's file bytes lie inside the data (a truncated library passes a hash
    check made after truncation but crashes ``dlopen``). Source: the System V ABI's
    ELF-64 object file format (header fields at their standard offsets).
    """
    if len(data) < 64 or data[:4] != b"\x7fELF":
        return "no ELF header"
    if data[4] != 2 or data[5] != 1:
        return "not a 64-bit little-endian ELF file"
    phoff, shoff = struct.unpack_from("<QQ", data, 32)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 54)
    size = len(data)
    if phoff + phnum * phentsize > size or shoff + shnum * shentsize > size:
        return f"header tables past the end of its {size:,} bytes"
    for i in range(phnum):
        if phentsize < 56:
            return "program header entries too small"
        offset, _vaddr, _paddr, filesz = struct.unpack_from(
            "<QQQQ", data, phoff + i * phentsize + 8
        )
        if offset + filesz > size:
            return f"segment {i} ends past the end of its {size:,} bytes"
    for i in range(shnum):
        if shentsize < 64:
            return "section header entries too small"
        (kind,) = struct.unpack_from("<I", data, shoff + i * shentsize + 4)
        offset, length = struct.unpack_from("<QQ", data, shoff + i * shentsize + 24)
        if kind != _SHT_NOBITS and offset + length > size:
            return f"section {i} ends past the end of its {size:,} bytes"
    return None


_SHT_NOBITS = 8  # a section that occupies no file bytes (.bss)
