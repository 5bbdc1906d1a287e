"""Tiling of a convolution's output so the simulator's working memory stays bounded.

A convolution formed as one im2col GEMM needs ``oh * ow * kh * kw * cin``
float64 values at once: 31.5 GiB for a valid 255x255 kernel swept over a 1x1
input padded by 254. Instead the output is cut into rectangles of output
positions (:class:`Tile`) whose im2col part holds at most
:data:`WORK_ELEMENTS` values, and each tile uses only the kernel taps that
can reach a real (unpadded) input row or column from some position of the
tile (an interval of taps, so with strides a few may still see padding):
taps that see nothing but padding add exactly zero (padded positions hold the
zero point, which the centred input subtracts), so leaving them out changes no
bit of the result. Each tile reads its inputs from a small zero-padded
``slab`` of the input (also at most :data:`WORK_ELEMENTS` values unless a
single output position's receptive field, which lies inside the input, is
larger).

Geometry only: no arithmetic of the datapath lives here (see
:mod:`npuc.npu_sim.functional`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

WORK_ELEMENTS = 1 << 22
"""Largest im2col tile (and input slab), in values: 32 MiB of float64."""

POOL_WORK = 1 << 18
"""Largest pool tile, in window values (positions x taps used x channels) reduced per tile.

A pool reduces its windows in place (no im2col copy), so this bounds the time
a tile spends on taps that may still see padding, not its memory.
"""


@dataclass(frozen=True, slots=True)
class Tile:
    """Output rows ``oy`` and columns ``ox`` (half-open), and the kernel taps ``ky``/``kx`` used."""

    oy: tuple[int, int]
    ox: tuple[int, int]
    ky: tuple[int, int]
    kx: tuple[int, int]

    @property
    def positions(self) -> int:
        return (self.oy[1] - self.oy[0]) * (self.ox[1] - self.ox[0])


@dataclass(frozen=True, slots=True)
class Geometry:
    """A convolution's sizes: input ``in_hw``, output ``out_hw``, kernel, stride, dilation, pads.

    ``pads`` is ``(top, left, bottom, right)``.
    """

    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]

    def taps(self, axis: int, lo: int, hi: int) -> tuple[int, int]:
        """Kernel taps (half-open) along ``axis`` reaching real input from outputs ``[lo, hi)``."""
        size, k = self.in_hw[axis], self.kernel[axis]
        s, d, before = self.stride[axis], self.dilation[axis], self.pads[axis]
        first = max(0, -(((hi - 1) * s - before) // d))  # ceil((before - (hi-1)*s) / d)
        last = min(k - 1, (before + size - 1 - lo * s) // d)
        return first, max(first, last + 1)

    def span(self, axis: int, out: tuple[int, int], taps: tuple[int, int]) -> tuple[int, int]:
        """Padded-input coordinates (half-open) that outputs ``out`` read through ``taps``."""
        s, d = self.stride[axis], self.dilation[axis]
        return out[0] * s + taps[0] * d, (out[1] - 1) * s + (taps[1] - 1) * d + 1

    def slab_elements(self, tile: Tile, channels: int) -> int:
        (r0, r1), (c0, c1) = self.span(0, tile.oy, tile.ky), self.span(1, tile.ox, tile.kx)
        return (r1 - r0) * (c1 - c0) * channels


def tiles(geo: Geometry, values_per_position: int, channels: int) -> Iterator[Tile]:
    """Tiles covering every output position that some tap connects to real input.

    Positions of no yielded tile see only padding (their sum is zero).
    ``values_per_position`` is the im2col row length (``kh * kw * cin`` at most).
    """
    oh, ow = geo.out_hw
    per_tile = max(1, WORK_ELEMENTS // max(1, values_per_position))
    tw = min(ow, per_tile)
    th = max(1, min(oh, per_tile // tw))
    pending = [
        ((y, min(y + th, oh)), (x, min(x + tw, ow)))
        for y in range(0, oh, th)
        for x in range(0, ow, tw)
    ]
    while pending:
        oy, ox = pending.pop()
        tile = Tile(oy, ox, geo.taps(0, *oy), geo.taps(1, *ox))
        if tile.ky[0] == tile.ky[1] or tile.kx[0] == tile.kx[1]:
            continue
        if geo.slab_elements(tile, channels) > WORK_ELEMENTS and tile.positions > 1:
            pending += _halves(oy, ox)
            continue
        yield tile


def pool_tiles(geo: Geometry, channels: int) -> Iterator[Tile]:
    """Tiles for a pool: like :func:`tiles`, each reducing at most :data:`POOL_WORK` values.

    A tile is halved while ``positions * taps used * channels`` exceeds
    :data:`POOL_WORK` (or its slab exceeds :data:`WORK_ELEMENTS`) and it has
    more than one position; positions of no yielded tile see only padding.
    """
    oh, ow = geo.out_hw
    pending = [((0, oh), (0, ow))]
    while pending:
        oy, ox = pending.pop()
        tile = Tile(oy, ox, geo.taps(0, *oy), geo.taps(1, *ox))
        taps = (tile.ky[1] - tile.ky[0]) * (tile.kx[1] - tile.kx[0])
        if taps == 0:
            continue
        too_big = (
            tile.positions * taps * channels > POOL_WORK
            or geo.slab_elements(tile, channels) > WORK_ELEMENTS
        )
        if too_big and tile.positions > 1:
            pending += _halves(oy, ox)
            continue
        yield tile


def _halves(
    oy: tuple[int, int], ox: tuple[int, int]
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Split the longer side of a rectangle of output positions in two."""
    if oy[1] - oy[0] >= ox[1] - ox[0]:
        mid = (oy[0] + oy[1]) // 2
        return [((oy[0], mid), ox), ((mid, oy[1]), ox)]
    mid = (ox[0] + ox[1]) // 2
    return [(oy, (ox[0], mid)), (oy, (mid, ox[1]))]


def windows(
    centred: np.ndarray,
    geo: Geometry,
    tile: Tile,
    *,
    fill: float = 0,
    dtype: type = np.float64,
) -> np.ndarray:
    """``(th, tw, nky, nkx, c)`` windows (``dtype``) of ``tile`` over the HWC input.

    Positions in the padding read ``fill`` (default 0, the centred value of
    the zero point).
    """
    h, w, c = centred.shape
    (r0, r1), (c0, c1) = geo.span(0, tile.oy, tile.ky), geo.span(1, tile.ox, tile.kx)
    top, left = geo.pads[0], geo.pads[1]
    slab: np.ndarray = np.full((r1 - r0, c1 - c0, c), fill, dtype=dtype)
    ys, ye = max(r0 - top, 0), min(r1 - top, h)
    xs, xe = max(c0 - left, 0), min(c1 - left, w)
    if ys < ye and xs < xe:
        slab[ys + top - r0 : ye + top - r0, xs + left - c0 : xe + left - c0] = centred[ys:ye, xs:xe]
    s0, s1, s2 = slab.strides
    shape = (
        tile.oy[1] - tile.oy[0],
        tile.ox[1] - tile.ox[0],
        tile.ky[1] - tile.ky[0],
        tile.kx[1] - tile.kx[0],
        c,
    )
    sh, sw = geo.stride
    dh, dw = geo.dilation
    strides = (s0 * sh, s1 * sw, s0 * dh, s1 * dw, s2)
    return as_strided(slab, shape=shape, strides=strides, writeable=False)
