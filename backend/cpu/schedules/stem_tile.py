"""Register tiles and row bands of the stem rule (:mod:`.conv2d_stem`, which re-exports them).

Requires: the stem's output channels and row width, or its geometry
(:class:`~.depthwise_flat.FlatGeometry`), and the target.
Guarantees: :func:`choose_stem_tile` gives a tile whose accumulators and input
vectors fit the target's vector registers (or ``None`` below one vector);
:func:`rows_per_task` gives at least one row, four tasks per core, input rows
within :data:`TASK_ROW_BYTES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from npuc.backend.cpu.schedules.conv_tile import float_lanes
from npuc.backend.cpu.schedules.depthwise_flat import FlatGeometry
from npuc.core.target import CpuTarget


@dataclass(frozen=True, slots=True)
class StemTile:
    """``block_k`` output channels by ``vectors`` row vectors of ``lanes`` float32."""

    block_k: int
    vectors: int
    lanes: int


def choose_stem_tile(out_channels: int, out_width: int, target: CpuTarget) -> StemTile | None:
    """The register tile for a row of ``out_width`` outputs, or ``None`` below one vector.

    ``block_k`` divides ``out_channels``; a tile holds ``block_k * vectors``
    accumulators, its ``vectors`` input vectors and a broadcast weight in the
    target's vector registers (32 or 16), at most 24 (or 12) accumulators.
    The row's vectors are cut into equal tiles (7 as 4 + 3). Among the tiles,
    the fewest loads per multiply-add (``vectors`` inputs and ``block_k``
    broadcasts per tap), then the most channels.
    """
    lanes = float_lanes(target)
    if out_width < lanes:
        return None
    row_vectors = -(-out_width // lanes)
    registers = 32 if target.has_avx512 else 16
    budget = 24 if target.has_avx512 else 12
    scored: list[tuple[float, int, StemTile]] = []
    for block_k in range(1, min(out_channels, budget) + 1):
        if out_channels % block_k:
            continue
        most = min(budget // block_k, (registers - 1) // (block_k + 1), row_vectors)
        if most < 1:
            continue
        tiles = -(-row_vectors // most)
        vectors = -(-row_vectors // tiles)
        loads = (vectors + block_k) / (vectors * block_k)
        scored.append((loads, -block_k, StemTile(block_k, vectors, lanes)))
    return min(scored, key=lambda s: (s[0], s[1]))[2] if scored else None


#: Bytes of input rows one task copies at most (:func:`rows_per_task`): they stay in L2.
TASK_ROW_BYTES = 128 * 1024


def band_span(g: FlatGeometry, rows: int) -> int:
    """Padded input rows that ``rows`` consecutive output rows read."""
    return (rows - 1) * g.stride_h + (g.kernel_h - 1) * g.dilation_h + 1


def rows_per_task(g: FlatGeometry, num_cores: int) -> int:
    """Output rows of one parallel task: four tasks per core, fewer rows if their input rows
    (channels x rows read x padded width) exceed :data:`TASK_ROW_BYTES`; at least one."""
    rows = -(-g.out_h // (4 * num_cores))
    while rows > 1 and 4 * g.channels * band_span(g, rows) * g.stride_w * g.phase_w > (
        TASK_ROW_BYTES
    ):
        rows -= 1
    return rows
