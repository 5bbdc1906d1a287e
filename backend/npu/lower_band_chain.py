"""Lowering of :class:`NpuBandChain`: a residual block computed band by band in SRAM.

Requires: a validated :class:`NpuBandChain` and the SRAM budget. For a band
height ``R``, output rows ``[r0, r1)`` of band ``k`` are computed by four
*band ops*, each the block's op restricted to whole rows and planned by the
ordinary lowerings (:func:`plan_window`, :func:`plan_flat`) with its
band-sized operands SRAM-resident:

1. ``head``: input rows ``[r0 - p, r1 + p)`` (clipped to the map; ``p`` the
   ``mid`` padding) -> buffer ``a1``;
2. ``mid``: ``a1`` -> buffer ``a2`` (rows ``[r0, r1)``), vertical padding
   only where the band meets the map's top or bottom edge;
3. ``tail``: ``a2`` -> buffer ``b{k % 2}`` (two, so the add of one band
   overlaps the convolutions of the next);
4. ``add``: ``b{k % 2}`` and input rows ``[r0, r1)`` -> output rows ``[r0, r1)``.

The block input and output are read and written in place when the cascade
keeps them in SRAM (``resident``), else moved by the band ops' own DMA.
Each convolution's weights are loaded once, by its first band; later bands
use the same buffer (*weights resident across bands*). Program order is
``head(0) mid(0) tail(0)``, then for each next band ``head(k) add(k-1)
mid(k) tail(k)``, and ``add(n-1)`` last: each ``add`` comes after the
``head`` of the next band, which reads the last ``p`` input rows of this
band, so the output may overwrite the input in place (the scheduler derives
every hazard from the byte ranges; order only decides what overlaps).

Guarantees: the steps compute exactly the four ops (each band op computes
whole output rows of its op from the same operands); the band height is the
one with the fewest estimated cycles (replay of the plan's own steps under
the token rules with the compiler's costs, placeholder addresses) among
those whose buffers fit the budget; UnsupportedError when none fits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from npuc.backend.npu import encode
from npuc.backend.npu.allocate import Buffer
from npuc.backend.npu.band_chain import BandMemo, NpuBandChain, chain_geometry
from npuc.backend.npu.lower_flat import plan_flat
from npuc.backend.npu.lower_window import plan_window
from npuc.backend.npu.ops import NpuConv2d, NpuElementwise, NpuTensor
from npuc.backend.npu.perf import ceil_div
from npuc.backend.npu.plan import OpPlan, replay_alone
from npuc.backend.npu.schedule import Step
from npuc.backend.npu.tensor import DTYPE_RANGES
from npuc.backend.npu.tiling import ALIGN, WindowTiling, align, weight_block_bytes
from npuc.core.errors import UnsupportedError
from npuc.core.hw.config import HwConfig

ROLES = ("head", "mid", "tail", "add")
CANDIDATES = 4  # band heights estimated (the tallest that fit): compile time
ADD_SHARE = 4  # a non-resident add's chunk buffers get at most this fraction of the spare budget


@dataclass(frozen=True, slots=True)
class _Band:
    """Band ``k``: output rows ``[r0, r1)``; ``head`` computes rows ``[h0, h1)`` (maybe none),
    ``mid`` reads rows ``[m0, m1)``."""

    k: int
    r0: int
    r1: int
    h0: int
    h1: int
    m0: int
    m1: int


def _bands(op: NpuBandChain, rows: int) -> list[_Band]:
    h = op.ifm.shape[1]
    p = op.halo
    out = []
    for k, r0 in enumerate(range(0, h, rows)):
        r1 = min(h, r0 + rows)
        h0 = 0 if k == 0 else min(h, r0 + p)
        out.append(_Band(k, r0, r1, h0, min(h, r1 + p), max(0, r0 - p), min(h, r1 + p)))
    return out


def _rows(t: NpuTensor, name: str, n: int) -> NpuTensor:
    return dataclasses.replace(t, name=name, shape=(1, n, t.shape[2], t.shape[3]))


def _band_ops(
    op: NpuBandChain, b: _Band
) -> tuple[NpuConv2d | None, NpuConv2d, NpuConv2d, NpuElementwise]:
    """The four ops restricted to band ``b`` (tensor names: module-private views, the same
    in every band; ``make_steps`` maps them per band); no head when the band's new ``mid``
    input rows were all computed before."""
    head, mid, tail, add = op.parts
    p = op.halo
    a1_m = _rows(head.ofm, f"{op.name}#a1m", b.m1 - b.m0)
    a2 = _rows(mid.ofm, f"{op.name}#a2", b.r1 - b.r0)
    bt = _rows(tail.ofm, f"{op.name}#b", b.r1 - b.r0)
    x_a = _rows(op.ifm, f"{op.name}#xa", b.r1 - b.r0)
    y = _rows(op.ofm, f"{op.name}#y", b.r1 - b.r0)
    pads = (p - (b.r0 - b.m0), p, p - (b.m1 - b.r1), p)
    if add.ifm.name == tail.ofm.name:
        ab = dataclasses.replace(add, ifm=bt, ifm2=x_a, ofm=y)
    else:
        ab = dataclasses.replace(add, ifm=x_a, ifm2=bt, ofm=y)
    return (
        None
        if b.h1 <= b.h0
        else dataclasses.replace(
            head,
            ifm=_rows(op.ifm, f"{op.name}#x", b.h1 - b.h0),
            ofm=_rows(head.ofm, f"{op.name}#a1h", b.h1 - b.h0),
        ),
        dataclasses.replace(mid, ifm=a1_m, ofm=a2, padding=pads),
        dataclasses.replace(tail, ifm=a2, ofm=bt),
        ab,
    )


Sub = tuple[NpuConv2d | None, NpuConv2d, NpuConv2d, NpuElementwise]


def _build(
    op: NpuBandChain,
    hw: HwConfig,
    budget: int,
    rows: int,
    io: tuple[bool, bool],
    cache: dict[tuple[object, ...], WindowTiling] | None,
) -> tuple[tuple[Buffer, ...], list[list[OpPlan | None]], list[_Band], list[Sub]]:
    """Buffers (name -> the largest any band needs), each role's band plans, the bands."""
    bands = _bands(op, rows)
    n_b = 2 if len(bands) > 1 else 1
    p = op.halo
    _, w, _ = op.ifm.hwc
    fixed = [
        Buffer("a1", align((rows + 2 * p) * w * op.head.ofm.shape[3] * op.head.ofm.itemsize), 0, 1),
        Buffer("a2", align(rows * w * op.mid.ofm.shape[3] * op.mid.ofm.itemsize), 0, 1),
    ]
    fixed += [
        Buffer(f"b{i}", align(rows * w * op.tail.ofm.shape[3] * op.tail.ofm.itemsize), 0, 1)
        for i in range(n_b)
    ]
    spare = budget - sum(b.nbytes for b in fixed)
    if spare <= 0:
        raise UnsupportedError(f"NPU op {op.name!r}: bands of {rows} row(s) do not fit")
    sub = [_band_ops(op, b) for b in bands]
    plans: list[list[OpPlan | None]] = [[], [], [], []]
    memo: dict[tuple[object, ...], OpPlan] = {}  # bands of one shape share their plans
    for ops in sub:
        for r, plan in enumerate(_band_plans(op, ops, hw, spare, io, cache, memo)):
            plans[r].append(plan)
    sizes: dict[str, int] = {}
    for role, role_plans in zip(ROLES, plans, strict=True):
        for plan in role_plans:
            for b in plan.sram if plan is not None else ():
                key = f"{role}.{b.name}"
                sizes[key] = max(sizes.get(key, 0), align(b.nbytes))
    buffers = (*fixed, *(Buffer(n, s, 0, 1) for n, s in sizes.items()))
    if sum(b.nbytes for b in buffers) > budget:
        raise UnsupportedError(f"NPU op {op.name!r}: bands of {rows} row(s) do not fit")
    return buffers, plans, bands, sub


def _band_plans(
    op: NpuBandChain,
    ops: Sub,
    hw: HwConfig,
    spare: int,
    io: tuple[bool, bool],
    cache: dict[tuple[object, ...], WindowTiling] | None,
    memo: dict[tuple[object, ...], OpPlan],
) -> tuple[OpPlan | None, OpPlan, OpPlan, OpPlan]:
    """One band's four plans within ``spare`` bytes (``memo``: by role and band shape)."""
    head, mid, tail, add = ops

    def weights_only(conv: NpuConv2d) -> int:  # resident input and output: weights only
        need = weight_block_bytes(conv, conv.ofm.shape[3])
        if need > spare:
            raise UnsupportedError(f"NPU op {op.name!r}: the band's weights do not fit")
        return need

    key: tuple[object, ...] = ("mid", mid.ifm.shape, mid.padding)
    if key not in memo:
        res = frozenset({mid.ifm.name, mid.ofm.name})
        memo[key] = plan_window(mid, hw, weights_only(mid), cache, res)
    pm = memo[key]
    key = ("tail", tail.ifm.shape)
    if key not in memo:
        res = frozenset({mid.ofm.name, tail.ofm.name})
        memo[key] = plan_window(tail, hw, weights_only(tail), cache, res)
    pt = memo[key]
    left = spare - sum(align(x.nbytes) for x in (*pm.sram, *pt.sram))
    key = ("add", add.ofm.shape)
    if key not in memo:
        x_in = add.ifm2 if add.ifm.name == tail.ofm.name else add.ifm
        res = frozenset(
            {tail.ofm.name}
            | ({add.ofm.name} if io[1] else set())
            | ({x_in.name} if io[0] else set())
        )
        share = ALIGN if io == (True, True) else max(left // ADD_SHARE, 1)
        memo[key] = plan_flat(add, hw, share, res)
    pa = memo[key]
    left -= sum(align(x.nbytes) for x in pa.sram)
    if head is None:
        return None, pm, pt, pa
    key = ("head", head.ifm.shape)
    if key not in memo:
        res = frozenset({head.ofm.name} | ({head.ifm.name} if io[0] else set()))
        memo[key] = plan_window(head, hw, weights_only(head) if io[0] else left, cache, res)
    return memo[key], pm, pt, pa


def _slide(op: NpuBandChain, b: _Band, a1: int) -> Step:
    """ITP copy of the ``head`` rows the next band's ``mid`` reads again to the buffer's top."""
    p = op.halo
    t = op.head.ofm
    row = t.shape[2] * t.shape[3]
    lo, hi = DTYPE_RANGES[t.dtype]
    q = encode.Requant(ofm_multiplier=1, post_shift=0, act_min=lo, act_max=hi)
    src = a1 + (b.r1 - b.r0) * row * t.itemsize  # slot of row r1 - p in this band's layout
    count = (min(b.m1, b.r1 + p) - (b.r1 - p)) * row
    return encode.requant((src, t.dtype), (a1, t.dtype), count, q, op.head.name)


class _Over(Mapping[str, int]):
    """Addresses by name from the first of ``maps`` that has it, else from the last one
    (which may answer every name, as the cascade's all-zero map does)."""

    def __init__(self, *maps: Mapping[str, int]) -> None:
        self.maps = maps

    def __getitem__(self, key: str) -> int:
        for m in self.maps[:-1]:
            if key in m:
                return m[key]
        return self.maps[-1][key]

    def __iter__(self) -> Iterator[str]:
        return iter({k for m in self.maps for k in m})

    def __len__(self) -> int:
        return len({k for m in self.maps for k in m})


def _weight_steps(plan: OpPlan | None) -> int:
    """How many leading steps of a convolution's band plan load its (single-block) weights."""
    if plan is None:
        return 0
    return sum(len(encode.dma(True, 0, 0, encode.contiguous(len(d)))) for _, d in plan.constants)


def plan_band_chain(
    op: NpuBandChain,
    hw: HwConfig,
    sram_budget: int,
    cache: dict[tuple[object, ...], WindowTiling] | None = None,
    resident: frozenset[str] = frozenset(),
    memo: BandMemo | None = None,
) -> OpPlan:
    """The chain's plan (module docstring); ``resident``: which of the block's input and
    output the cascade keeps whole in SRAM (``"@" + name`` in ``make_steps``' SRAM map).
    ``memo``: band heights and estimates already chosen for blocks of the same geometry
    (repeated blocks plan once); filled in place."""
    io = (op.ifm.name in resident, op.ofm.name in resident)
    key = (chain_geometry(op), sram_budget, io)
    if memo is not None and key in memo:
        rows, est = memo[key]
        if rows < 0:
            raise UnsupportedError(f"NPU op {op.name!r}: no band height fits")
        return _plan_rows(op, hw, sram_budget, rows, io, cache, est)
    h = op.ifm.shape[1]
    best: OpPlan | None = None
    best_rows = -1
    last: UnsupportedError | None = None
    # several bands need at least 2 * halo rows each: the slide copies to disjoint rows;
    # from the tallest bands down, the first CANDIDATES that fit are estimated
    tried = 0
    for rows in sorted({ceil_div(h, n) for n in range(1, h + 1)}, reverse=True):
        if tried == CANDIDATES or (rows < h and rows < 2 * op.halo):
            break
        try:
            plan = _plan_rows(op, hw, sram_budget, rows, io, cache)
        except UnsupportedError as err:
            last = err
            continue
        tried += 1
        if best is None or plan.est_cycles < best.est_cycles:
            best, best_rows = plan, rows
    if memo is not None:
        memo[key] = (best_rows, best.est_cycles if best is not None else 0)
    if best is None:
        raise last or UnsupportedError(f"NPU op {op.name!r}: no band height fits")
    return best


def _plan_rows(
    op: NpuBandChain,
    hw: HwConfig,
    budget: int,
    rows: int,
    io: tuple[bool, bool],
    cache: dict[tuple[object, ...], WindowTiling] | None,
    est: int | None = None,
) -> OpPlan:
    """The plan with bands of ``rows`` rows (``est``: its estimate when already known)."""
    buffers, plans, bands, sub = _build(op, hw, budget, rows, io, cache)
    n_w = [_weight_steps(plans[r][0]) for r in range(3)]
    consts = tuple(c for role_plans in plans[:3] for c in role_plans[0].constants)  # type: ignore[union-attr]
    _, w, c = op.ifm.hwc
    p = op.halo
    row_in = w * c * op.ifm.itemsize
    row_out = w * op.ofm.shape[3] * op.ofm.itemsize
    row_a1 = w * op.head.ofm.shape[3] * op.head.ofm.itemsize

    def views(b: _Band, ops: Sub, dram: Mapping[str, int], sram: Mapping[str, int]) -> tuple:
        """Band ``b``'s tensors: DRAM addresses ``d`` and SRAM addresses ``s`` by name."""
        head, mid, tail, add = ops
        d: dict[str, int] = {}
        s: dict[str, int] = {}
        x_a = f"{op.name}#xa"
        x_h = f"{op.name}#x"
        if io[0]:
            s["@" + x_h] = sram["@" + op.ifm.name] + b.h0 * row_in
            s["@" + x_a] = sram["@" + op.ifm.name] + b.r0 * row_in
        else:
            d[x_h] = dram.get(op.ifm.name, 0) + b.h0 * row_in
            d[x_a] = dram.get(op.ifm.name, 0) + b.r0 * row_in
        if io[1]:
            s["@" + add.ofm.name] = sram["@" + op.ofm.name] + b.r0 * row_out
        else:
            d[add.ofm.name] = dram.get(op.ofm.name, 0) + b.r0 * row_out
        # a1 slot of row r in band b: r - r0 + p (the slide keeps that true for every band)
        if head is not None:
            s["@" + head.ofm.name] = sram["a1"] + (b.h0 - b.r0 + p) * row_a1
        s["@" + mid.ifm.name] = sram["a1"] + (b.m0 - b.r0 + p) * row_a1
        s["@" + mid.ofm.name] = sram["a2"]
        s["@" + tail.ofm.name] = sram[f"b{b.k % 2}"]
        return d, s

    def make_steps(dram: Mapping[str, int], sram: Mapping[str, int]) -> list[Step]:
        out: list[Step] = []
        pending: list[Step] = []  # the previous band's add, emitted after this band's head
        for b, ops in zip(bands, sub, strict=True):
            d, s = views(b, ops, dram, sram)
            made: list[list[Step]] = []
            for r, role in enumerate(ROLES):
                plan = plans[r][b.k]
                if plan is None:
                    made.append([])
                    continue
                own = {x.name: sram[f"{role}.{x.name}"] for x in plan.sram}
                got = plan.make_steps(_Over(d, dram), _Over(own, s, sram))
                made.append(got[n_w[r] :] if r < 3 and b.k > 0 else got)
            head_s, mid_s, tail_s, add_s = made
            out += head_s + pending + mid_s
            if b.k + 1 < len(bands):
                out.append(_slide(op, b, sram["a1"]))
            out += tail_s
            pending = add_s
        return out + pending

    names = ", ".join(x.name for x in op.parts)
    mid_plan = plans[1][0]
    plan = OpPlan(
        op.name,
        type(op).__name__,
        consts,
        buffers,
        est or 0,
        f"row-band chain ({names}): {len(bands)} band(s) of {rows} row(s), weights loaded"
        f" once; {mid_plan.tiling if mid_plan is not None else ''}",
        op.macs,
        make_steps,
    )
    if est is not None:
        return plan
    tensors = [(op.ifm.name, op.ifm.nbytes), (op.ofm.name, op.ofm.nbytes)]
    # A resident input and output lie in place above the op's window.
    cycles = replay_alone(tensors, plan, hw, budget, resident=(op.ifm.name, op.ofm.name))
    return dataclasses.replace(plan, est_cycles=cycles)
