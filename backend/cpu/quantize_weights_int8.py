"""Store convolution and matmul weights as int8 with float32 per-output-channel scales.

The CPU library's ``--precision weight-int8`` (TFLite's dynamic-range
quantization of weights): each qualifying weight ``W`` (float32 constant,
at least :data:`~npuc.backend.cpu.weight_storage.MIN_WEIGHT_ELEMENTS` elements,
of a convolution or a ``matmul`` — see
:data:`~npuc.backend.cpu.weight_storage.WEIGHT_OPS`) is stored as

    q[c, ...] = clip(round(W[c, ...] / s[c]), -127, 127)  (int8)
    s[c] = max |W[c, ...]| / 127  (float32; 1 for an all-zero channel)

per output channel ``c`` (symmetric, no zero point; -128 unused so the range is
symmetric), and computed as ``float32(q) * s``. The dequantization is not done
per inference: :class:`~npuc.backend.cpu.lift_weight_transforms.LiftWeightTransforms`
moves it into the function the runtime calls once at load, so the library is
about 4x smaller than the float one and runs the float kernels. Activations
stay float32 (no dynamic activation quantization).

Requires: a Relax module as ``npuc.midend.pipeline.optimize`` returns it (weights
folded to constants, high-level operators), before :mod:`.lowering`'s passes.

Guarantees: every qualifying weight of ``main`` is an int8 parameter of
``main`` (after its inputs, ``num_input`` set) dequantized in the graph; the
values are returned by ``npuc_stored_weights()``. Smaller weights, other
operators, weights holding inf or NaN (kept float32, so they propagate as in
the float model) and other functions are unchanged. Idempotent (a module with
``npuc_stored_weights`` is left alone). Error per weight element: at most ``s[c] / 2``.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from npuc.backend.cpu.weight_storage import MIN_WEIGHT_ELEMENTS, StoredWeight, store_weights

INT8_MAX = 127


def quantize_per_channel(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 quantization of ``weight`` per index of ``axis``.

    Returns
    -------
    q, scale
        ``q`` int8 in ``[-127, 127]``, ``weight``'s shape; ``scale`` float32 of
        ``weight``'s rank, size 1 on every axis but ``axis``, so that
        ``q * scale`` approximates ``weight``.
    """
    reduce_axes = tuple(i for i in range(weight.ndim) if i != axis)
    amax = np.abs(weight).max(axis=reduce_axes, keepdims=True).astype(np.float32)
    scale = np.where(amax > 0, amax / INT8_MAX, np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(weight / scale), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def _int8(weight: np.ndarray, axis: int) -> StoredWeight | None:
    if not np.isfinite(weight).all():
        return None  # inf/nan have no int8 code: the weight stays float32, exactly as given
    q, scale = quantize_per_channel(weight, axis)
    scale_const = relax.const(scale)
    return StoredWeight(
        values=q,
        to_float=lambda var: relax.op.multiply(relax.op.astype(var, "float32"), scale_const),
    )


@tvm.transform.module_pass(opt_level=0, name="npuc.QuantizeWeightsInt8")
class QuantizeWeightsInt8:
    """Store qualifying weights as int8 + per-channel float32 scale; see the module docstring.

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
        return store_weights(mod, _int8, self.min_elements)
