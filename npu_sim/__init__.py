"""Cycle-approximate, bit-exact simulator of the modeled NPU.

``simulate(program, inputs, hw)`` runs a program (npuc.core.isa.program.Program)
and returns outputs, statistics, an optional Chrome trace and the overflow
report. Layout: ``functional`` (vectorised bit-exact datapath), ``memory``
(SRAM/DRAM with checked access), ``ops`` (one instruction's semantics),
``timing`` (cycle cost of one instruction), ``executor`` (units, tokens,
concurrency, faults), ``trace`` (trace-event JSON), ``simulate`` (the API).
It imports only npuc.core.isa, npuc.core.hw, npuc.core.errors and numpy, so it is an
independent check of the compiler.
"""

from npuc.npu_sim.simulate import DEFAULT_MAX_STEPS, SimResult, SimStats, UnitStats, simulate

__all__ = ["DEFAULT_MAX_STEPS", "SimResult", "SimStats", "UnitStats", "simulate"]
