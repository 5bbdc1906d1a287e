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

import math
from dataclasses import dataclass

import numpy as np

from npuc.core.errors import InvalidInputError, UnsupportedError

DTYPE_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
}
ELTWISE_KINDS = ("add", "sub", "mul", "max", "min")
MULTIPLIER_MAX = 32767


@dataclass(frozen=True, slots=True, kw_only=True)
class NpuTensor:
    """An activation: ``shape`` NHWC (N = 1), ``dtype`` int8/uint8/int16, scale, zero point."""

    name: str
    shape: tuple[int, int, int, int]
    dtype: str
    scale: float
    zero_point: int

    def __post_init__(self) -> None:
        where = f"NPU tensor {self.name!r}"
        if len(self.shape) != 4 or self.shape[0] != 1 or min(self.shape) < 1:
            raise InvalidInputError(f"{where}: shape {self.shape} must be (1, h, w, c), positive")
        if self.dtype not in DTYPE_RANGES:
            raise InvalidInputError(f"{where}: dtype {self.dtype!r} is not int8, uint8 or int16")
        lo, hi = DTYPE_RANGES[self.dtype]
        if not lo <= self.zero_point <= hi:
            raise InvalidInputError(f"{where}: zero_point {self.zero_point} outside [{lo}, {hi}]")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise InvalidInputError(f"{where}: scale {self.scale} must be positive and finite")

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "int16" else 1

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.elements * self.itemsize

    @property
    def hwc(self) -> tuple[int, int, int]:
        return self.shape[1], self.shape[2], self.shape[3]


def _fail(op: str, message: str) -> InvalidInputError:
    return InvalidInputError(f"NPU op {op!r}: {message}")


def _check_act(name: str, act_min: int, act_max: int, ofm: NpuTensor) -> None:
    lo, hi = DTYPE_RANGES[ofm.dtype]
    if not lo <= act_min <= act_max <= hi:
        raise _fail(name, f"act_min..act_max = {act_min}..{act_max} not inside [{lo}, {hi}]")


def _check_shift(name: str, field_name: str, value: int, hi: int) -> None:
    if not 0 <= value <= hi:
        raise _fail(name, f"{field_name} = {value} outside [0, {hi}]")


def window_out(size: int, pad_a: int, pad_b: int, k: int, stride: int, dilation: int = 1) -> int:
    """Output length of a window op along one axis."""
    return (size + pad_a + pad_b - dilation * (k - 1) - 1) // stride + 1


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuConv2d:
    """Convolution (regular, depthwise with ``groups == cin``, FC as a 1x1 conv on a 1x1 map).

    Rules (UnsupportedError otherwise): groups is 1 or ``cin`` (depthwise,
    ``cout`` a multiple of ``cin``); int8/uint8 or int16 ifm; stride and
    dilation in [1, 15]; kernel and padding at most 255; each pad smaller
    than the dilated kernel extent (every output row sees a real input row).
    """

    name: str
    ifm: NpuTensor
    ofm: NpuTensor
    weights: np.ndarray
    bias: np.ndarray | None
    bias_shift: int = 0
    ofm_multiplier: np.ndarray
    pre_shift: int = 0
    post_shift: int
    act_min: int
    act_max: int
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    groups: int = 1

    @property
    def depthwise(self) -> bool:
        return self.groups != 1

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weights.shape[1]), int(self.weights.shape[2])

    @property
    def macs(self) -> int:
        _, oh, ow, oc = self.ofm.shape
        return oh * ow * oc * int(np.prod(self.weights.shape[1:]))

    def validate(self) -> None:
        """Raise InvalidInputError / UnsupportedError naming the op (rules: class docstring)."""
        n = self.name
        h, w, cin = self.ifm.hwc
        _, oh, ow, cout = self.ofm.shape
        if self.weights.dtype != np.int8 or self.weights.ndim != 4:
            raise _fail(
                n, f"weights must be int8 OHWI, got {self.weights.dtype} {self.weights.shape}"
            )
        if self.groups not in (1, cin):
            raise UnsupportedError(
                f"NPU op {n!r}: groups = {self.groups}; the NPU runs groups 1 or depthwise"
                f" (groups = cin = {cin})",
                hint="split the grouped convolution into per-group convolutions",
            )
        cin_pg = 1 if self.depthwise else cin
        kh, kw = self.kernel
        if self.weights.shape != (cout, kh, kw, cin_pg) or (self.depthwise and cout % cin):
            raise _fail(
                n,
                f"weights {self.weights.shape} do not match ifm {self.ifm.shape}"
                f" / ofm {self.ofm.shape} / groups {self.groups}",
            )
        if self.bias is not None and (self.bias.dtype != np.int16 or self.bias.shape != (cout,)):
            raise _fail(n, f"bias must be int16 ({cout},), got {self.bias.dtype} {self.bias.shape}")
        m = self.ofm_multiplier
        if m.dtype != np.uint16 or m.shape not in ((cout,), (1,)) or int(m.max()) > MULTIPLIER_MAX:
            raise _fail(n, f"ofm_multiplier must be uint16 <= {MULTIPLIER_MAX}, ({cout},) or (1,)")
        _check_shift(n, "bias_shift", self.bias_shift, 31)
        _check_shift(n, "pre_shift", self.pre_shift, 16)
        _check_shift(n, "post_shift", self.post_shift, 47)
        _check_act(n, self.act_min, self.act_max, self.ofm)
        for v, what, hi in ((self.stride, "stride", 15), (self.dilation, "dilation", 15)):
            if not all(1 <= s <= hi for s in v):
                raise UnsupportedError(f"NPU op {n!r}: {what} {v} outside [1, {hi}]")
        if kh > 255 or kw > 255 or not all(0 <= p <= 255 for p in self.padding):
            raise UnsupportedError(f"NPU op {n!r}: kernel or padding above 255")
        top, left, bottom, right = self.padding
        dh, dw = self.dilation
        if max(top, bottom) >= dh * (kh - 1) + 1 or max(left, right) >= dw * (kw - 1) + 1:
            raise UnsupportedError(
                f"NPU op {n!r}: padding {self.padding} reaches past the dilated kernel;"
                " an output row would see only padding",
                hint="express the extra padding as an NpuPad before the convolution",
            )
        eh = window_out(h, top, bottom, kh, self.stride[0], dh)
        ew = window_out(w, left, right, kw, self.stride[1], dw)
        if (eh, ew) != (oh, ow):
            raise _fail(n, f"ofm is {oh}x{ow} but the geometry gives {eh}x{ew}")


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
                raise _fail(self.name, f"multiplier {v} outside [0, {MULTIPLIER_MAX}]")
        _check_shift(self.name, "post_shift", self.post_shift, 47)
        _check_act(self.name, self.act_min, self.act_max, self.ofm)


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
            raise _fail(n, f"ofm shape {self.ofm.shape}, the geometry gives {(1, eh, ew, c)}")
        if not 0 <= self.ofm_multiplier <= MULTIPLIER_MAX:
            raise _fail(n, f"ofm_multiplier {self.ofm_multiplier} outside [0, {MULTIPLIER_MAX}]")
        _check_shift(n, "post_shift", self.post_shift, 47)
        _check_act(n, self.act_min, self.act_max, self.ofm)


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
            raise _fail(self.name, f"shapes {self.ifm.shape} -> {self.ofm.shape} differ")
        if self.table.shape != (self.entries,) or str(self.table.dtype) != self.ofm.dtype:
            raise _fail(
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
            raise _fail(self.name, f"{self.ifm.shape} -> {self.ofm.shape} change the size")
        if not 0 <= self.ofm_multiplier <= MULTIPLIER_MAX:
            raise _fail(self.name, f"ofm_multiplier {self.ofm_multiplier} out of range")
        _check_shift(self.name, "post_shift", self.post_shift, 47)
        _check_act(self.name, self.act_min, self.act_max, self.ofm)


def _same_quant(name: str, a: NpuTensor, b: NpuTensor) -> None:
    if (a.dtype, a.scale, a.zero_point) != (b.dtype, b.scale, b.zero_point):
        raise UnsupportedError(
            f"NPU op {name!r}: {a.name} and {b.name} are quantized differently; data movement"
            " copies bytes",
            hint="insert an NpuRequant to the output's scale and zero point first",
        )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuConcat:
    """Concatenation along ``axis`` (1 = h, 2 = w, 3 = c) by DMA; all quantized alike."""

    name: str
    ifms: tuple[NpuTensor, ...]
    ofm: NpuTensor
    axis: int

    def validate(self) -> None:
        """Raise naming the op: shapes agree off the axis, sizes add up, same quantization."""
        if self.axis not in (1, 2, 3) or not self.ifms:
            raise _fail(self.name, f"axis {self.axis} must be 1, 2 or 3 with at least one ifm")
        total = 0
        for t in self.ifms:
            _same_quant(self.name, t, self.ofm)
            off = [d for i, d in enumerate(t.shape) if i != self.axis]
            if off != [d for i, d in enumerate(self.ofm.shape) if i != self.axis]:
                raise _fail(self.name, f"{t.name} {t.shape} does not match ofm {self.ofm.shape}")
            total += t.shape[self.axis]
        if total != self.ofm.shape[self.axis]:
            raise _fail(self.name, f"sizes along axis {self.axis} add to {total}")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuSlice:
    """``ofm = ifm[:, h0:h0+oh, w0:w0+ow, c0:c0+oc]`` by DMA; ``begin = (0, h0, w0, c0)``."""

    name: str
    ifm: NpuTensor
    ofm: NpuTensor
    begin: tuple[int, int, int, int]

    def validate(self) -> None:
        """Raise naming the op if the box leaves the input or the quantization differs."""
        _same_quant(self.name, self.ifm, self.ofm)
        if any(
            b < 0 or b + o > i
            for b, o, i in zip(self.begin, self.ofm.shape, self.ifm.shape, strict=True)
        ):
            raise _fail(self.name, f"slice {self.begin} + {self.ofm.shape} leaves {self.ifm.shape}")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuReshape:
    """Same bytes under a new shape (a DMA copy between DRAM tensors)."""

    name: str
    ifm: NpuTensor
    ofm: NpuTensor

    def validate(self) -> None:
        """Raise naming the op if the element count or quantization differs."""
        _same_quant(self.name, self.ifm, self.ofm)
        if self.ifm.elements != self.ofm.elements:
            raise _fail(self.name, f"{self.ifm.shape} -> {self.ofm.shape} change the size")


NpuOp = (
    NpuConv2d | NpuElementwise | NpuPool | NpuLut | NpuRequant | NpuConcat | NpuSlice | NpuReshape
)


def op_inputs(op: NpuOp) -> tuple[NpuTensor, ...]:
    """Activation tensors an op reads, in operand order."""
    if isinstance(op, NpuConcat):
        return op.ifms
    if isinstance(op, NpuElementwise):
        return (op.ifm, op.ifm2)
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
