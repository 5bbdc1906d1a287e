"""Compile a Relax module for the host CPU and run it, for tests.

Goes through the real CPU path: ``npuc.backend.cpu.compile_module`` for the
host target (which legalizes any high-level operators the caller left; no
midend passes are run here, so a test exercises only what it means to) and
``npuc.runtime.from_executable`` (input checking, output flattening).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tvm

from npuc.backend.cpu import compile_module, host_target
from npuc.core.model_info import ModelInfo, TensorInfo
from npuc.runtime import from_executable


def _tensor_info(name: str, ty: object) -> TensorInfo:
    """Static dims as ints, symbolic ones by name (the runtime checks only their rank)."""
    shape = getattr(ty, "shape", None)
    dims = tuple(
        int(d) if isinstance(d, tvm.tirx.IntImm) else str(d)
        for d in (shape.values if shape is not None else ())
    )
    return TensorInfo(name=name, shape=dims, dtype=str(getattr(ty, "dtype", "")))


def _flat_types(ty: object) -> list[object]:
    fields = getattr(ty, "fields", None)
    if fields is None:
        return [ty]
    return [leaf for field in fields for leaf in _flat_types(field)]


def module_info(mod: tvm.IRModule) -> ModelInfo:
    """Interface of ``mod["main"]``: parameters by name, outputs as ``output_<i>``."""
    main = mod["main"]
    outputs = _flat_types(main.ret_ty if hasattr(main, "ret_ty") else main.ret_struct_info)
    return ModelInfo(
        source_path="<relax module>",
        source_format="relax",
        source_sha256="",
        inputs=tuple(_tensor_info(p.name, p.ty) for p in main.params),
        outputs=tuple(_tensor_info(f"output_{i}", ty) for i, ty in enumerate(outputs)),
    )


def run_relax_on_cpu(mod: tvm.IRModule, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Build ``mod`` for the host CPU, run ``main`` on ``feeds`` (keyed by parameter name).

    Returns the outputs as a flat list of numpy arrays (tuples flattened).
    """
    info = module_info(mod)
    model = from_executable(compile_module(mod, host_target()), info)
    outputs = model.run({t.name: np.asarray(feeds[t.name]) for t in info.inputs})
    return [outputs[t.name] for t in info.outputs]
