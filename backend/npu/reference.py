"""Run an :class:`NpuGraph` on the integer reference (npuc.core.intref), op by op, untiled.

Requires: a validated graph and one integer array per graph input (NHWC,
values in the tensor's storage range). Guarantees: returns every tensor of
the graph (inputs, intermediates, outputs) by name, as arrays of the
tensor's storage dtype and shape; this is what the compiled program must
reproduce bit for bit on the simulator.
"""

from __future__ import annotations

import numpy as np

from npuc.backend.npu.ops import (
    NpuConcat,
    NpuConv2d,
    NpuElementwise,
    NpuGraph,
    NpuLut,
    NpuOp,
    NpuPad,
    NpuPool,
    NpuRequant,
    NpuReshape,
    NpuResize,
    NpuSlice,
    NpuTranspose,
)
from npuc.backend.npu.ops_taps import NpuIm2col, NpuTapConv2d, im2col_reference
from npuc.core import intref


def _conv(op: NpuConv2d, x: np.ndarray) -> np.ndarray:
    cout = op.ofm.shape[3]
    stage = intref.OutputStage(
        pre_shift=op.pre_shift,
        post_shift=op.post_shift,
        multipliers=op.ofm_multiplier,
        ofm_zp=op.ofm.zero_point,
        act_min=op.act_min,
        act_max=op.act_max,
        ofm_dtype=op.ofm.dtype,
        lut=op.lut,
        lut_in_dtype=op.lut_in_dtype,
        lut_bits=op.lut_bits,
        lut_x_min=op.lut_x_min,
        lut_f=op.lut_f,
    )
    bias = op.bias if op.bias is not None else np.zeros(cout, np.int16)
    y, _ = intref.conv2d(
        x[0],
        op.weights,
        bias,
        stage,
        bias_shift=op.bias_shift if op.bias is not None else 0,
        ifm_zp=op.ifm.zero_point,
        stride=op.stride,
        dilation=op.dilation,
        pads=op.padding,
        depthwise=op.depthwise,
    )
    return y[None]


def _pool(op: NpuPool, x: np.ndarray) -> np.ndarray:
    common = {"kernel": op.kernel, "stride": op.stride, "pads": op.padding}
    clamp = {"act_min": op.act_min, "act_max": op.act_max, "ofm_dtype": op.ofm.dtype}
    if op.op == "max":
        return intref.max_pool(x[0], **common, **clamp)[None]  # type: ignore[arg-type]
    y, _ = intref.avg_pool(
        x[0],
        **common,  # type: ignore[arg-type]
        ifm_zp=op.ifm.zero_point,
        ofm_zp=op.ofm.zero_point,
        ofm_multiplier=op.ofm_multiplier,
        post_shift=op.post_shift,
        **clamp,  # type: ignore[arg-type]
    )
    return y[None]


def _run(op: NpuOp, env: dict[str, np.ndarray]) -> np.ndarray:
    if isinstance(op, NpuConv2d):
        return _conv(op, env[op.ifm.name])
    if isinstance(op, NpuPool):
        return _pool(op, env[op.ifm.name])
    if isinstance(op, NpuElementwise):
        y, _ = intref.eltwise(
            op.op,
            env[op.ifm.name],
            env[op.ifm2.name],
            ifm_zp=op.ifm.zero_point,
            ifm2_zp=op.ifm2.zero_point,
            ofm_zp=op.ofm.zero_point,
            ifm_multiplier=op.ifm_multiplier,
            ifm2_multiplier=op.ifm2_multiplier,
            ofm_multiplier=op.ofm_multiplier,
            post_shift=op.post_shift,
            act_min=op.act_min,
            act_max=op.act_max,
            ofm_dtype=op.ofm.dtype,
        )
        return y
    if isinstance(op, NpuRequant):
        return intref.requant(
            env[op.ifm.name],
            ifm_zp=op.ifm.zero_point,
            ofm_zp=op.ofm.zero_point,
            ofm_multiplier=op.ofm_multiplier,
            post_shift=op.post_shift,
            act_min=op.act_min,
            act_max=op.act_max,
            ofm_dtype=op.ofm.dtype,
        )
    if isinstance(op, NpuLut):
        y = intref.lut_lookup(
            env[op.ifm.name],
            op.table,
            in_dtype=op.ifm.dtype,
            lut_bits=op.lut_bits,
            x_min=op.lut_x_min,
            f=op.lut_f,
        )
        return intref.saturate(y, op.ofm.dtype)
    if isinstance(op, NpuConcat):
        return np.concatenate([env[t.name] for t in op.ifms], axis=op.axis)
    if isinstance(op, NpuSlice):
        (_, h0, w0, c0), (_, h, w, c) = op.begin, op.ofm.shape
        return env[op.ifm.name][:, h0 : h0 + h, w0 : w0 + w, c0 : c0 + c]
    if isinstance(op, NpuReshape):
        return env[op.ifm.name].reshape(op.ofm.shape)
    if isinstance(op, NpuPad):
        t, left, b, r = op.padding
        widths = ((0, 0), (t, b), (left, r), (0, 0))
        return np.pad(env[op.ifm.name], widths, constant_values=op.ofm.zero_point)
    if isinstance(op, NpuResize):
        fh, fw = op.factors
        return env[op.ifm.name].repeat(fh, axis=1).repeat(fw, axis=2)
    if isinstance(op, NpuTranspose):
        return env[op.ifm.name].transpose(op.perm)
    if isinstance(op, NpuIm2col):
        return im2col_reference(op, env[op.ifm.name])
    if isinstance(op, NpuTapConv2d):
        return _conv(op.conv, env[op.conv.ifm.name])
    raise TypeError(f"no reference for {type(op).__name__}")


def run_reference(graph: NpuGraph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor of ``graph`` by name, computed by the integer reference (see module doc)."""
    env = {t.name: np.asarray(inputs[t.name]).astype(t.dtype) for t in graph.inputs}
    for op in graph.ops:
        env[op.ofm.name] = np.asarray(_run(op, env)).reshape(op.ofm.shape).astype(op.ofm.dtype)
    return env
