"""SRAM and DRAM of the simulated NPU: byte arrays with checked, typed access.

Every access names what it is for (``"#12 CONV ifm"``) so a fault message
points at the instruction and operand. Guarantees:

- An access outside ``[0, size)`` raises :class:`SimulatorFault` before any
  byte is touched; so does an access whose address is not a multiple of its
  element size (int16: 2, int32: 4).
- Reads return copies (later writes never alias them); writes store
  little-endian values of the given dtype.
- ``high_water_bytes`` is one past the highest byte ever read or written
  (the SRAM peak the simulator reports), so it is also the smallest memory
  size on which the same program would have run.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from npuc.core.errors import SimulatorFault


class Memory:
    """A flat byte-addressed memory of ``size_bytes`` bytes, initially zero."""

    def __init__(self, name: str, size_bytes: int) -> None:
        self.name = name
        self.size_bytes = size_bytes
        self.data = np.zeros(size_bytes, dtype=np.uint8)
        self.high_water_bytes = 0

    def check(self, addr: int, nbytes: int, *, align: int, what: str) -> None:
        """Fault unless ``[addr, addr + nbytes)`` is inside the memory and ``addr`` is aligned."""
        if addr < 0 or nbytes < 0 or addr + nbytes > self.size_bytes:
            raise SimulatorFault(
                f"{what}: {self.name} access [{addr:#x}, {addr + nbytes:#x}) is outside "
                f"the {self.size_bytes:#x}-byte {self.name}",
                hint="the program addresses memory the device does not have; "
                "check the allocation or the --hw configuration",
            )
        if align > 1 and addr % align:
            raise SimulatorFault(
                f"{what}: {self.name} address {addr:#x} is not aligned to {align} bytes",
                hint="int16 operands need even addresses, int32 multiples of 4",
            )
        if nbytes:
            self.high_water_bytes = max(self.high_water_bytes, addr + nbytes)

    def read(self, addr: int, count: int, dtype: np.dtype, *, what: str) -> np.ndarray:
        """Read ``count`` elements of ``dtype`` starting at ``addr`` (a copy)."""
        dtype = np.dtype(dtype)
        nbytes = count * dtype.itemsize
        self.check(addr, nbytes, align=dtype.itemsize, what=what)
        return self.data[addr : addr + nbytes].view(dtype.newbyteorder("<")).astype(dtype)

    def write(self, addr: int, values: np.ndarray, *, what: str) -> None:
        """Store ``values`` (flattened, in their own dtype) starting at ``addr``."""
        flat = np.ascontiguousarray(values).reshape(-1)
        nbytes = flat.nbytes
        self.check(addr, nbytes, align=flat.dtype.itemsize, what=what)
        self.data[addr : addr + nbytes] = flat.astype(flat.dtype.newbyteorder("<")).view(np.uint8)

    def strided_view(self, desc: StridedRegion, *, what: str) -> np.ndarray:
        """A writable ``(plane_count, row_count, row_bytes)`` uint8 view of a 3-D strided region."""
        self.check(desc.addr, desc.extent_bytes, align=1, what=what)
        base = self.data[desc.addr :]
        return as_strided(
            base,
            shape=(desc.plane_count, desc.row_count, desc.row_bytes),
            strides=(desc.plane_stride, desc.row_stride, 1),
        )


class StridedRegion:
    """``plane_count`` x ``row_count`` rows of ``row_bytes`` contiguous bytes.

    Strides (``row_stride``, ``plane_stride``) are in bytes and non-negative.
    """

    __slots__ = ("addr", "plane_count", "plane_stride", "row_bytes", "row_count", "row_stride")

    def __init__(
        self,
        addr: int,
        row_bytes: int,
        row_count: int,
        row_stride: int,
        plane_count: int,
        plane_stride: int,
    ) -> None:
        self.addr = addr
        self.row_bytes = row_bytes
        self.row_count = row_count
        self.row_stride = row_stride
        self.plane_count = plane_count
        self.plane_stride = plane_stride

    @property
    def total_bytes(self) -> int:
        """Bytes transferred."""
        return self.row_bytes * self.row_count * self.plane_count

    @property
    def extent_bytes(self) -> int:
        """One past the last byte touched, relative to ``addr`` (0 for an empty region)."""
        if self.total_bytes == 0:
            return 0
        return (
            (self.plane_count - 1) * self.plane_stride
            + (self.row_count - 1) * self.row_stride
            + self.row_bytes
        )

    def maximal_runs(self) -> tuple[tuple[int, int], ...]:
        """The region as maximal contiguous runs: ``((run_bytes, how_many), ...)``.

        Rows are taken in copy order (plane by plane, row by row); a row that
        starts where the previous one ended extends its run, within a plane and
        across a plane boundary. Computed in O(1) from the strides, never per row.
        """
        rb, rc, rs = self.row_bytes, self.row_count, self.row_stride
        pc, ps = self.plane_count, self.plane_stride
        if rc == 1 or rs == rb:  # each plane is one contiguous block
            block = rb * rc
            if pc > 1 and ps == block:
                return ((block * pc, 1),)
            return ((block, pc),)
        # rows inside a plane are separate; only a plane boundary can join two rows
        if pc > 1 and ps == (rc - 1) * rs + rb:
            joined = pc - 1
            return tuple(r for r in ((2 * rb, joined), (rb, rc * pc - 2 * joined)) if r[1])
        return ((rb, rc * pc),)

    def self_overlapping(self) -> bool:
        """True when two runs of the region share a byte (ambiguous as a write target).

        Rows ``i`` and ``i + k`` share a byte iff some run offset difference
        ``a * row_stride`` (``|a| < row_count``) lies within ``row_bytes`` of the row
        shift ``k * plane_stride``; the closest ``a`` is next to ``k * plane_stride /
        row_stride``, so the check costs O(plane_count), never O(row_count * plane_count).
        """
        if self.total_bytes == 0 or self.row_count * self.plane_count == 1:
            return False
        if self.row_count > 1 and self.row_stride < self.row_bytes:
            return True
        if self.plane_count == 1:
            return False
        shift = np.arange(1, self.plane_count, dtype=np.int64) * self.plane_stride
        if self.row_count == 1:
            return bool(np.any(shift < self.row_bytes))
        nearest = shift // self.row_stride
        for a in (nearest, nearest + 1):
            a = np.clip(a, -(self.row_count - 1), self.row_count - 1)
            if np.any(np.abs(shift - a * self.row_stride) < self.row_bytes):
                return True
        return False


def intervals_overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether half-open byte intervals ``[a0, a1)`` and ``[b0, b1)`` intersect."""
    return a[0] < b[1] and b[0] < a[1] and a[0] < a[1] and b[0] < b[1]


EXACT_RUNS_LIMIT = 1 << 24  # runs compared byte-exactly; beyond it, bounding boxes


def _coverage(region: StridedRegion, lo: int, hi: int) -> np.ndarray:
    """Boolean mask over ``[lo, hi)`` of the bytes ``region`` touches."""
    starts = (
        region.addr
        + np.arange(region.plane_count, dtype=np.int64)[:, None] * region.plane_stride
        + np.arange(region.row_count, dtype=np.int64)[None, :] * region.row_stride
    ).reshape(-1)
    first = np.clip(starts, lo, hi) - lo
    last = np.clip(starts + region.row_bytes, lo, hi) - lo
    keep = last > first
    edges = np.zeros(hi - lo + 1, dtype=np.int64)
    np.add.at(edges, first[keep], 1)
    np.add.at(edges, last[keep], -1)
    return np.cumsum(edges[:-1]) > 0


def regions_intersect(a: StridedRegion, b: StridedRegion) -> bool:
    """Whether two strided regions share at least one byte (exact, not just bounding boxes)."""
    lo = max(a.addr, b.addr)
    hi = min(a.addr + a.extent_bytes, b.addr + b.extent_bytes)
    if lo >= hi:
        return False
    dense_a = a.row_count * a.plane_count == 1
    dense_b = b.row_count * b.plane_count == 1
    if dense_a and dense_b:
        return True
    if a.row_count * a.plane_count + b.row_count * b.plane_count > EXACT_RUNS_LIMIT:
        return True  # conservative for pathological descriptors: treat as intersecting
    return bool(np.any(_coverage(a, lo, hi) & _coverage(b, lo, hi)))
