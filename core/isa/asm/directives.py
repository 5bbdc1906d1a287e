"""Assembler directives: constants, SRAM/DRAM allocation, constant data, the I/O table.

Layout rules (documented in docs/npu_isa.md):

- ``.sram NAME SIZE [align=64] [at=ADDR]`` allocates SRAM upwards from 0, each
  region aligned (default 64 bytes) unless ``at=`` places it explicitly.
- ``.data NAME TYPE [shape] = [v, ...]``, ``... file "x.npy"`` (path relative
  to the .s file) or ``NAME uint8 [n] hex "0a1b..." "..."`` appends to the
  constant block, which starts at ``.data_base`` (default 0) in DRAM; each
  item is aligned (``align=``, default 64) by zero padding before it.
- ``.input`` / ``.output NAME TYPE [shape] scale=F [zp=I] [dram=ADDR]`` and
  ``.dram NAME SIZE [align=] [at=]`` without an address are placed, in order,
  after the constant block (64-byte aligned).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import lark
import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import HwConfig
from npuc.core.isa.asm.symbols import MemSymbol, Scope
from npuc.core.isa.program import IoTensor, check_io_tensor
from npuc.core.isa.types import DTYPE_ALIASES, DTYPE_BYTES
from npuc.core.npyfile import NpyHeader, read_npy

DATA_DTYPES = ("int8", "uint8", "int16", "uint16", "int32")
DATA_ALIASES = {**DTYPE_ALIASES, "u16": "uint16", "i32": "int32"}
DEFAULT_ALIGN = 64
MAX_ALIGN = 1 << 16  # largest align= (constant padding stays small)


def align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


@dataclass
class PendingDram:
    """A DRAM region (I/O tensor or scratch) whose address is placed after the constants."""

    name: str
    size_bytes: int
    align: int
    io: IoTensor | None  # dram_addr to be filled in


def read_options(
    scope: Scope, nodes: list[lark.Tree], allowed: dict[str, bool]
) -> dict[str, object]:
    """``name=expr`` options; ``allowed`` maps option name -> may be a float."""
    out: dict[str, object] = {}
    for node in nodes:
        name_tok, expr = node.children
        name = str(name_tok)
        if name not in allowed:
            raise scope.error(
                name_tok, f"unknown option {name!r}", hint=f"options here: {', '.join(allowed)}"
            )
        if name in out:
            raise scope.error(name_tok, f"option {name!r} is given twice")
        out[name] = scope.eval(expr) if allowed[name] else scope.eval_int(expr, name)
    return out


def _alignment(scope: Scope, node: lark.Tree, opts: dict[str, object]) -> int:
    align = int(opts.get("align", DEFAULT_ALIGN))  # type: ignore[call-overload]
    if align < 1 or align & (align - 1) or align > MAX_ALIGN:
        raise scope.error(node, f"align={align} must be a power of two up to {MAX_ALIGN}")
    return align


def _shape(scope: Scope, node: lark.Tree) -> tuple[int, ...]:
    dims = tuple(scope.eval_int(c, "dimension") for c in node.children)
    if any(d < 1 for d in dims):
        raise scope.error(node, f"shape {list(dims)} must hold positive integers")
    return dims


class Allocator:
    """Applies the layout rules while the assembler walks the directives in order."""

    def __init__(self, scope: Scope, hw: HwConfig, base_dir: Path) -> None:
        self.scope = scope
        self.hw = hw
        self.base_dir = base_dir
        self.sram_next = 0
        self.data_base: int | None = None
        self.constants = bytearray()
        self.pending: list[PendingDram] = []
        self.io: list[IoTensor] = []

    def sram(self, node: lark.Tree) -> None:
        name, size_node, *opt_nodes = node.children
        size = self.scope.eval_int(size_node, "size")
        opts = read_options(self.scope, opt_nodes, {"align": False, "at": False})
        if size < 1:
            raise self.scope.error(size_node, f"SRAM region size {size} must be positive")
        if "at" in opts:
            addr = int(opts["at"])  # type: ignore[call-overload]
        else:
            addr = align_up(self.sram_next, _alignment(self.scope, node, opts))
        if addr < 0 or addr + size > self.hw.sram_bytes:
            raise self.scope.error(
                node,
                f"SRAM region {name} [{addr}, {addr + size}) exceeds"
                f" sram_bytes = {self.hw.sram_bytes}"
                f" of {self.hw.name}",
                hint="shrink the buffers or choose a larger config (--hw-preset npu-l)",
            )
        self.sram_next = max(self.sram_next, addr + size)
        self.scope.define_symbol(name, MemSymbol("sram", addr, size))  # type: ignore[arg-type]

    def data_base_dir(self, node: lark.Tree) -> None:
        if self.data_base is not None:
            raise self.scope.error(node, ".data_base must come once, before any .data")
        self.data_base = self.scope.eval_int(node.children[0], ".data_base")
        if self.data_base < 0:
            raise self.scope.error(node, ".data_base must not be negative")

    def data(self, node: lark.Tree) -> None:
        name, dtype_tok, *rest = node.children
        shape_node = rest.pop(0) if rest and rest[0].data == "shape" else None
        source, *opt_nodes = rest
        opts = read_options(self.scope, opt_nodes, {"align": False})
        dtype = DATA_ALIASES.get(str(dtype_tok), str(dtype_tok))
        if dtype not in DATA_DTYPES:
            raise self.scope.error(
                dtype_tok,
                f"unknown data type {str(dtype_tok)!r}",
                hint=f"use one of {', '.join(DATA_DTYPES)}",
            )
        shape = _shape(self.scope, shape_node) if shape_node is not None else None
        values = self._data_values(source, dtype, shape)
        if values.size == 0:
            raise self.scope.error(name, f"constant data {name} must not be empty")
        if self.data_base is None:
            self.data_base = 0
        start = align_up(self.data_base + len(self.constants), _alignment(self.scope, node, opts))
        self.constants.extend(bytes(start - self.data_base - len(self.constants)))
        payload = values.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
        self.constants.extend(payload)
        self.scope.define_symbol(name, MemSymbol("dram", start, len(payload)))  # type: ignore[arg-type]

    def _data_values(
        self, source: lark.Tree, dtype: str, shape: tuple[int, ...] | None
    ) -> np.ndarray:
        lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
        if source.data == "inline_data":
            items = source.children[0].children if source.children else []
            ints = [self.scope.eval_int(it, "data value") for it in items]
            for it, v in zip(items, ints, strict=True):
                if not lo <= v <= hi:
                    raise self.scope.error(it, f"data value {v} does not fit {dtype} [{lo}, {hi}]")
            arr = np.array(ints, dtype=np.int64)
            if shape is not None:
                if math.prod(shape) != arr.size:
                    raise self.scope.error(
                        source, f"{arr.size} values given for shape {list(shape)}"
                    )
                arr = arr.reshape(shape)
        elif source.data == "hex_data":
            if dtype != "uint8":
                raise self.scope.error(source, "hex data must be declared uint8")
            text = "".join(str(tok)[1:-1] for tok in source.children)
            try:
                arr = np.frombuffer(bytes.fromhex(text), dtype=np.uint8).astype(np.int64)
            except ValueError:
                raise self.scope.error(source, "hex data holds a non-hex character") from None
            if shape is not None and math.prod(shape) != arr.size:
                raise self.scope.error(source, f"{arr.size} bytes given for shape {list(shape)}")
        else:
            arr = self._load_npy(source)
            if shape is not None and arr.shape != shape:
                raise self.scope.error(
                    source, f"file holds shape {list(arr.shape)}, not {list(shape)}"
                )
            if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
                raise self.scope.error(
                    source, f"file values [{arr.min()}, {arr.max()}] do not fit {dtype}"
                )
        return arr

    def _load_npy(self, source: lark.Tree) -> np.ndarray:
        rel = str(source.children[0])[1:-1]
        path = self.base_dir / rel

        def check(header: NpyHeader) -> None:
            if header.dtype.kind not in "iub":
                raise InvalidInputError(f"data file {path}: does not hold an integer array")
            if math.prod(header.shape) > self.hw.dram_bytes:
                raise InvalidInputError(
                    f"data file {path}: holds {header.describe()}, more values than"
                    f" dram_bytes = {self.hw.dram_bytes} of {self.hw.name}"
                )

        try:
            arr = read_npy(path, check=check, what="data file")
        except InvalidInputError as exc:
            raise self.scope.error(source, f"cannot read {exc.message}", exc.hint) from None
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            # would wrap negative in the int64 conversion below and slip past range checks
            raise self.scope.error(source, f"{path} holds values up to {arr.max()}, beyond int64")
        return arr.astype(np.int64)

    def dram(self, node: lark.Tree) -> None:
        name, size_node, *opt_nodes = node.children
        size = self.scope.eval_int(size_node, "size")
        opts = read_options(self.scope, opt_nodes, {"align": False, "at": False})
        if size < 1:
            raise self.scope.error(size_node, f"DRAM region size {size} must be positive")
        if "at" in opts:
            self.scope.define_symbol(name, MemSymbol("dram", int(opts["at"]), size))  # type: ignore[arg-type, call-overload]
        else:
            self.scope.define_symbol(name, None)  # type: ignore[arg-type]
            self.pending.append(
                PendingDram(str(name), size, _alignment(self.scope, node, opts), None)
            )

    def io_tensor(self, node: lark.Tree, kind: str) -> None:
        name_tok, dtype_tok, shape_node, *opt_nodes = node.children
        quoted = name_tok.type == "STRING"  # type: ignore[union-attr]
        name = str(name_tok)[1:-1] if quoted else str(name_tok)
        opts = read_options(self.scope, opt_nodes, {"scale": True, "zp": False, "dram": False})
        dtype = DTYPE_ALIASES.get(str(dtype_tok), str(dtype_tok))
        if dtype not in DTYPE_BYTES:
            raise self.scope.error(
                dtype_tok, f"I/O type {str(dtype_tok)!r} is not int8, uint8 or int16"
            )
        if "scale" not in opts:
            raise self.scope.error(node, f".{kind} {name}: scale= is required")
        shape = _shape(self.scope, shape_node)
        if any(t.name == name for t in self.io):
            raise self.scope.error(name_tok, f"I/O tensor {name!r} is declared twice")
        io = IoTensor(
            name=name,
            kind=kind,
            shape=shape,
            dtype=dtype,
            scale=float(opts["scale"]),  # type: ignore[arg-type]
            zero_point=int(opts.get("zp", 0)),  # type: ignore[call-overload]
            dram_addr=int(opts.get("dram", 0)),  # type: ignore[call-overload]
        )
        try:
            check_io_tensor(io)
        except InvalidInputError as exc:
            raise self.scope.error(node, exc.message) from None
        self.io.append(io)
        symbol = MemSymbol("dram", io.dram_addr, io.nbytes) if "dram" in opts else None
        if not quoted:  # a quoted name is not usable as @symbol
            self.scope.define_symbol(name_tok, symbol)  # type: ignore[arg-type]
        if symbol is None:
            self.pending.append(PendingDram(name, io.nbytes, DEFAULT_ALIGN, io))

    def place_pending(self) -> None:
        """Place I/O tensors and scratch regions without an address after the constant block."""
        cursor = (self.data_base or 0) + len(self.constants)
        for item in self.pending:
            addr = align_up(cursor, item.align)
            cursor = addr + item.size_bytes
            if item.io is None or item.name in self.scope.deferred:
                self.scope.place(item.name, MemSymbol("dram", addr, item.size_bytes))
            if item.io is not None:
                index = self.io.index(item.io)
                self.io[index] = dataclasses.replace(item.io, dram_addr=addr)
