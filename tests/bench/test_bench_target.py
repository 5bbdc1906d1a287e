"""bench/bench_target.py: the host target, and the AVX2 proxy that a Zen 3 would get."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from npuc.core.target import host_target

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bt() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_target", ROOT / "bench" / "bench_target.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_host_is_what_npuc_build_uses(bt: ModuleType) -> None:
    assert bt.bench_target("host", 3) == host_target(3)


def test_avx2_proxy_has_no_avx512_or_vnni(bt: ModuleType) -> None:
    target = bt.bench_target("avx2", 2)
    assert target.cpu_name == "haswell"
    assert target.num_cores == 2
    assert "avx2" in target.features and "fma" in target.features
    assert not (target.has_avx512 or target.has_avx512_vnni or target.has_avx_vnni)
    assert target.vector_bits == 256
    assert target.to_tvm().attrs["mcpu"] == "haswell"


def test_unknown_isa_is_refused(bt: ModuleType) -> None:
    with pytest.raises(ValueError, match="--isa 'sse'"):
        bt.bench_target("sse", 2)
