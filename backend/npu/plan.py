"""What lowering one NPU op produces before addresses exist: an :class:`OpPlan`.

Requires nothing; guarantees nothing on its own. Each ``lower_*`` module
turns one op into a plan: its constants (byte blobs for the constant section),
its SRAM buffers (with live intervals in the op's own tile time), its
estimated cycles and tiling description, and a function that, given the DRAM
addresses (tensors and constants by name) and the SRAM addresses (buffers by
name), returns the op's instruction steps in program order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from npuc.backend.npu.allocate import Buffer, allocate
from npuc.backend.npu.encode import step_cycles
from npuc.backend.npu.schedule import Step, assign_tokens, replay
from npuc.backend.npu.tiling import align
from npuc.core.hw.config import HwConfig

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


def replay_alone(
    tensors: Sequence[tuple[str, int]],
    plan: OpPlan,
    hw: HwConfig,
    budget: int,
    resident: Sequence[str] = (),
) -> int:
    """Cycles of ``plan``'s steps alone: its DRAM ``tensors`` (name, bytes) and constants at
    placeholder addresses, its SRAM buffers allocated within ``budget`` bytes, and the
    ``resident`` tensors (kept in SRAM by cascading) placed above the op's window."""
    dram, at = {}, 0
    for name, size in [*tensors, *((n, len(d)) for n, d in plan.constants)]:
        dram[name] = at
        at += align(size)
    sram = dict(allocate(list(plan.sram), capacity=budget, memory="SRAM").addresses)
    for name in resident:
        sram["@" + name] = align(budget)
    steps = plan.make_steps(dram, sram)
    spans = replay(assign_tokens(steps), [step_cycles(st, hw) for st in steps])
    return max((end for _, end in spans), default=0)
