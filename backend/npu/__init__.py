"""The NPU backend: code generation from a list of NPU operations to a validated program.

``ops`` is the stable seam (NpuGraph of NpuConv2d, NpuElementwise, NpuPool,
NpuLut, NpuRequant, NpuConcat, NpuSlice, NpuReshape); ``compile`` runs the
stages in the order data flows (docs/npu_compiler.md): tiling (``tiling``,
``lower_*``, estimates from ``perf``), allocation (``allocate``), scheduling
with wait/signal tokens (``schedule``), encoding through the ProgramBuilder
(``encode``). ``reference`` runs a graph on the integer reference.
Partitioning a quantized Relax module into NPU ops is not implemented yet,
so ``npuc build --target npu`` still stops with an UnsupportedError (exit 4).
"""
