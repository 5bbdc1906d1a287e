"""The one-row int8 dense kernel (``schedules/int8_matvec.py``) on shapes that reach what the
small sweep of ``test_int8_conv.py`` does not: more input groups than the AVX2 prefetch
distance, several weight blocks with a partial last one, every output lane of a block (the
AVX2 accumulators hold outputs ``0 1 4 5 2 3 6 7``, put back in order at the end).

Each layer is compared bit for bit with the integer executor, per dot kind this machine
runs (AVX2 always, the host's kind too).
"""

from __future__ import annotations

import numpy as np
import pytest
from tvm import tirx

from npuc.backend.cpu.schedules.int8_conv import dot_kind
from npuc.backend.cpu.schedules.int8_matvec import (
    BLOCK,
    ORDER,
    PREFETCH_GROUPS,
    UNORDER,
    make_matvec,
)
from npuc.core.target import CpuTarget, host_target

from .harness import Case, assert_cases_exact, ints, node, qparams
from .test_conv import _out_stage
from .test_int8_conv import AVX2_FEATURES, _dense_kernel_specs

AVX2 = CpuTarget(cpu_name="haswell", features=tuple(sorted(AVX2_FEATURES)), num_cores=2)


def _dense(rng: np.random.Generator, k: int, n: int, dtype: str, name: str) -> Case:
    xq, out = qparams(rng, dtype), qparams(rng, "int8")
    return Case(
        node=node(name, "dense", (f"{name}_x",)),
        inputs={f"{name}_x": (ints(rng, xq.dtype, (1, k)), xq)},
        params={"weights": ints(rng, "int8", (k, n)),
                **_out_stage(rng, n, xq, out, taps=k, extreme=False)},
        out=out,
    )  # fmt: skip


def _cases() -> list[Case]:
    """Inputs past the prefetch distance (``k / 4`` groups > 8), a partial group, one to
    three blocks with a partial last one."""
    rng = np.random.default_rng(23)
    shapes = ((4 * PREFETCH_GROUPS + 1, 8), (300, 2 * BLOCK + 13), (1283, BLOCK), (37, 3))
    return [
        _dense(rng, k, n, ("int8", "uint8")[i % 2], f"mv{i}") for i, (k, n) in enumerate(shapes)
    ]


def _targets() -> list[CpuTarget]:
    host = host_target(num_cores=2)
    return [AVX2] if dot_kind(host).name == "avx2" else [AVX2, host]


@pytest.mark.parametrize("target", _targets(), ids=lambda t: dot_kind(t).name)
def test_matvec_is_bit_exact(target: CpuTarget) -> None:
    cases = _cases()
    for case in cases:
        (spec,) = _dense_kernel_specs(case)
        assert spec.matvec, case.node.name
    assert_cases_exact(cases, target)


def test_avx2_lane_order_is_a_permutation_put_back() -> None:
    assert sorted(ORDER) == list(range(8))
    assert [ORDER[UNORDER[j]] for j in range(8)] == list(range(8))


def test_avx2_matvec_adds_pairs_and_prefetches() -> None:
    """One ``vphaddd`` per eight outputs and step, one accumulator per eight outputs (the
    whole block in one pass), and the weight prefetch; the VNNI kernels have neither."""
    (spec,) = _dense_kernel_specs(_cases()[1])
    text = make_matvec(spec, dot_kind(AVX2)).script()
    assert "llvm.x86.avx2.phadd.d" in text and "llvm.prefetch" in text
    assert "T.parallel(3)" in text  # one job per 64-output block
    vnni = CpuTarget(
        cpu_name="icelake-server", features=("avx512bw", "avx512f", "avx512vnni"), num_cores=2
    )
    assert dot_kind(vnni).name == "vnni512"
    vnni_kernel = make_matvec(spec, dot_kind(vnni))
    assert isinstance(vnni_kernel, tirx.PrimFunc)
    assert "llvm.prefetch" not in vnni_kernel.script()
    assert "phadd" not in vnni_kernel.script()
