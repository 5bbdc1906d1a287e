"""What lowering one NPU op produces before addresses exist: an :class:`OpPlan`.

Requires nothing; guarantees nothing on its own. Each ``lower_*`` module
turns one op into a plan: its constants (byte blobs for the constant section),
its SRAM buffers (with live intervals in the op's own tile time), its
estimated cycles and tiling description, and a function that, given the DRAM
addresses (tensors and constants by name) and the SRAM addresses (buffers by
name), returns the op's instruction steps in program order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from npuc.backend.npu.allocate import Buffer
from npuc.backend.npu.schedule import Step

StepMaker = Callable[[Mapping[str, int], Mapping[str, int]], list[Step]]


@dataclass(frozen=True, slots=True)
class OpPlan:
    """One op, lowered but not yet placed."""

    name: str
    kind: str
    constants: tuple[tuple[str, np.ndarray], ...]
    sram: tuple[Buffer, ...]
    est_cycles: int
    tiling: str
    macs: int
    make_steps: StepMaker


def blob(*parts: np.ndarray) -> np.ndarray:
    """Concatenate little-endian arrays as uint8, each part starting 2-byte aligned."""
    out = bytearray()
    for p in parts:
        if len(out) % 2:
            out.append(0)
        out.extend(np.ascontiguousarray(p).astype(p.dtype.newbyteorder("<")).tobytes())
    return np.frombuffer(bytes(out), dtype=np.uint8)
