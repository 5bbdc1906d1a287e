"""Fix-ups that let real exported models through TVM's Relax ONNX importer.

Two ordered lists of rewrites, each in its own module:

* :func:`apply_onnx_fixups` runs on the ONNX graph after shape inference and
  constant folding, before ``tvm.relax.frontend.onnx.from_onnx``;
* :func:`apply_relax_fixups` runs on the imported Relax module.

Every fix-up works around a pattern that a common exporter emits and that
TVM 0.27 rejects or mis-converts. Each one keeps the model's results
unchanged: it only rewrites a graph into an equivalent one that the importer
or the build pipeline handles.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
import tvm

from .clip_take_indices import clip_take_indices
from .empty_slices import fix_empty_slices
from .expand_norm_params import expand_norm_params
from .explicit_auto_pad import explicit_auto_pad
from .fold_static_shapes import fold_static_shapes
from .inline_constant_if import inline_constant_if
from .lift_1d_to_2d import lift_1d_to_2d
from .remove_identity import remove_identity
from .unroll_recurrent import unroll_recurrent

OnnxFixup = Callable[[onnx.ModelProto], onnx.ModelProto]
RelaxFixup = Callable[[tvm.IRModule], tvm.IRModule]

ONNX_FIXUPS: tuple[OnnxFixup, ...] = (
    # Identity on a Shape result: "cannot handle ShapeExpr inputs" (Paddle, torch).
    remove_identity,
    # Shape arithmetic feeding Reshape/Pad/Range: static once input shapes are fixed.
    fold_static_shapes,
    # If on a constant (an input fixed with --input-value): the branch taken, inlined.
    inline_constant_if,
    # 1-D Conv/ConvTranspose/pools (audio models): npuc compiles the 2-D forms.
    lift_1d_to_2d,
    # LSTM/GRU: TVM has no converter; unrolled over the static sequence length.
    unroll_recurrent,
    # auto_pad: TVM sizes SAME_LOWER pooling with floor; write the ONNX pads instead.
    explicit_auto_pad,
    # LayerNormalization: TVM takes the normalised axes from Scale's rank.
    expand_norm_params,
    # Empty Slice with a negative step: TVM's slice lowering rejects it.
    fix_empty_slices,
)
RELAX_FIXUPS: tuple[RelaxFixup, ...] = (
    # Gather of run-time indices (token ids): TVM's fast take reads out of bounds.
    clip_take_indices,
)


def apply_onnx_fixups(model: onnx.ModelProto) -> onnx.ModelProto:
    """Apply every ONNX-level fix-up in order; returns the rewritten model.

    Parameters
    ----------
    model
        A model whose input shapes are fixed and that has been through shape
        inference and constant folding.
    """
    for fixup in ONNX_FIXUPS:
        model = fixup(model)
    return model


def apply_relax_fixups(mod: tvm.IRModule) -> tvm.IRModule:
    """Apply every Relax-level fix-up in order; returns the rewritten module."""
    for fixup in RELAX_FIXUPS:
        mod = fixup(mod)
    return mod
