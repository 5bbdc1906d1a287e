"""Run compiled models: ``npuc.runtime.load("model.so").run({"x": x})``.

:func:`load` opens a CPU library written by ``npuc build`` (with its JSON
sidecar), or a ``.npuc`` NPU artifact (an :class:`~npuc.runtime.npu_model.NpuModel`
running its NPU partitions on the simulator); :func:`from_executable` wraps an in-memory executable;
:func:`configure_threads` sizes TVM's thread pool, once per process. Both give a
:class:`CompiledModel` whose ``run`` checks inputs against the model's
interface and returns outputs by name.

TVM is imported on first use of these names, not on ``import npuc.runtime``,
so tools that only need the tensor-file helpers (``npuc sim``) start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from npuc.runtime.compiled_model import CompiledModel, from_executable, load
    from npuc.runtime.inputs import check_inputs
    from npuc.runtime.thread_pool import configure_threads

_LAZY = {
    "CompiledModel": "npuc.runtime.compiled_model",
    "from_executable": "npuc.runtime.compiled_model",
    "load": "npuc.runtime.compiled_model",
    "check_inputs": "npuc.runtime.inputs",
    "configure_threads": "npuc.runtime.thread_pool",
}

__all__ = ["CompiledModel", "check_inputs", "configure_threads", "from_executable", "load"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'npuc.runtime' has no attribute {name!r}")
