"""Golden model of the convolution / fully connected datapath (spec section 3).

Plain int64 numpy with explicit loops over kernel taps, for clarity. Layouts
are the NPU's: activations HWC (channels innermost), conv weights OHWI int8
``(cout, kh, kw, cin_per_group)``, bias int16 per output channel, multipliers
uint15 per output channel (or one per tensor).

Per output element ``(oy, ox, o)``:

1. ``acc48 = sat48(sum((x - ifm_zp) * w) + (b16 << bias_shift))`` -- the sum
   is formed exactly and then saturated; any clamped element sets the sticky
   overflow flag (hardware with guard bits behaves the same; a per-add
   saturating adder could differ only after an overflow, which is flagged).
   Padded positions hold ``ifm_zp`` and so contribute zero.
2. ``acc32 = sat32(rshift_round(acc48, pre_shift))``.
3. ``y = rshift_round(acc32 * M[o], post_shift) + ofm_zp``.
4. ``clamp(y, act_min, act_max)`` then saturate to the output type; or, with a
   LUT, ``y`` is saturated to the LUT's input type and looked up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuc.core.intref.arith import (
    as_int64,
    clamp_activation,
    rshift_round,
    sat32,
    sat48,
    saturate,
)
from npuc.core.intref.lut import lut_lookup


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputStage:
    """Requantization and activation shared by CONV and FC (spec section 3, steps 2-4).

    ``multipliers`` holds one uint15 value per output channel, or a single
    value for a per-tensor multiplier. With ``lut`` set, the clamp is replaced
    by a table lookup: the requantized value is saturated to ``lut_in_dtype``
    and indexed as in spec section 5 (``lut_bits``, ``lut_x_min``, ``lut_f``
    shape an int16 table).
    """

    pre_shift: int
    post_shift: int
    multipliers: np.ndarray
    ofm_zp: int
    act_min: int
    act_max: int
    ofm_dtype: str
    lut: np.ndarray | None = None
    lut_in_dtype: str = "int8"
    lut_bits: int = 8
    lut_x_min: int = -32768
    lut_f: int = 8


def apply_output_stage(acc48: np.ndarray, stage: OutputStage) -> np.ndarray:
    """Steps 2-4 of the datapath over ``acc48[..., cout]``; returns int64 output values."""
    acc32 = sat32(rshift_round(acc48, stage.pre_shift))
    m = as_int64(stage.multipliers).reshape(-1)
    y = rshift_round(acc32 * m, stage.post_shift) + stage.ofm_zp
    if stage.lut is None:
        return clamp_activation(y, stage.act_min, stage.act_max, stage.ofm_dtype)
    index = saturate(y, stage.lut_in_dtype)
    looked_up = lut_lookup(
        index,
        stage.lut,
        in_dtype=stage.lut_in_dtype,
        lut_bits=stage.lut_bits,
        x_min=stage.lut_x_min,
        f=stage.lut_f,
    )
    return saturate(looked_up, stage.ofm_dtype)


def conv2d_acc48(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    *,
    bias_shift: int,
    ifm_zp: int,
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    depthwise: bool = False,
) -> tuple[np.ndarray, bool]:
    """Accumulator values ``acc48[oy, ox, o]`` of a convolution, and the overflow flag.

    Parameters
    ----------
    x
        Input ``(h, w, cin)``, any integer dtype.
    w
        Weights ``(cout, kh, kw, cin)``; for ``depthwise`` ``(cout, kh, kw, 1)``
        with ``cout`` a multiple of ``cin`` (output channel ``o`` reads input
        channel ``o // (cout // cin)``).
    bias
        ``(cout,)`` int16 values ``b16``; the accumulator starts at ``b16 << bias_shift``.
    pads
        ``(top, left, bottom, right)``; padded positions hold ``ifm_zp``.
    """
    h, wd, cin = x.shape
    cout, kh, kw, _ = w.shape
    sh, sw = stride
    dh, dw = dilation
    top, left, bottom, right = pads
    out_h = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    out_w = (wd + left + right - dw * (kw - 1) - 1) // sw + 1
    padded = np.full((h + top + bottom, wd + left + right, cin), ifm_zp, dtype=np.int64)
    padded[top : top + h, left : left + wd, :] = x
    centred = padded - ifm_zp
    w64 = as_int64(w)
    acc = np.zeros((out_h, out_w, cout), dtype=np.int64)
    acc += as_int64(bias) << bias_shift
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            tap = centred[y0 : y0 + sh * (out_h - 1) + 1 : sh, x0 : x0 + sw * (out_w - 1) + 1 : sw]
            if depthwise:
                multiplier = cout // cin
                source = tap[:, :, np.arange(cout) // multiplier]
                acc += source * w64[:, ky, kx, 0]
            else:
                acc += tap @ w64[:, ky, kx, :].T
    return sat48(acc)


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    stage: OutputStage,
    *,
    bias_shift: int,
    ifm_zp: int,
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    depthwise: bool = False,
) -> tuple[np.ndarray, bool]:
    """Full CONV datapath: returns ``(ofm int64 (oh, ow, cout), overflow flag)``."""
    acc48, overflow = conv2d_acc48(
        x,
        w,
        bias,
        bias_shift=bias_shift,
        ifm_zp=ifm_zp,
        stride=stride,
        dilation=dilation,
        pads=pads,
        depthwise=depthwise,
    )
    return apply_output_stage(acc48, stage), overflow


def fully_connected(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    stage: OutputStage,
    *,
    bias_shift: int,
    ifm_zp: int,
) -> tuple[np.ndarray, bool]:
    """FC datapath: ``x (n, k)``, ``w (cout, k)``; returns ``(y int64 (n, cout), overflow)``."""
    n, k = x.shape
    acc48, overflow = conv2d_acc48(
        x.reshape(n, 1, k),
        w.reshape(w.shape[0], 1, 1, k),
        bias,
        bias_shift=bias_shift,
        ifm_zp=ifm_zp,
    )
    return apply_output_stage(acc48.reshape(n, -1), stage), overflow
