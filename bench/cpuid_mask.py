"""Re-run a benchmark with CPUID masked, so every library in it sees an AVX2-only CPU.

``bench/cpu.py --isa avx2`` compiles npuc for AVX2 (:mod:`bench_target`). The
references pick their kernels at run time from CPUID: on an AVX-512 host
onnxruntime's MLAS and LiteRT's XNNPACK would use AVX-512 and make the ratio
pessimistic for npuc. :func:`reexec_masked` restarts the current script with
``cpuid_mask.c`` preloaded: Linux CPUID faulting (``arch_prctl(ARCH_SET_CPUID,
0)``) traps every CPUID and the library answers with the AVX-512, AMX, VNNI and
AVX10 bits cleared, so the references, OpenBLAS and LLVM's host detection all
choose their AVX2 code. Measured on this project's AVX-512 host, onnxruntime
at 2 threads: ResNet-50 25.3 -> 38.5 ms, SqueezeNet 2.45 -> 3.71 ms.

It stays a proxy for Zen 3: the micro-architecture, caches and clock are the
host's, and glibc's start-up CPU detection (string functions) is not masked.
It needs Linux on x86-64 with the ``cpuid_fault`` CPU flag and gcc; without
them :func:`reexec_masked` returns the reason and the caller goes on unmasked.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling, loaded by path too
from gcc_shared import build_shared

SOURCE = Path(__file__).with_name("cpuid_mask.c")


def unavailable_reason() -> str | None:
    """Why the mask cannot run on this machine, or ``None`` when it can."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"CPUID faulting needs Linux on x86-64, not {sys.platform} {platform.machine()}"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError as err:
        return f"cannot read /proc/cpuinfo: {err}"
    if " cpuid_fault" not in flags:
        return "this CPU (or its hypervisor) has no cpuid_fault flag in /proc/cpuinfo"
    if shutil.which("gcc") is None:
        return "gcc is not on PATH"
    return None


def build_mask(folder: Path) -> Path:
    """Compile ``cpuid_mask.c`` into ``folder`` (once per source version); its path.

    Raises
    ------
    subprocess.CalledProcessError
        gcc failed.
    """
    return build_shared(SOURCE, folder, "npuc-cpuid-mask", ["-ldl"])


def is_masked() -> bool:
    """Whether this process runs under the mask (its library is preloaded)."""
    return "npuc-cpuid-mask-" in os.environ.get("LD_PRELOAD", "")


def reexec_masked() -> str | None:
    """Restart this script under the mask; returns only when it cannot (the reason) or
    when the process already is masked (``None``)."""
    if is_masked():
        return None
    reason = unavailable_reason()
    if reason is not None:
        return reason
    library = build_mask(Path(tempfile.gettempdir()))
    preload = " ".join(p for p in (str(library), os.environ.get("LD_PRELOAD", "")) if p)
    env = {**os.environ, "LD_PRELOAD": preload}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)
    return None  # not reached
