"""Store convolution and matmul weights as float16.

The CPU library's ``--precision fp16-weights`` (TFLite's float16 weight
quantization): each qualifying weight (float32 constant, at least
:data:`~npuc.backend.cpu.weight_storage.MIN_WEIGHT_ELEMENTS` elements, of a
convolution or a ``matmul`` — :data:`~npuc.backend.cpu.weight_storage.WEIGHT_OPS`)
is stored as float16 (round to nearest even) and computed as ``float32(w16)``.
:class:`~npuc.backend.cpu.lift_weight_transforms.LiftWeightTransforms` moves
the conversion into the function the runtime calls once at load, so the
library is about 2x smaller and runs the float kernels.

Requires: a Relax module as ``npuc.midend.pipeline.optimize`` returns it (weights
folded to constants, high-level operators), before :mod:`.lowering`'s passes.

Guarantees: every qualifying weight of ``main`` whose values float16 can hold
(magnitudes up to 65504) is a float16 parameter of ``main`` (after its
inputs, ``num_input`` set), converted in the graph; the values are returned by
``npuc_stored_weights()``. A weight with a larger magnitude stays float32.
Relative error per element at most 2**-11 (values below 2**-14 lose more:
float16 subnormals). Idempotent (a module with ``npuc_stored_weights`` is left alone).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from npuc.backend.cpu.weight_storage import MIN_WEIGHT_ELEMENTS, StoredWeight, store_weights

FLOAT16_MAX = float(np.finfo(np.float16).max)


def _fp16(weight: np.ndarray, _axis: int) -> StoredWeight | None:
    if not np.isfinite(weight).all() or float(np.abs(weight).max()) > FLOAT16_MAX:
        return None
    return StoredWeight(
        values=weight.astype(np.float16), to_float=lambda var: relax.op.astype(var, "float32")
    )


@tvm.transform.module_pass(opt_level=0, name="npuc.StoreWeightsFp16")
class StoreWeightsFp16:
    """Store qualifying weights as float16; see the module docstring.

    Parameters
    ----------
    min_elements
        Weights with fewer elements stay float32 (default 1024).
    """

    def __init__(self, min_elements: int = MIN_WEIGHT_ELEMENTS) -> None:
        if min_elements < 1:
            raise ValueError(f"min_elements must be >= 1, got {min_elements}")
        self.min_elements = min_elements

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return store_weights(mod, _fp16, self.min_elements)
