"""bench/cpuid_mask.py: a process under the mask sees an AVX2-only CPU, and real faults
still reach the program's own SIGSEGV handler."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mask() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cpuid_mask", ROOT / "bench" / "cpuid_mask.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reason = module.unavailable_reason()
    if reason is not None:
        pytest.skip(f"CPUID mask unavailable here: {reason}")
    return module


def _run_masked(library: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LD_PRELOAD": str(library)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_masked_process_sees_no_avx512(mask: ModuleType, tmp_path: Path) -> None:
    library = mask.build_mask(tmp_path)
    # TVM installs its own SIGSEGV handler on import: CPUID must still be answered after it.
    code = (
        "import tvm, llvmlite.binding as llvm, onnxruntime\n"
        "f = llvm.get_host_cpu_features()\n"
        "names = ('avx2', 'avx512f', 'avx512vnni', 'avxvnni')\n"
        "print(*(f.get(n, False) for n in names))"
    )
    done = _run_masked(library, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "False", "False"]


def test_real_fault_reaches_the_program_handler(mask: ModuleType, tmp_path: Path) -> None:
    library = mask.build_mask(tmp_path)
    code = "import faulthandler, ctypes\nfaulthandler.enable()\nctypes.string_at(0)\n"
    done = _run_masked(library, code)
    assert done.returncode == -11  # SIGSEGV, not a hang or a swallowed fault
    assert "Fatal Python error: Segmentation fault" in done.stderr
