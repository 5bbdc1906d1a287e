"""Compile and time one kernel on its own: MetaSchedule's builder and npuc's hand-vs-tuned check.

:func:`build_candidate` is the build function MetaSchedule's ``LocalBuilder``
runs in its worker processes. TVM's default one imports
``tvm.s_tir.tensor_intrin`` for every candidate, which takes ~25 s and
makes the 30 s build timeout kill every candidate; this one does not.

:func:`kernel_seconds` times a PrimFunc in this process, the same way for the
hand-scheduled and the tuned kernel, so ``npuc tune`` keeps a record only
when it is faster on the same measurement.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import tirx
from tvm.s_tir.meta_schedule.arg_info import ArgInfo

from npuc.core.target import CpuTarget


def _without_layout_rewrite(mod: tvm.IRModule) -> tvm.IRModule:
    """Drop weight layout-rewrite blocks: the build packs those weights at compile time."""
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)


def build_candidate(
    mod: tvm.IRModule, target: tvm.target.Target, _params: object | None
) -> tvm.runtime.Module:
    """Build one MetaSchedule candidate (``LocalBuilder(f_build=...)``).

    Parameters
    ----------
    mod
        The scheduled one-function module (``main``).
    target
        The LLVM target of the tuning task.
    _params
        Unused (MetaSchedule passes ``None`` for TIR tasks).
    """
    return tvm.tirx.build(_without_layout_rewrite(mod), target=target)


def kernel_seconds(
    func: tirx.PrimFunc, target: CpuTarget, *, repeat: int = 5, min_repeat_ms: int = 40
) -> float:
    """Fastest of ``repeat`` timings of ``func``, in seconds per call.

    Parameters
    ----------
    func
        A scheduled PrimFunc (one fused kernel). A weight layout-rewrite block
        is removed first and the packed weight becomes the argument, as in the
        built library where the packing is folded at compile time.
    target
        The CPU to compile for.
    repeat, min_repeat_ms
        Timing rounds, and the minimum length of one round (calls are
        repeated until it is reached). The minimum over rounds is returned:
        on a shared machine, load only ever makes a round slower.

    Raises
    ------
    tvm.error.TVMError
        The kernel does not compile (the caller treats it as not usable).
    """
    mod = _without_layout_rewrite(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}))
    lib = tvm.tirx.build(mod, target=target.to_tvm())
    device = tvm.cpu()
    args = [
        tvm.runtime.tensor(_sample(tuple(int(d) for d in info.shape), str(info.dtype)), device)
        for info in ArgInfo.from_prim_func(mod["main"])
    ]
    timer = lib.time_evaluator("main", device, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
    return float(min(timer(*args).results))


def _sample(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Inputs for timing: uniform floats; zeros for integers (valid indices for gathers)."""
    if dtype.startswith("float"):
        return np.random.default_rng(0).uniform(-1.0, 1.0, shape).astype(dtype)
    return np.zeros(shape, dtype=dtype)
