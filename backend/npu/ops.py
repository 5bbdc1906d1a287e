"""The stable seam between partitioning and NPU code generation: NPU operations as dataclasses.

Like Vela's ``api.py``: the partitioner / quantizer produce an :class:`NpuGraph`
of these frozen dataclasses, and code generation (:mod:`npuc.backend.npu.compile`)
consumes it without Relax. Integer parameters use the ISA's field names
(``ifm_zp`` is ``ifm.zero_point``, ``ofm_multiplier``, ``post_shift``,
``act_min`` ...), so lowering maps them one to one.

Conventions
-----------
- Tensors are NHWC with N = 1 (``shape = (1, h, w, c)``), dense, row-major,
  stored as int8, uint8 or int16 with one scale and zero point.
- Conv weights are int8 OHWI ``(cout, kh, kw, cin // groups)``; bias int16
  ``b16`` per output channel added as ``b16 << bias_shift``; multipliers
  uint16 (<= 32767) per output channel or one per tensor.
- ``padding`` is ``(top, left, bottom, right)``.

Requires / guarantees: :meth:`NpuGraph.validate` raises InvalidInputError
(a malformed graph: shapes, dtypes, ranges, dangling tensors) or
UnsupportedError (a well-formed op the ISA cannot run, with the rule) naming
the op; a graph that validates compiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from npuc.backend.npu.ops_conv import NpuConv2d
from npuc.backend.npu.ops_move import (
    NpuConcat,
    NpuPad,
    NpuReshape,
    NpuResize,
    NpuSlice,
    NpuTranspose,
)
from npuc.backend.npu.ops_taps import NpuIm2col, NpuTapConv2d
from npuc.backend.npu.tensor import (
    DTYPE_RANGES,
    MULTIPLIER_MAX,
    NpuTensor,
    check_act,
    check_shift,
    fail,
    window_out,
)
from npuc.core.errors import InvalidInputError, UnsupportedError

ELTWISE_KINDS = ("add", "sub", "mul", "max", "min")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuElementwise:
    """Element-wise ``op`` (add/sub/mul/max/min) of two same-shape tensors, two-multiplier scheme.

    add/sub/max/min use ``ifm_multiplier`` and ``ifm2_multiplier``; mul uses
    ``ofm_multiplier``; all then ``rshift_round(., post_shift) + ofm_zp`` and the
    clamp. No broadcasting (UnsupportedError).
    """

    name: str
    op: str
    ifm: NpuTensor
    ifm2: NpuTensor
    ofm: NpuTensor
    ifm_multiplier: int = 0
    ifm2_multiplier: int = 0
    ofm_multiplier: int = 0
    post_shift: int
    act_min: int
    act_max: int

    def validate(self) -> None:
        """Raise naming the op (rules: class docstring)."""
        if self.op not in ELTWISE_KINDS:
            raise UnsupportedError(
                f"NPU op {self.name!r}: element-wise {self.op!r} is not one of"
                f" {', '.join(ELTWISE_KINDS)}"
            )
        if not self.ifm.shape == self.ifm2.shape == self.ofm.shape:
            raise UnsupportedError(
                f"NPU op {self.name!r}: shapes {self.ifm.shape}, {self.ifm2.shape} ->"
                f" {self.ofm.shape} differ; the NPU has no broadcasting"
            )
        for v in (self.ifm_multiplier, self.ifm2_multiplier, self.ofm_multiplier):
            if not 0 <= v <= MULTIPLIER_MAX:
                raise fail(self.name, f"multiplier {v} outside [0, {MULTIPLIER_MAX}]")
        check_shift(self.name, "post_shift", self.post_shift, 47)
        check_act(self.name, self.act_min, self.act_max, self.ofm)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuPool:
    """Max or average pool (global average: ``kernel = (h, w)``), per channel, on the ITP.

    avg: ``ofm_multiplier`` folds in ``1 / (kh * kw)`` (count_include_pad).
    Max pool keeps the stored values: ifm and ofm must share dtype, scale and zero point.
    """

    name: str
    op: str
    ifm: NpuTensor
    ofm: NpuTensor
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    ofm_multiplier: int = 1
    post_shift: int = 0
    act_min: int
    act_max: int

    def validate(self) -> None:
        """Raise naming the op (rules: class docstring)."""
        n = self.name
        if self.op not in ("max", "avg"):
            raise UnsupportedError(f"NPU op {n!r}: pool {self.op!r} is not max or avg")
        h, w, c = self.ifm.hwc
        kh, kw = self.kernel
        if not (1 <= kh <= 255 and 1 <= kw <= 255 and all(1 <= s <= 15 for s in self.stride)):
            raise UnsupportedError(
                f"NPU op {n!r}: kernel {self.kernel} or stride {self.stride}"
                " outside the ISA's ranges"
            )
        top, left, bottom, right = self.padding
        if max(top, bottom) >= kh or max(left, right) >= kw:
            raise UnsupportedError(f"NPU op {n!r}: padding {self.padding} not below the kernel")
        eh = window_out(h, top, bottom, kh, self.stride[0])
        ew = window_out(w, left, right, kw, self.stride[1])
        if self.ofm.shape != (1, eh, ew, c):
            raise fail(n, f"ofm shape {self.ofm.shape}, the geometry gives {(1, eh, ew, c)}")
        if not 0 <= self.ofm_multiplier <= MULTIPLIER_MAX:
            raise fail(n, f"ofm_multiplier {self.ofm_multiplier} outside [0, {MULTIPLIER_MAX}]")
        check_shift(n, "post_shift", self.post_shift, 47)
        check_act(n, self.act_min, self.act_max, self.ofm)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuLut:
    """Table lookup: 8-bit ifm 256 entries; int16 ifm ``2^lut_bits + 1`` entries interpolated."""

    name: str
    ifm: NpuTensor
    ofm: NpuTensor
    table: np.ndarray
    lut_bits: int = 8
    lut_x_min: int = -32768
    lut_f: int = 8

    @property
    def entries(self) -> int:
        return (1 << self.lut_bits) + 1 if self.ifm.dtype == "int16" else 256

    def validate(self) -> None:
        """Raise naming the op: table length and dtype must match (entries of ofm dtype)."""
        if self.ifm.shape != self.ofm.shape:
            raise fail(self.name, f"shapes {self.ifm.shape} -> {self.ofm.shape} differ")
        if self.table.shape != (self.entries,) or str(self.table.dtype) != self.ofm.dtype:
            raise fail(
                self.name,
                f"table must be {self.ofm.dtype} ({self.entries},), got"
                f" {self.table.dtype} {self.table.shape}",
            )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuRequant:
    """Copy with requantization: ``clamp(rshift_round((x - ifm_zp) * M, post_shift) + ofm_zp)``."""

    name: str
    ifm: NpuTensor
    ofm: NpuTensor
    ofm_multiplier: int
    post_shift: int
    act_min: int
    act_max: int

    def validate(self) -> None:
        """Raise naming the op: same element count, multiplier and shift in range."""
        if self.ifm.elements != self.ofm.elements:
            raise fail(self.name, f"{self.ifm.shape} -> {self.ofm.shape} change the size")
        if not 0 <= self.ofm_multiplier <= MULTIPLIER_MAX:
            raise fail(self.name, f"ofm_multiplier {self.ofm_multiplier} out of range")
        check_shift(self.name, "post_shift", self.post_shift, 47)
        check_act(self.name, self.act_min, self.act_max, self.ofm)


NpuOp: TypeAlias = (
    NpuConv2d
    | NpuElementwise
    | NpuPool
    | NpuLut
    | NpuRequant
    | NpuConcat
    | NpuSlice
    | NpuReshape
    | NpuPad
    | NpuResize
    | NpuTranspose
    | NpuIm2col
    | NpuTapConv2d
)


def op_inputs(op: NpuOp) -> tuple[NpuTensor, ...]:
    """Activation tensors an op reads, in operand order."""
    if isinstance(op, NpuConcat):
        return op.ifms
    if isinstance(op, NpuElementwise):
        return (op.ifm, op.ifm2)
    if isinstance(op, NpuTapConv2d):
        return (op.gather.ifm, op.conv.ifm)
    return (op.ifm,)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuGraph:
    """Ordered NPU ops with the graph's inputs and outputs (constants live in the ops)."""

    ops: tuple[NpuOp, ...]
    inputs: tuple[NpuTensor, ...]
    outputs: tuple[NpuTensor, ...]
    name: str = "npu_graph"

    def validate(self) -> None:
        """Every op valid; every tensor read is a graph input or made by an earlier op; names
        unique; every output is produced. Raises InvalidInputError / UnsupportedError."""
        known: dict[str, NpuTensor] = {}
        for t in self.inputs:
            if t.name in known:
                raise InvalidInputError(f"NPU graph: input {t.name!r} given twice")
            known[t.name] = t
        names: set[str] = set()
        for op in self.ops:
            if op.name in names:
                raise InvalidInputError(f"NPU graph: op name {op.name!r} used twice")
            names.add(op.name)
            op.validate()
            for t in op_inputs(op):
                if known.get(t.name) != t:
                    raise InvalidInputError(
                        f"NPU op {op.name!r} reads {t.name!r}, which is no graph input and no"
                        " earlier op's output (or is described differently there)"
                    )
            if op.ofm.name in known:
                raise InvalidInputError(f"NPU op {op.name!r}: tensor {op.ofm.name!r} made twice")
            known[op.ofm.name] = op.ofm
        for t in self.outputs:
            if known.get(t.name) != t or t in self.inputs:
                raise InvalidInputError(f"NPU graph output {t.name!r} is not made by any op")


__all__ = [
    "DTYPE_RANGES",
    "ELTWISE_KINDS",
    "NpuConcat",
    "NpuConv2d",
    "NpuElementwise",
    "NpuGraph",
    "NpuIm2col",
    "NpuLut",
    "NpuOp",
    "NpuPad",
    "NpuPool",
    "NpuRequant",
    "NpuReshape",
    "NpuResize",
    "NpuSlice",
    "NpuTapConv2d",
    "NpuTensor",
    "NpuTranspose",
    "op_inputs",
    "window_out",
]
