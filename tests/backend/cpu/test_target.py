"""Host CPU detection and the TVM target built from it."""

from __future__ import annotations

import dataclasses

import llvmlite.binding as llvm
import pytest

from npuc.backend.cpu import CpuTarget, host_core_count, host_target
from npuc.errors import InvalidInputError


def test_host_target_matches_llvm() -> None:
    target = host_target()
    assert target.cpu_name == llvm.get_host_cpu_name()
    enabled = sorted(name for name, on in llvm.get_host_cpu_features().items() if on)
    assert list(target.features) == enabled
    assert target.num_cores == host_core_count() >= 1
    assert target.has_avx512 == ("avx512f" in enabled)
    assert target.has_avx512_vnni == ("avx512vnni" in enabled)


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
    with pytest.raises(InvalidInputError, match="num_cores must be at least 1, got 0"):
        host_target(num_cores=0)
