"""Dense, matmul and batch-matmul (float) with their element-wise epilogue.

Matches a PrimFunc whose one reduction block computes
``C[b..., i, j] += A[b..., i, k] * B[b..., k, j]`` (``B`` may drop the batch
axes: a weight shared by the batch) and whose other blocks are element-wise
epilogues (bias, activation, residual add) or inputs of the matmul. The
schedule is a register-blocked GEMM:

- ``j`` (contiguous in ``B`` and ``C``) is split into a tile of one or two
  vector registers (32 float32 with AVX-512, 16 with AVX2), vectorised;
- ``i`` into a tile of up to 8 rows, unrolled: ``rows x tile`` accumulators
  that live in registers (a ``local`` cache of ``C``), initialised once and
  written back after the whole ``k`` loop;
- the epilogue is computed in that write-back, so ``C`` is never stored
  before its bias and activation;
- batch, row tiles and column tiles are fused into one ``parallel`` loop;
  column tiles outside row tiles when ``B`` is larger than
  :data:`WEIGHT_PANEL_BYTES` (each ``k x tile`` panel of ``B`` then comes from
  memory once, not once per row tile).

A column count that is not a multiple of the vector width is padded
(``pad_einsum``: ``B`` is copied into whole vectors, the extra columns are
dropped on write-back). That copy is tagged as a weight layout rewrite, so a
constant ``B`` is padded once at compile time
(:mod:`npuc.backend.cpu.prepack_weights`), and the epilogue runs row by row
(LLVM vectorises each row with a scalar tail). PP-OCRv4 rec's 40x120 x
120x6625 classifier: 6.2 -> 2.0-2.3 ms one thread.

A matrix-vector product (at most ``PANEL_MAX_ROWS`` rows, a 2-D ``B`` larger
than ``WEIGHT_PANEL_BYTES``: a classifier after global pooling) is bound by
reading ``B`` once. Its tile is ``PANEL_VECTORS`` vectors of columns (four
independent multiply-add chains per row instead of one), the columns are
padded to whole tiles, and ``B`` is read as ``[j // tile, k, tile]`` panels, one
contiguous stream per tile, packed at compile time for a constant ``B``.
MobileNetV2's 1x1280 x 1280x1000: 0.37-0.47 -> 0.29 ms, ShuffleNet's
1x544 x 544x1000 0.22 -> 0.07 ms (one thread, CPU time, this shared host).

A transposed weight (``B[j, k]``, contiguous along ``k``) does not match: it
needs a packed layout (a weight pre-pack pass) and is left to the fallback.
"""

from __future__ import annotations

import math

from tvm import s_tir, tirx
from tvm.ir import TensorLoad
from tvm.s_tir.dlight.analysis.common_analysis import collect_vars_used_in_prim_expr
from tvm.s_tir.schedule import SBlockRV as BlockRV

from npuc.backend.cpu.schedules.fallback import (
    PARALLEL_MIN_ELEMENTS,
    attempt,
    inline_elementwise,
    schedule_block,
)
from npuc.backend.cpu.schedules.loops import (
    extent,
    is_spatial,
    iter_kinds,
    root_blocks,
    vector_factor,
    vector_lanes,
    write_dtype,
)
from npuc.core.target import CpuTarget

#: Block annotation of a weight layout rewrite (see :mod:`npuc.backend.cpu.prepack_weights`).
PREPROC_ATTR = "meta_schedule.layout_rewrite_preproc"

#: Vector registers the accumulator tile may use (of 32 with AVX-512, 16 with AVX2).
ACCUMULATOR_REGISTERS = 12

#: Size of ``B`` above which column tiles are the outer loop (half a 48 KiB L1).
WEIGHT_PANEL_BYTES = 24 * 1024

#: Most rows of a product that reads ``B`` in packed panels (:func:`_panel_width`).
PANEL_MAX_ROWS = 2

#: Vectors of columns per packed panel (independent accumulators per row).
PANEL_VECTORS = 4

#: Row tile sizes tried, largest first (each must divide the row count).
ROW_TILES = (8, 6, 4, 3, 2, 1)


class MatmulRule:
    """Register-blocked, vectorised, parallel float GEMM (see the module docstring)."""

    name = "matmul"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` when it is not a float matmul plus epilogue."""
        sch = s_tir.Schedule(func)
        reductions = [b for b in root_blocks(sch) if not is_spatial(sch, b)]
        if len(reductions) != 1:
            return None
        block = reductions[0]
        if not _is_float_matmul(sch, block):
            return None
        inline_elementwise(sch)
        block = sch.get_sblock(sch.get(block).name_hint)
        others = [b for b in root_blocks(sch) if not sch.get(b).same_as(sch.get(block))]
        if not all(is_spatial(sch, b) for b in others) or len(sch.get_consumers(block)) > 1:
            return None
        *outer, i, j, _k = sch.get_loops(block)
        rows, cols = extent(sch, i), extent(sch, j)
        lanes = vector_lanes(target, "float32")
        if rows is None or cols is None or cols < lanes:
            return None
        panels = _panel_width(sch, block, rows, cols, lanes)
        tiles = _tiles(rows, cols, lanes) if panels is None else (rows, panels)
        padded = tiles is None or cols % tiles[1] != 0
        if padded:  # odd width: pad the columns to whole vectors (or panels)
            col_tile = panels or (2 * lanes if cols >= 2 * lanes else lanes)
            sch.pad_einsum(block, [1] * len(outer) + [1, col_tile, 1])
            inline_elementwise(sch)
            if len(sch.get_consumers(block)) > 1:
                return None
            tiles = (
                _tiles(rows, -(-cols // col_tile) * col_tile, lanes) if panels is None else tiles
            )
        if tiles is None:
            return None
        if panels is not None:
            _pack_panels(sch, block, panels, copied=padded)
        producers = sch.get_producers(block)  # inputs fused in (padding, a reshape)
        consumers = sch.get_consumers(block)
        epilogue = consumers[0] if consumers else None
        _schedule_gemm(sch, block, epilogue, tiles, target, inline_epilogue=not padded)
        for producer in producers:
            schedule_block(sch, producer, target, {})
            if padded and _is_weight_copy(sch, producer):
                sch.annotate(producer, PREPROC_ATTR, True)  # padded weight: built at compile time
        return sch.mod["main"]


def _panel_width(
    sch: s_tir.Schedule, block: BlockRV, rows: int, cols: int, lanes: int
) -> int | None:
    """Columns per packed ``B`` panel of a matrix-vector product, or ``None`` for a GEMM.

    A product of at most :data:`PANEL_MAX_ROWS` rows with a 2-D ``B`` larger
    than :data:`WEIGHT_PANEL_BYTES` streams ``B`` once and is bound by memory:
    it gets :data:`PANEL_VECTORS` vectors of columns per tile (that many
    independent multiply-add chains, not one) and ``B`` packed panel by panel.
    """
    source = sch.get(block).body.value.b.b.source
    if rows > PANEL_MAX_ROWS or len(source.shape) != 2 or cols < PANEL_VECTORS * lanes:
        return None
    return PANEL_VECTORS * lanes if _weight_bytes(sch, block) > WEIGHT_PANEL_BYTES else None


def _pack_panels(sch: s_tir.Schedule, block: BlockRV, width: int, *, copied: bool) -> None:
    """Read ``B[k, j]`` as ``[j // width, k, j % width]``: each tile's panel is contiguous.

    The copy into that layout (a new one, or the zero-padding copy when
    ``copied``) is tagged as a weight layout rewrite, so a constant ``B`` is
    packed once at compile time (:mod:`npuc.backend.cpu.prepack_weights`).
    """
    source = sch.get(block).body.value.b.b.source
    index = next(i for i, r in enumerate(sch.get(block).reads) if r.source.same_as(source))
    if not copied:
        sch.annotate(sch.cache_read(block, index, "global"), PREPROC_ATTR, True)
    sch.transform_layout(block, ("read", index), lambda k, j: (j // width, k, j % width))


def _weight_bytes(sch: s_tir.Schedule, block: BlockRV) -> int:
    """Bytes of the matmul's second operand ``B`` (``C += A * B``, see :func:`_is_float_matmul`)."""
    source = sch.get(block).body.value.b.b.source
    return math.prod(int(d) if isinstance(d, tirx.IntImm) else 1 for d in source.shape) * 4


def _schedule_rows(sch: s_tir.Schedule, block: BlockRV, target: CpuTarget) -> None:
    """Parallel rows; a row whose length no vector width divides stays one plain loop.

    The fallback would fuse such a row with its neighbour into one flat loop,
    whose vectors then load the padded ``C`` and a bias row through
    ``index // cols`` / ``index % cols`` gathers; LLVM vectorises a plain row
    loop itself, with a scalar tail.
    """
    loops = list(sch.get_loops(block))
    last = extent(sch, loops[-1]) if loops else None
    if len(loops) < 2 or vector_factor(last, vector_lanes(target, "float32")) is not None:
        schedule_block(sch, block, target, {})
        return
    rows = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
    sch.parallel(rows)


def _is_weight_copy(sch: s_tir.Schedule, block: BlockRV) -> bool:
    """``block`` copies one 2-D parameter (``B``, a weight when the graph passes a constant).

    Tagged as a layout rewrite, :class:`~npuc.backend.cpu.prepack_weights.PrepackWeights`
    moves it out of the kernel and folds it at compile time for a constant.
    """
    reads = sch.get(block).reads
    allocated = sch.get(sch.get_sblock("root")).alloc_buffers
    return (
        len(reads) == 1
        and len(reads[0].source.shape) == 2
        and not any(reads[0].source.same_as(b) for b in allocated)
    )


def _is_float_matmul(sch: s_tir.Schedule, block: BlockRV) -> bool:
    """``block`` is ``C[.., i, j] += A[.., i, k] * B[.., k, j]`` over float32 with one k loop."""
    kinds = iter_kinds(sch, block)
    if kinds is None or kinds.count("R") != 1 or not kinds.endswith("R") or len(kinds) < 3:
        return False
    if write_dtype(sch, block) != "float32":
        return False
    sblock = sch.get(block)
    store = sblock.body
    if not isinstance(store, tirx.BufferStore) or len(sblock.reads) != 2:
        return False
    value = store.value
    if not (isinstance(value, tirx.Add) and isinstance(value.b, tirx.Mul)):
        return False
    if not (isinstance(value.a, TensorLoad) and value.a.source.same_as(store.buffer)):
        return False
    loads = (value.b.a, value.b.b)
    if not all(isinstance(load, TensorLoad) for load in loads):
        return False
    i_var, j_var, k_var = (iv.var for iv in sblock.iter_vars[-3:])
    a_last, b_last = (_vars(load.indices[-1]) for load in loads)
    a_rest, b_rest = (_vars(*load.indices[:-1]) for load in loads)
    return (
        a_last == {k_var}
        and i_var in a_rest
        and b_last == {j_var}
        and k_var in b_rest
        and i_var not in b_rest
        and j_var not in a_rest
    )


def _vars(*exprs: tirx.Expr) -> set[tirx.Var]:
    used: set[tirx.Var] = set()
    for expr in exprs:
        used |= collect_vars_used_in_prim_expr(expr)
    return used


def _tiles(rows: int | None, cols: int | None, lanes: int) -> tuple[int, int] | None:
    """(row tile, column tile) for a ``rows x cols`` output, or ``None`` if cols is odd."""
    width = vector_factor(cols, lanes)
    if width is None or rows is None or cols is None:
        return None
    col_tile = 2 * width if cols % (2 * width) == 0 else width
    registers_per_row = max(col_tile // lanes, 1)
    for row_tile in ROW_TILES:
        if rows % row_tile == 0 and row_tile * registers_per_row <= ACCUMULATOR_REGISTERS:
            return row_tile, col_tile
    return 1, col_tile


def _schedule_gemm(
    sch: s_tir.Schedule,
    block: BlockRV,
    epilogue: BlockRV | None,
    tiles: tuple[int, int],
    target: CpuTarget,
    *,
    inline_epilogue: bool,
) -> None:
    """Tile, vectorise and parallelise ``block``; compute ``epilogue`` in the write-back.

    With ``inline_epilogue`` false (a padded GEMM: TVM 0.27 drops the bounds
    check of the padded columns when the epilogue is inlined into the
    write-back, writing past the row) the epilogue keeps its own loop nest.
    """
    *batch, i, j, k = sch.get_loops(block)
    work = math.prod(extent(sch, loop) or 1 for loop in (*batch, i, j))
    row_tile, col_tile = tiles
    io, ii = sch.split(i, factors=[None, row_tile])
    jo, ji = sch.split(j, factors=[None, col_tile])
    if _weight_bytes(sch, block) > WEIGHT_PANEL_BYTES:
        # Column tiles outside row tiles: one k x col_tile panel of B is read from
        # memory once and reused from L1 by every row tile (rows outside would
        # stream the whole of B once per row tile).
        sch.reorder(*batch, jo, io, k, ii, ji)
        outer = sch.fuse(*batch, jo, io)
    else:
        sch.reorder(*batch, io, jo, k, ii, ji)
        outer = sch.fuse(*batch, io, jo)
    if work >= PARALLEL_MIN_ELEMENTS:
        sch.parallel(outer)

    # Accumulate in a register tile; write it back (through the epilogue) per tile.
    local = sch.cache_write(block, 0, "local")
    if epilogue is not None and not (
        inline_epilogue and attempt(sch.reverse_compute_inline, epilogue)
    ):  # not element-wise over C (or padded): its own loop nest
        _schedule_rows(sch, epilogue, target)
    sch.reverse_compute_at(local, outer, preserve_unit_loops=True)
    sch.unroll(ii)
    sch.vectorize(ji)
    init = sch.decompose_reduction(block, k)
    init_loops = sch.get_loops(init)
    sch.vectorize(init_loops[-1])
    write_back = sch.get_loops(local)  # [outer, the tile's loops]
    if len(write_back) > 1:
        sch.vectorize(write_back[-1])
