"""Address allocation by liveness (SRAM buffers within an op, DRAM intermediates across ops).

Requires: buffers with a size, an alignment and a live interval ``[start, end)``
in some abstract time (op index, tile index).

Guarantees (property-tested): two buffers whose live intervals intersect
never share a byte; every address is a multiple of the buffer's alignment;
every buffer ends at or below ``capacity`` or :class:`AllocationError` is
raised naming the buffer. ``peak_bytes`` is the highest end address used.
Strategy: first fit, larger buffers first (ties: earlier start, then name).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from npuc.core.errors import UnsupportedError


class AllocationError(UnsupportedError):
    """The buffers do not fit the memory (the message names the first one that does not)."""


@dataclass(frozen=True, slots=True)
class Buffer:
    """A buffer to place: ``nbytes`` live over ``[start, end)``, aligned to ``align``."""

    name: str
    nbytes: int
    start: int
    end: int
    align: int = 64


@dataclass(frozen=True, slots=True)
class Allocation:
    """Address of every buffer by name, and the peak (one past the highest byte used)."""

    addresses: dict[str, int]
    peak_bytes: int


def _align(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def allocate(
    buffers: Sequence[Buffer], *, capacity: int, base: int = 0, memory: str = "SRAM"
) -> Allocation:
    """Place ``buffers`` in ``[base, capacity)``; see the module guarantees."""
    placed: list[tuple[Buffer, int]] = []
    addresses: dict[str, int] = {}
    peak = base
    order = sorted(buffers, key=lambda b: (-b.nbytes, b.start, b.name))
    for buf in order:
        if buf.name in addresses:
            raise ValueError(f"buffer {buf.name!r} is given twice")
        live = sorted(
            (addr, addr + other.nbytes)
            for other, addr in placed
            if other.start < buf.end and buf.start < other.end
        )
        addr = _align(base, buf.align)
        for lo, hi in live:
            if addr + buf.nbytes <= lo:
                break
            addr = max(addr, _align(hi, buf.align))
        if addr + buf.nbytes > capacity:
            raise AllocationError(
                f"{memory} buffer {buf.name!r} ({buf.nbytes} bytes) does not fit: {memory} has"
                f" {capacity - base} bytes and the buffers live with it take the rest",
                hint="choose a hardware config with more SRAM/DRAM",
            )
        placed.append((buf, addr))
        addresses[buf.name] = addr
        peak = max(peak, addr + buf.nbytes)
    return Allocation(addresses, peak)
