"""Shapes, dot-product kinds and tile planning of the int8 convolution kernels.

:mod:`.int8_kernel` builds the kernels from what this module decides: the
:class:`ConvKernelSpec` of a layer (made by
:func:`npuc.backend.cpu.qlower.int8_conv.plan_conv`), the :class:`DotKind`
of the target and the :class:`TilePlan` (register tiles and the order of the
parallel jobs). Operand layouts: :mod:`.int8_kernel`'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

#: Function attribute holding the :class:`ConvKernelSpec` of a kernel (a map of ints).
SPEC_ATTR = "npuc.int8_conv"

#: Input channels per 32-bit group (the VNNI dot-product depth).
GROUP = 4

#: Positions per output tile: the flattened output grid is padded to this multiple.
TILE_POSITIONS = 16

#: Output channels per tile: the output channels are padded to this multiple.
TILE_CHANNELS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvKernelSpec:
    """Shapes and output stage of one kernel (:mod:`.int8_kernel`: names and layout).

    ``need_sat32`` is false when the bounds prove the ahead-shifted value
    always fits int32 (then the clamp is skipped); ``narrow`` when even
    ``sum + BIAS`` fits int32 (then that stage runs in int32). ``lo``/``hi`` are the
    output type's range. ``matvec`` marks a one-row dense layer run by
    :mod:`.int8_matvec` (its own operand layout). ``groups`` is the convolution's
    group count and ``group_cin`` its input channels per group (used when
    ``groups > 1``): ``cg``, ``ocp`` and ``oc`` are then per group; group ``g``
    reads the ``cg`` channel groups of ``X`` from ``(g * group_cin) // 4``
    (:attr:`x_groups` in all), its ``ocp`` rows of ``W`` and the per-channel
    operands from ``g * ocp``, and writes channels ``[g oc, (g+1) oc)`` of ``Y``.
    ``fits32`` when the bounds prove ``rshift_round(acc32 * M, post_shift) + ofm_zp``
    fits int32 (then the products' halves merge into one int32 vector before the clamp).
    """

    n: int
    cg: int
    phases: int
    q: int
    ocp: int
    ppad: int
    oc: int
    oh: int
    ow: int
    kh: int
    kw: int
    stride_h: int
    stride_w: int
    dil_h: int
    dil_w: int
    wq: int
    zp_u: int
    pre_shift: int
    post_shift: int
    ofm_zp: int
    act_min: int
    act_max: int
    lo: int
    hi: int
    need_sat32: int
    narrow: int
    out_signed: int
    out_bits: int
    matvec: int = 0
    groups: int = 1
    group_cin: int = 0
    fits32: int = 0

    def __post_init__(self) -> None:
        if self.ocp % TILE_CHANNELS or self.ppad % TILE_POSITIONS:
            raise ValueError(f"int8 conv kernel: ocp/ppad not tile multiples: {self}")
        if self.groups < 1 or (self.groups > 1 and (self.matvec or self.group_cin < 1)):
            raise ValueError(
                f"int8 conv kernel: groups must be >= 1 (1 for matvec; group_cin set when"
                f" above 1): {self}"
            )

    def x_base(self, g: Any) -> Any:
        """The first channel group of ``X`` that convolution group ``g`` reads."""
        return g * self.group_cin // GROUP if self.groups > 1 else 0

    @property
    def x_groups(self) -> int:
        """Channel groups of ``X``: ``cg`` from the last group's first one."""
        return int(self.x_base(self.groups - 1)) + self.cg

    @property
    def out_dtype(self) -> str:
        return f"{'int' if self.out_signed else 'uint'}{self.out_bits}"

    def to_attr(self) -> dict[str, int]:
        """The spec as a function attribute value."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_attr(cls, attr: Any) -> ConvKernelSpec:
        """Inverse of :meth:`to_attr` (``attr`` as TVM returns it: a map of IntImm)."""
        return cls(**{str(k): int(v) for k, v in attr.items()})


@dataclass(frozen=True, slots=True)
class DotKind:
    """One dot-product implementation: ``lanes`` int32 results per vector, a register
    tile of ``rows`` output channels by ``vectors`` vectors of positions (the last
    tile of each axis is smaller when the padded grid or channels are not whole
    tiles). A grid of at most :data:`SMALL_GRID_VECTORS` vectors that ``vectors`` does
    not divide runs as one tile of all its vectors by ``small_rows`` channels when
    ``small_rows`` is set (7x7 maps: 4 vectors, not 3 + 1)."""

    name: str
    lanes: int
    rows: int
    vectors: int
    small_rows: int = 0


#: The most position vectors :attr:`DotKind.small_rows` tiles hold.
SMALL_GRID_VECTORS = 4

VNNI512 = DotKind("vnni512", 16, 8, 3, small_rows=6)
AVXVNNI = DotKind("avxvnni", 8, 4, 2)
AVX2 = DotKind("avx2", 8, 4, 2)
GENERIC = DotKind("generic", 16, 4, 1)
DOT_KINDS = {k.name: k for k in (VNNI512, AVXVNNI, AVX2, GENERIC)}


def clamp_bounds(s: ConvKernelSpec) -> list[int]:
    """``[lo1, hi1(, lo2, hi2)]``: the reference's two clamps (activation, then type) as
    one when their ranges overlap (then equal: ``clip(clip(v, a, b), l, h) == clip(v,
    max(a, l), min(b, h))``), else both in the reference's order."""
    lo, hi = max(s.act_min, s.lo), min(s.act_max, s.hi)
    return [lo, hi] if lo <= hi else [s.act_min, s.act_max, s.lo, s.hi]


#: Bytes of weights one group of output-channel tiles may hold: the group runs over every
#: position tile before the next group starts, so its weights stay in L2 while the
#: input rows of a position tile are reused by every channel tile of the group.
WEIGHT_GROUP_BYTES = 1 << 20


def channel_groups(blocks: int, block_bytes: int) -> tuple[int, int]:
    """``(groups, per_group)``: ``blocks`` channel tiles of ``block_bytes`` weights each in
    the fewest groups of at most :data:`WEIGHT_GROUP_BYTES` (at least one tile per group),
    balanced; ``groups * per_group >= blocks``."""
    per = max(1, min(blocks, WEIGHT_GROUP_BYTES // max(block_bytes, 1)))
    groups = -(-blocks // per)
    return groups, -(-blocks // groups)


#: Input bytes (``X`` of one image and convolution group) small enough to stay in L2 while
#: every channel tile runs over all of them (AVX2 kernels: then each channel tile's weights
#: are read once per call, not once per position tile; ResNet-50's 7x7 layers).
RESIDENT_INPUT_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class TilePlan:
    """Register tiles and job order of one kernel: tiles of ``rows`` channels by ``vecs``
    vectors (``lanes`` positions each); ``ob`` channel tiles per convolution group
    (the last ``row_tail`` rows when not 0), ``pb`` position tiles (the last of
    ``vec_tail`` vectors when not 0); the channel tiles run in ``wgroups`` weight
    groups of ``per`` tiles (:func:`channel_groups`). ``jobs`` parallel jobs, ordered
    by image, convolution group, weight group, position tile, channel tile."""

    lanes: int
    rows: int
    vecs: int
    ob: int
    pb: int
    row_tail: int
    vec_tail: int
    wgroups: int
    per: int
    jobs: int


def plan_tiles(s: ConvKernelSpec, kind: DotKind) -> TilePlan:
    """The :class:`TilePlan` of ``s`` for ``kind``. Raises ValueError when ``kind``'s
    vectors do not divide :data:`TILE_POSITIONS`."""
    lanes, rows, vecs = kind.lanes, kind.rows, kind.vectors
    if TILE_POSITIONS % lanes:
        raise ValueError(f"int8 conv kernel: {kind} vectors do not divide the padding")
    # vectors holding some grid position ``< oh * wq`` (the rest is padding to
    # TILE_POSITIONS, never stored: one of 8 vectors of 8 lanes on a 7x7 map)
    nvec = -(-min(s.ppad, s.oh * s.wq) // lanes)
    if kind.small_rows and nvec % vecs and nvec <= SMALL_GRID_VECTORS:
        rows, vecs = kind.small_rows, nvec
    ob, pb = -(-s.ocp // rows), -(-nvec // vecs)
    staged = kind.name == "avx2"  # weights staged as int16: 8 bytes per group of 4
    if staged and s.cg * s.phases * s.q * GROUP <= RESIDENT_INPUT_BYTES:
        wgroups, per = ob, 1  # every position tile of a channel tile in turn
    else:
        wgroups, per = channel_groups(ob, rows * s.cg * s.kh * s.kw * (8 if staged else 4))
    return TilePlan(
        lanes=lanes, rows=rows, vecs=vecs, ob=ob, pb=pb, row_tail=s.ocp % rows,
        vec_tail=nvec % vecs, wgroups=wgroups, per=per,
        jobs=s.n * s.groups * wgroups * pb * per,
    )  # fmt: skip
