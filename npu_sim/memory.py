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
        """A writable ``(n2, n1, run_bytes)`` uint8 view of a 3-D strided region."""
        self.check(desc.addr, desc.extent_bytes, align=1, what=what)
        base = self.data[desc.addr :]
        return as_strided(
            base, shape=(desc.n2, desc.n1, desc.run_bytes), strides=(desc.stride2, desc.stride1, 1)
        )


class StridedRegion:
    """``n2`` x ``n1`` runs of ``run_bytes`` contiguous bytes, strides in bytes (non-negative)."""

    __slots__ = ("addr", "n1", "n2", "run_bytes", "stride1", "stride2")

    def __init__(
        self, addr: int, run_bytes: int, n1: int, stride1: int, n2: int, stride2: int
    ) -> None:
        self.addr = addr
        self.run_bytes = run_bytes
        self.n1 = n1
        self.stride1 = stride1
        self.n2 = n2
        self.stride2 = stride2

    @property
    def total_bytes(self) -> int:
        """Bytes transferred."""
        return self.run_bytes * self.n1 * self.n2

    @property
    def extent_bytes(self) -> int:
        """One past the last byte touched, relative to ``addr`` (0 for an empty region)."""
        if self.total_bytes == 0:
            return 0
        return (self.n2 - 1) * self.stride2 + (self.n1 - 1) * self.stride1 + self.run_bytes

    def contiguous_runs(self) -> tuple[int, int]:
        """``(run_bytes, runs)`` after merging levels that are contiguous in memory."""
        run, runs1 = self.run_bytes, self.n1
        if self.n1 > 1 and self.stride1 == self.run_bytes:
            run, runs1 = self.run_bytes * self.n1, 1
        runs = runs1 * self.n2
        if runs1 == 1 and self.n2 > 1 and self.stride2 == run:
            run, runs = run * self.n2, 1
        return run, runs

    def self_overlapping(self) -> bool:
        """True when two runs of the region share a byte (ambiguous as a write target).

        Rows ``i`` and ``i + k`` share a byte iff some run offset difference
        ``a * stride1`` (``|a| < n1``) lies within ``run_bytes`` of the row
        shift ``k * stride2``; the closest ``a`` is next to ``k * stride2 /
        stride1``, so the check costs O(n2), never O(n1 * n2).
        """
        if self.total_bytes == 0 or self.n1 * self.n2 == 1:
            return False
        if self.n1 > 1 and self.stride1 < self.run_bytes:
            return True
        if self.n2 == 1:
            return False
        shift = np.arange(1, self.n2, dtype=np.int64) * self.stride2
        if self.n1 == 1:
            return bool(np.any(shift < self.run_bytes))
        nearest = shift // self.stride1
        for a in (nearest, nearest + 1):
            a = np.clip(a, -(self.n1 - 1), self.n1 - 1)
            if np.any(np.abs(shift - a * self.stride1) < self.run_bytes):
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
        + np.arange(region.n2, dtype=np.int64)[:, None] * region.stride2
        + np.arange(region.n1, dtype=np.int64)[None, :] * region.stride1
    ).reshape(-1)
    first = np.clip(starts, lo, hi) - lo
    last = np.clip(starts + region.run_bytes, lo, hi) - lo
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
    dense_a = a.n1 * a.n2 == 1
    dense_b = b.n1 * b.n2 == 1
    if dense_a and dense_b:
        return True
    if a.n1 * a.n2 + b.n1 * b.n2 > EXACT_RUNS_LIMIT:
        return True  # conservative for pathological descriptors: treat as intersecting
    return bool(np.any(_coverage(a, lo, hi) & _coverage(b, lo, hi)))
