"""Re-emit a graph node's stored Relax call with new arguments (the integer CPU path's view).

The definitions live in the midend, shared with the integer executor's float
kernels (:mod:`npuc.midend.quantize.float_relax`,
:mod:`npuc.midend.quantize.float_kernels`):

- :func:`substitute_call` — ``node.relax_call`` with each free variable (in
  ``relax.analysis.free_vars`` order, the node's inputs) replaced by the
  matching expression; calls into the source module's PrimFuncs keep their
  ``GlobalVar``, so the module being built must hold those functions;
- :func:`source_functions` — those PrimFuncs, by GlobalVar.
"""

from __future__ import annotations

from npuc.midend.quantize.float_kernels import source_functions
from npuc.midend.quantize.float_relax import substitute_call

__all__ = ["source_functions", "substitute_call"]
