"""Compile a Relax module for the host CPU and run it, for tests.

Interim version (relax.build + VM in memory) so that frontend tests can run
before the CPU backend lands; the backend owner replaces the body with calls
to ``npuc.backend.cpu`` / ``npuc.runtime`` keeping this signature.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tvm
from tvm import relax


def run_relax_on_cpu(mod: tvm.IRModule, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Build ``mod`` for the host CPU, run ``main`` on ``feeds`` (in parameter order).

    Returns the outputs as a flat list of numpy arrays (tuples flattened).
    """
    import llvmlite.binding as llvm

    target = tvm.target.Target({"kind": "llvm", "mcpu": llvm.get_host_cpu_name()})
    ex = relax.build(mod, target)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    params = [p.name for p in mod["main"].params]
    args = [tvm.runtime.tensor(np.ascontiguousarray(feeds[name])) for name in params]
    out = vm["main"](*args)
    return _flatten(out)


def _flatten(value: object) -> list[np.ndarray]:
    if isinstance(value, tvm.runtime.Tensor):
        return [value.numpy()]
    if isinstance(value, (list, tuple)) or hasattr(value, "__len__"):
        flat: list[np.ndarray] = []
        for item in value:  # type: ignore[union-attr]
            flat.extend(_flatten(item))
        return flat
    raise TypeError(f"unexpected VM output {type(value).__name__}")
