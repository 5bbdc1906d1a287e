"""SRAM hazards: accesses by two units that no chain of tokens orders (spec section 6).

Two instructions on different units that touch a common SRAM byte, at least
one of them writing, must be ordered by a chain of tokens (the earlier one,
or a later instruction on its unit, signals a unit whose later instruction
... eventually the later access waits). Otherwise hardware could read stale
or torn data, whatever the simulated timing happens to be. This module finds
every such pair, independent of timing.

Method (a vector-clock race detector over a shadow of SRAM):

- Every executed instruction is named by its program index. Queues are in
  program order, so on one unit indices increase. ``clock[x]`` of an
  instruction is the highest index on unit ``x`` known to happen before it
  (its own unit: itself). A token carries the clock of the instruction that
  pushed it; the consumer joins it (element-wise max) into its own clock.
  Access ``A`` (index ``a`` on unit ``x``) happens before instruction ``B``
  iff ``a <= B.clock[x]``.
- A shadow of SRAM keeps, per byte, the last writer and, per unit, the last
  reader. A read must be ordered after the byte's last writer; a write after
  its last writer and after every unit's last reader. By transitivity this
  checks every earlier access of the byte, not just the last ones.

Cost: O(bytes accessed) numpy work per instruction (what executing it costs
anyway) and O(units) per token; nothing grows with the number of tokens or
instructions. The shadow grows on demand to the highest SRAM byte used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from npuc.core.isa.types import Unit
from npuc.npu_sim.memory import StridedRegion

UNIT_COUNT = len(Unit)
NONE = -1  # shadow value: no access yet
_ALWAYS_ORDERED = np.iinfo(np.int64).max


@dataclass(frozen=True, slots=True)
class Hazard:
    """Two unordered accesses to a common SRAM byte (``first`` ran earlier in the simulation)."""

    first_index: int
    first_write: bool
    second_index: int
    second_write: bool
    sram_addr: int


def new_clock() -> np.ndarray:
    """A clock that knows of no instruction (int64, one entry per unit)."""
    return np.full(UNIT_COUNT, NONE, dtype=np.int64)


def extended(clock: np.ndarray) -> np.ndarray:
    """``clock`` plus the entry of the virtual "no access" unit, which is always ordered."""
    return np.append(clock, _ALWAYS_ORDERED)


class HazardTracker:
    """Shadow SRAM with last writer / last readers per byte; see the module docstring.

    Parameters
    ----------
    unit_of
        The unit of every instruction, by program index (SYNC: its ``unit`` field).
    """

    def __init__(self, unit_of: np.ndarray) -> None:
        # unit_of[i + 1] is the unit of instruction i; slot 0 stands for "no access" and maps to
        # a virtual unit whose clock entry is always "ordered".
        self._unit_of = np.concatenate([[UNIT_COUNT], unit_of]).astype(np.int64)
        self._writer = np.zeros(0, dtype=np.int32)  # program index + 1, 0 = none
        self._readers = np.zeros((UNIT_COUNT, 0), dtype=np.int32)  # program index + 1

    def _grow(self, end: int) -> None:
        size = self._writer.size
        if end <= size:
            return
        new = max(end, 2 * size, 4096)
        self._writer = np.concatenate([self._writer, np.zeros(new - size, np.int32)])
        self._readers = np.concatenate(
            [self._readers, np.zeros((UNIT_COUNT, new - size), np.int32)], axis=1
        )

    @staticmethod
    def _view(shadow: np.ndarray, region: StridedRegion) -> np.ndarray:
        if region.row_count * region.plane_count == 1:
            return shadow[region.addr : region.addr + region.row_bytes]
        item = shadow.itemsize
        return as_strided(
            shadow[region.addr :],
            shape=(region.plane_count, region.row_count, region.row_bytes),
            strides=(region.plane_stride * item, region.row_stride * item, item),
            writeable=True,
        )

    def _unordered(self, last: np.ndarray, clock_ext: np.ndarray) -> np.ndarray | None:
        """Mask of bytes whose recorded access (index + 1 in ``last``) does not happen before.

        None when every byte is ordered. Fast path: a buffer is usually last
        touched by one instruction, so one scalar test decides.
        """
        hi = int(last.max())
        if hi == 0:
            return None
        lo = int(last.min())
        if lo == hi or (lo == 0 and not (last % hi).any()):  # one instruction (and maybe none)
            if clock_ext[self._unit_of[hi]] >= hi - 1:
                return None
            return last == hi
        bad = clock_ext[self._unit_of[last]] < last.astype(np.int64) - 1
        return bad if bad.any() else None

    def check(
        self,
        index: int,
        unit: int,
        clock_ext: np.ndarray,
        region: StridedRegion,
        write: bool,
    ) -> Hazard | None:
        """The first hazard of one SRAM access by instruction ``index``, or None.

        ``clock_ext`` is the instruction's clock (see :func:`extended`).
        """
        if region.total_bytes == 0:
            return None
        self._grow(region.addr + region.extent_bytes)
        writer = self._view(self._writer, region)
        bad = self._unordered(writer, clock_ext)
        if bad is not None:
            return self._hazard(index, write, region, writer, bad, first_write=True)
        if write:
            for x in range(UNIT_COUNT):
                if x == unit:
                    continue
                reader = self._view(self._readers[x], region)
                bad = self._unordered(reader, clock_ext)
                if bad is not None:
                    return self._hazard(index, write, region, reader, bad, first_write=False)
        return None

    def record(self, index: int, unit: int, region: StridedRegion, write: bool) -> None:
        """Remember an SRAM access of instruction ``index`` (after :meth:`check` of all of them)."""
        if region.total_bytes == 0:
            return
        self._grow(region.addr + region.extent_bytes)
        shadow = self._writer if write else self._readers[unit]
        self._view(shadow, region)[...] = index + 1

    def _hazard(
        self,
        index: int,
        write: bool,
        region: StridedRegion,
        shadow: np.ndarray,
        bad: np.ndarray,
        *,
        first_write: bool,
    ) -> Hazard:
        flat = np.flatnonzero(bad.reshape(-1))[0]
        pos = np.unravel_index(flat, bad.shape)
        if bad.ndim == 3:
            addr = (
                region.addr
                + int(pos[0]) * region.plane_stride
                + int(pos[1]) * region.row_stride
                + int(pos[2])
            )
        else:
            addr = region.addr + int(pos[0])
        other = int(shadow[pos]) - 1
        return Hazard(other, first_write, index, write, addr)
