"""The CPU target a benchmark compiles npuc for: this host, or an AVX2 proxy.

``--isa host`` (the default) is :func:`~npuc.core.target.host_target`: what
``npuc build --target cpu`` uses. ``--isa avx2`` compiles for Haswell with the
SIMD features an AMD Zen 3 reports (AVX2 and FMA; no AVX-512, no VNNI), so a
host with AVX-512 can show how the code chosen for Zen 3-class machines
performs. ``bench/cpu.py --isa avx2`` restarts itself with CPUID masked
(:mod:`cpuid_mask`) so the references (onnxruntime, LiteRT), which pick their
kernels at run time, use AVX2 too; where the mask cannot run they use the
host's AVX-512 and the ratio is pessimistic for npuc. Either way it is a proxy,
not a Zen 3 measurement: cache sizes and latencies are this host's. LLVM's
``znver3`` is not used as the CPU name: its code may contain AMD-only
instructions that an Intel host cannot run.
"""

from __future__ import annotations

from npuc.core.target import CpuTarget, host_target

ISAS = ("host", "avx2")

#: What an AVX2-only x86-64 (Zen 3, Haswell and later without AVX-512) reports, sorted.
AVX2_FEATURES = tuple(
    sorted(("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "popcnt", "sse4.1", "sse4.2", "ssse3"))
)


def bench_target(isa: str, threads: int) -> CpuTarget:
    """The target npuc's libraries are compiled for (module docstring).

    Raises
    ------
    ValueError
        ``isa`` not in :data:`ISAS`.
    """
    if isa == "host":
        return host_target(threads)
    if isa == "avx2":
        return CpuTarget(cpu_name="haswell", features=AVX2_FEATURES, num_cores=threads)
    raise ValueError(f"--isa {isa!r}: use one of {', '.join(ISAS)}")
