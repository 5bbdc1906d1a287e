"""NPU assembly: lark grammar, assembler (text -> Program) and disassembler (Program -> text)."""

from npuc.core.isa.asm.assembler import assemble, assemble_file
from npuc.core.isa.asm.disassembler import disassemble

__all__ = ["assemble", "assemble_file", "disassemble"]
