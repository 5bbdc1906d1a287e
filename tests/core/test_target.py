"""Host CPU detection and the TVM target built from it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import llvmlite.binding as llvm
import pytest

from npuc.core import target as target_module
from npuc.core.errors import InvalidInputError
from npuc.core.target import (
    X86_SIMD_FEATURES,
    CpuTarget,
    host_core_count,
    host_target,
    physical_core_count,
)


def _fake_llvm(
    monkeypatch: pytest.MonkeyPatch, cpu_name: str, features: dict[str, bool] | Exception
) -> None:
    """Make llvmlite report ``cpu_name`` and ``features`` (or raise it) and the host 6 cores."""

    def get_features() -> dict[str, bool]:
        if isinstance(features, Exception):
            raise features
        return features

    monkeypatch.setattr(llvm, "get_host_cpu_name", lambda: cpu_name)
    monkeypatch.setattr(llvm, "get_host_cpu_features", get_features)
    monkeypatch.setattr(target_module, "host_core_count", lambda: 6)


def test_host_target_from_llvm_with_avx512_vnni(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = {"avx512vnni": True, "sse2": True, "avx512f": True, "avx": True, "amx-tile": False}
    _fake_llvm(monkeypatch, "sapphirerapids", flags)
    target = host_target()
    assert target == CpuTarget(
        cpu_name="sapphirerapids", features=("avx", "avx512f", "avx512vnni", "sse2"), num_cores=6
    )
    assert target.has_avx512 and target.has_avx512_vnni and not target.has_avx_vnni
    assert target.vector_bits == 512
    assert host_target(num_cores=2).num_cores == 2


def test_host_target_from_llvm_with_avx512_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = {"avx512f": False, "avx512vnni": False, "avx2": True, "avx": True, "avxvnni": True}
    _fake_llvm(monkeypatch, "alderlake", flags)
    target = host_target()
    assert target.cpu_name == "alderlake"
    assert target.features == ("avx", "avx2", "avxvnni")
    assert target.num_cores == 6
    assert not target.has_avx512 and not target.has_avx512_vnni and target.has_avx_vnni
    assert target.vector_bits == 256


def test_host_target_without_feature_list_falls_back_to_cpu_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_llvm(monkeypatch, "znver4", RuntimeError("failed to get host cpu features"))
    target = host_target(num_cores=3)
    assert target == CpuTarget(cpu_name="znver4", features=(), num_cores=3)
    assert not target.has_avx512 and target.vector_bits == 128
    assert target.to_tvm().attrs["mcpu"] == "znver4"


def test_host_target_on_this_machine() -> None:
    target = host_target()
    assert target.cpu_name == llvm.get_host_cpu_name()
    assert target.num_cores == host_core_count() <= len(os.sched_getaffinity(0))


def _fake_topology(root: Path, cores: dict[int, tuple[int, int]]) -> None:
    for cpu, (package, core) in cores.items():
        folder = root / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "physical_package_id").write_text(f"{package}\n")
        (folder / "core_id").write_text(f"{core}\n")


def test_physical_core_count_counts_hyperthreads_once(tmp_path: Path) -> None:
    # 2 packages x 2 cores x 2 threads; the process may run on CPUs 0-5.
    _fake_topology(tmp_path, {cpu: (cpu // 4, cpu % 2) for cpu in range(8)})
    assert physical_core_count(range(8), tmp_path) == 4
    assert physical_core_count([0, 2], tmp_path) == 1  # two threads of one core
    assert physical_core_count([0, 1, 4], tmp_path) == 3


def test_physical_core_count_without_topology_counts_cpus(tmp_path: Path) -> None:
    assert physical_core_count([0, 1, 2], tmp_path) == 3
    assert physical_core_count([], tmp_path) == 1


def test_to_tvm_is_an_llvm_target_for_this_cpu() -> None:
    target = host_target(num_cores=3)
    tvm_target = target.to_tvm()
    assert tvm_target.kind.name == "llvm"
    assert str(tvm_target.attrs["mcpu"]) == target.cpu_name
    assert int(tvm_target.attrs["num-cores"]) == 3


def test_feature_flags_and_vector_width() -> None:
    plain = CpuTarget(cpu_name="x86-64", features=("sse2",), num_cores=1)
    avx2 = CpuTarget(cpu_name="znver3", features=("avx", "avx2", "fma"), num_cores=2)
    vnni = CpuTarget(
        cpu_name="icelake-server", features=("avx", "avx512f", "avx512vnni"), num_cores=2
    )
    assert (plain.vector_bits, avx2.vector_bits, vnni.vector_bits) == (128, 256, 512)
    assert not avx2.has_avx512 and not avx2.has_avx512_vnni
    assert vnni.has_avx512 and vnni.has_avx512_vnni


def test_json_round_trip_and_frozen() -> None:
    target = host_target(num_cores=2)
    assert CpuTarget.from_json(target.to_json()) == target
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.num_cores = 4  # type: ignore[misc]


def test_bad_core_count_is_a_user_error() -> None:
    with pytest.raises(InvalidInputError, match="number of threads must be at least 1, got 0"):
        host_target(num_cores=0)


def _assembly(target: CpuTarget) -> str:
    """x86 assembly of a 64-float add vectorised 16 lanes wide, compiled for ``target``."""
    import tvm
    from tvm.script import tirx as T

    @T.prim_func
    def add(a: T.Buffer((64,), "float32"), b: T.Buffer((64,), "float32")) -> None:
        for i in T.serial(4):
            for j in T.vectorized(16):
                b[i * 16 + j] = a[i * 16 + j] + T.float32(1)

    lib = tvm.compile(tvm.IRModule({"add": add.with_attr("global_symbol", "add")}), target.to_tvm())
    return str(lib.mod.inspect_source("asm"))


def test_cpu_name_cannot_enable_features_the_target_lacks() -> None:
    # A guest (or a CPUID-masked process) without AVX-512 can report an AVX-512 model: its
    # code must not use 512-bit registers. The same name with AVX-512 listed does use them.
    avx2 = ("avx", "avx2", "f16c", "fma", "sse4.1", "sse4.2", "ssse3")
    masked = CpuTarget(cpu_name="rocketlake", features=avx2, num_cores=1)
    full = CpuTarget(
        cpu_name="rocketlake", features=tuple(sorted((*avx2, "avx512f", "avx512vl"))), num_cores=1
    )
    assert "-avx512f" in masked.llvm_mattr and "-amx-tile" in masked.llvm_mattr
    assert "-avx512f" not in full.llvm_mattr
    assert "zmm" not in _assembly(masked) and "ymm" in _assembly(masked)
    assert "zmm" in _assembly(full)


def test_every_disabled_feature_is_a_name_llvm_knows(capfd: pytest.CaptureFixture[str]) -> None:
    # A name LLVM does not know is ignored with a warning: the feature would stay enabled.
    known = set(llvm.get_host_cpu_features())
    if "avx2" not in known:
        pytest.skip("not an x86 host: llvmlite lists only this architecture's features")
    assert set(X86_SIMD_FEATURES) <= known, sorted(set(X86_SIMD_FEATURES) - known)
    bare = CpuTarget(cpu_name="graniterapids", features=("avx", "avx2", "sse4.2"), num_cores=1)
    assert len(bare.llvm_mattr) == len(X86_SIMD_FEATURES) - 2
    assert "zmm" not in _assembly(bare)
    assert "not a recognized feature" not in capfd.readouterr().err


def test_features_unknown_or_not_x86_disable_nothing() -> None:
    assert CpuTarget(cpu_name="znver4", features=(), num_cores=1).llvm_mattr == ()
    neon = CpuTarget(cpu_name="neoverse-n1", features=("fp-armv8", "neon"), num_cores=1)
    assert neon.llvm_mattr == ()
