"""Build targets as values: what the compiler compiles for.

A :class:`CpuTarget` is a plain value (CPU name, enabled features, thread
count) detected once by :func:`host_target` and passed down to every stage
that needs it; nothing reads the host CPU behind the caller's back. The
schedules of the later CPU-performance work choose their kernels from
:attr:`CpuTarget.has_avx512` and :attr:`CpuTarget.has_avx512_vnni`.
Cross-compilation is out of scope: the CPU target is always this machine.

It lives in the core because the backend (which compiles for it), the
artifact format (which records it) and the runtime (which checks a library
against this machine) all need it, and none of them may import another.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import HwConfig

if TYPE_CHECKING:
    import tvm

TARGET_KINDS = ("cpu", "npu")
"""What ``npuc build --target`` accepts: :class:`CpuTarget` and :class:`NpuTarget`."""

#: Features passed to LLVM as ``mattr`` when the CPU has them: LLVM's model of the CPU
#: name may lack them (a guest can report an older model), and the int8 AMX kernels need
#: them to be compiled.
AMX_FEATURES = ("amx-int8", "amx-tile")

#: x86 SIMD features that LLVM enables from the CPU name alone. Each one a target lacks is
#: passed to LLVM as ``-feature``: a virtual machine (or a process whose CPUID is masked)
#: can report a CPU model whose LLVM definition includes AVX-512 while the machine does not
#: run it, and code compiled for the name alone would then stop with an illegal instruction.
X86_SIMD_FEATURES = (
    "amx-avx512", "amx-bf16", "amx-complex", "amx-fp16", "amx-fp8", "amx-int8", "amx-movrs",
    "amx-tf32", "amx-tile", "avx", "avx10.1", "avx10.2", "avx2", "avx512bf16", "avx512bitalg",
    "avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512fp16", "avx512ifma", "avx512vbmi",
    "avx512vbmi2", "avx512vl", "avx512vnni", "avx512vp2intersect", "avx512vpopcntdq",
    "avxifma", "avxneconvert", "avxvnni", "avxvnniint16", "avxvnniint8", "f16c", "fma",
)  # fmt: skip

#: Features only an x86-64 CPU reports: the disabling above applies to such targets only.
_X86_MARKERS = frozenset(("sse2", "sse4.1", "sse4.2", "ssse3", "avx", "avx2"))


def check_num_threads(num_threads: int) -> int:
    """Return ``num_threads`` if it is at least 1; the one place that checks thread counts.

    Raises
    ------
    InvalidInputError
        ``num_threads < 1``.
    """
    if num_threads < 1:
        raise InvalidInputError(
            f"number of threads must be at least 1, got {num_threads}",
            hint="pass --threads 1 or more",
        )
    return num_threads


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuTarget:
    """An LLVM CPU target: what TVM compiles for.

    Parameters
    ----------
    cpu_name
        LLVM's name for the micro-architecture (``"icelake-server"``, ``"znver3"``).
    features
        Enabled LLVM feature names without the ``+`` (``"avx2"``, ``"avx512f"``), sorted.
    num_cores
        Threads the generated code may use (TVM's ``num-cores``).

    Raises
    ------
    InvalidInputError
        Empty ``cpu_name`` or ``num_cores < 1``.
    """

    cpu_name: str
    features: tuple[str, ...]
    num_cores: int

    def __post_init__(self) -> None:
        if not self.cpu_name:
            raise InvalidInputError("CPU target: empty cpu_name")
        check_num_threads(self.num_cores)
        if tuple(sorted(self.features)) != self.features:
            raise ValueError("CpuTarget.features must be sorted")

    @property
    def has_avx512(self) -> bool:
        """AVX-512 foundation instructions (512-bit vectors)."""
        return "avx512f" in self.features

    @property
    def has_avx512_vnni(self) -> bool:
        """AVX-512 VNNI (``vpdpbusd``: int8 dot products into int32)."""
        return "avx512vnni" in self.features

    @property
    def has_avx_vnni(self) -> bool:
        """AVX-VNNI: the 256-bit VEX form of VNNI (no AVX-512 needed)."""
        return "avxvnni" in self.features

    @property
    def vector_bits(self) -> int:
        """Widest float vector register: 512 with AVX-512, 256 with AVX, else 128."""
        if self.has_avx512:
            return 512
        return 256 if "avx" in self.features else 128

    def to_tvm(self) -> tvm.target.Target:
        """The TVM target (TVM 0.27 takes dicts; it rejects ``-mcpu=native``)."""
        import tvm

        spec: dict[str, Any] = {"kind": "llvm", "mcpu": self.cpu_name, "num-cores": self.num_cores}
        if self.llvm_mattr:
            spec["mattr"] = list(self.llvm_mattr)
        return tvm.target.Target(spec)

    @property
    def llvm_mattr(self) -> tuple[str, ...]:
        """LLVM ``mattr`` entries that make the CPU name agree with :attr:`features`.

        ``+amx-*`` for the AMX features present (LLVM's model of the name may lack them: a
        Sapphire Rapids guest reports Rocket Lake) and, on x86-64, ``-f`` for every
        :data:`X86_SIMD_FEATURES` entry absent (the name may imply it: a guest without
        AVX-512 can report an AVX-512 model). Empty when the features are unknown.
        """
        enabled = [f"+{f}" for f in AMX_FEATURES if f in self.features]
        if not _X86_MARKERS.intersection(self.features):
            return tuple(enabled)
        return (*enabled, *(f"-{f}" for f in X86_SIMD_FEATURES if f not in self.features))

    def to_json(self) -> dict[str, Any]:
        return {
            "cpu_name": self.cpu_name,
            "features": list(self.features),
            "num_cores": self.num_cores,
            "has_avx512": self.has_avx512,
            "has_avx512_vnni": self.has_avx512_vnni,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CpuTarget:
        return cls(
            cpu_name=str(data["cpu_name"]),
            features=tuple(sorted(str(f) for f in data["features"])),
            num_cores=int(data["num_cores"]),
        )


_SYS_CPU = Path("/sys/devices/system/cpu")


def physical_core_count(cpus: Iterable[int], sys_cpu: Path = _SYS_CPU) -> int:
    """Physical cores among the logical ``cpus``: SMT siblings (hyper-threads) count once.

    Reads each CPU's ``topology/physical_package_id`` and ``topology/core_id``
    under ``sys_cpu`` (Linux sysfs); when the topology cannot be read, every
    logical CPU counts as a core.
    """
    cpus = list(cpus)
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topology = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(len(cpus), 1)
        cores.add((package, core))
    return max(len(cores), 1)


def host_core_count() -> int:
    """Physical cores this process may run on (CPU affinity and cgroups' cpusets respected).

    The default thread count: a second hyper-thread on a core shares its
    vector units, so compute-bound kernels gain nothing from it.
    """
    return physical_core_count(os.sched_getaffinity(0))


def host_target(num_cores: int | None = None) -> CpuTarget:
    """Describe this machine's CPU as reported by LLVM (through llvmlite).

    Parameters
    ----------
    num_cores
        Threads the generated code may use; defaults to :func:`host_core_count`.
    """
    import llvmlite.binding as llvm

    try:
        feature_map = llvm.get_host_cpu_features()
        features = tuple(sorted(name for name, enabled in feature_map.items() if enabled))
    except RuntimeError:  # LLVM cannot list features on this host: rely on the CPU name
        features = ()
    return CpuTarget(
        cpu_name=llvm.get_host_cpu_name(),
        features=features,
        num_cores=host_core_count() if num_cores is None else num_cores,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NpuTarget:
    """The modeled NPU as a compilation target.

    Parameters
    ----------
    hw
        The hardware configuration (SRAM size, array shape, bandwidths; see
        :class:`~npuc.core.hw.config.HwConfig` and docs/hw_config.md).
    quantization
        The quantizer's settings (calibration data, scheme). An opaque slot
        until the quantizer defines its config type; ``None`` uses its defaults.
    """

    hw: HwConfig
    quantization: object | None = None


Target = CpuTarget | NpuTarget
"""Anything ``npuc build`` can compile for."""
