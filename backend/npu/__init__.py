"""The NPU backend: not implemented in this release.

It will partition a quantized Relax module into NPU and CPU parts, lower the
NPU parts to the operations of npuc.core.isa (tiling into SRAM, DMA scheduling,
memory allocation, encoding) and write a program the simulator runs. Until
then ``npuc build --target npu`` stops with an UnsupportedError (exit 4); the
hardware model, ISA, assembler and simulator it will target already exist
(docs/npu_isa.md, docs/npu_sim.md).
"""
