"""The integer CPU path: a quantized model's layers as Relax, bit-exact to the integer executor.

Public API:

- :func:`emit_layer` — one layer into a :class:`tvm.relax.BlockBuilder`;
- :func:`~.module.lower_layers` — a set of layers as an ``IRModule`` whose
  ``main`` takes the region's inputs and returns a tuple of its outputs
  (the CPU regions of NPU artifacts use it);
- :func:`~.module.lower_model` — the whole graph.

Value representation (the integer executor's, :mod:`npuc.midend.quantize.int_exec`):
a tensor produced by an integer layer (``run_on == "npu"``), or a graph
input that has :class:`~npuc.midend.quantize.qparams.QParams`, holds its
*stored integers* in the storage type of its QParams (``int8``, ``uint8`` or
``int16``: the NPU's own activation types, so every value the executor
produces fits exactly); every other tensor holds real values (float32, or
whatever non-float type a CPU operator reads). At a boundary the lowering
does what the executor does: an integer layer quantizes a float input with
the tensor's QParams (round half to even, saturate), a float layer
dequantizes an integer input.

Guarantees: integer layers give the executor's integers bit for bit (see
each module: :mod:`.conv`, :mod:`.eltwise`, :mod:`.lut`, :mod:`.movement`);
float layers give its float32 results bit for bit too (:mod:`.float_layers`:
the library embeds the executor's own float kernels,
:mod:`npuc.midend.quantize.float_kernels`, compiled for the same host CPU),
so an integer layer that quantizes a float result gets the executor's codes.
The executor's sticky overflow flags are not reproduced.
"""

from .dispatch import emit_layer
from .module import lower_layers, lower_model

__all__ = ["emit_layer", "lower_layers", "lower_model"]
