"""The integer reference: one plain int64 numpy implementation of each NPU formula.

This is the golden model (spec: docs/npu_spec.md; instruction
semantics in docs/npu_isa.md). The simulator (``npuc.npu_sim``) must be bit-exact to it and
the quantizer uses it to predict what the hardware computes. It imports only
numpy.
"""

from npuc.core.intref.arith import (
    ACC48_MAX,
    ACC48_MIN,
    INT32_MAX,
    INT32_MIN,
    clamp_activation,
    dtype_range,
    rshift_round,
    sat32,
    sat48,
    saturate,
)
from npuc.core.intref.conv import (
    OutputStage,
    apply_output_stage,
    conv2d,
    conv2d_acc48,
    fully_connected,
)
from npuc.core.intref.lut import lut_entries, lut_lookup
from npuc.core.intref.ops import ELTWISE_OPS, avg_pool, eltwise, max_pool, requant

__all__ = [
    "ACC48_MAX",
    "ACC48_MIN",
    "ELTWISE_OPS",
    "INT32_MAX",
    "INT32_MIN",
    "OutputStage",
    "apply_output_stage",
    "avg_pool",
    "clamp_activation",
    "conv2d",
    "conv2d_acc48",
    "dtype_range",
    "eltwise",
    "fully_connected",
    "lut_entries",
    "lut_lookup",
    "max_pool",
    "requant",
    "rshift_round",
    "sat32",
    "sat48",
    "saturate",
]
