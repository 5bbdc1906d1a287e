"""ONNX graph clean-up before conversion: shape inference and constant folding.

Guarantees: the returned model computes the same outputs as the input model
(up to float rounding of folded sub-graphs, which onnxruntime evaluates in
fp32 exactly as it would at run time); every tensor whose value depends only
on constants and on the now static input shapes is an initializer, so
``Shape``/``Gather``/``Concat`` chains that feed ``Reshape``, ``Pad``,
``Resize``, ``Slice`` or ``Expand`` become constants; dead nodes are removed;
intermediate tensors carry inferred static shapes; and empty optional
inputs are absent (:mod:`.normalize`).

Why: TVM 0.27's Relax ONNX importer handles shape arithmetic only partly. On
exported models it fails with "Reshape requires the input new shape to be
Shape" (Paddle), "Dynamic pads are not supported yet" (torch) and "Identity
cannot handle ShapeExpr inputs"; all three disappear once the shape
sub-graphs are folded (tests/frontend/test_onnx_cleanup.py shows each).

The work is done by onnxslim with its *graph fusions off*: fusing
(Conv+BatchNorm, Gemm patterns, GELU) is optimisation, which belongs to the
midend, and the frontend keeps the model's operators as the user wrote them.
onnxslim evaluates folded sub-graphs with onnxruntime.

When onnxslim itself raises (it crashes on some valid graphs, e.g. Resize
with the ``axes`` attribute), the clean-up falls back to onnx's own shape
inference on the un-slimmed model: the fix-ups of :mod:`npuc.frontend.fixups`
still fold static shape sub-graphs, and the support check then declines what
npuc cannot compile with an :class:`~npuc.core.errors.UnsupportedError` naming the
node. A model onnxruntime runs never fails here because onnxslim crashed.
"""

from __future__ import annotations

import logging

import onnx

from npuc.frontend.onnx.normalize import drop_empty_optional_inputs

_log = logging.getLogger(__name__)

# onnxslim passes npuc leaves out, with the reason.
_SKIPPED_SLIM_PASSES = (
    "graph_fusion",  # optimisation (BN folding, GELU fusion): the midend's job
)


def clean_up(model: onnx.ModelProto, where: str) -> onnx.ModelProto:
    """Shape-infer and constant-fold ``model`` (whose inputs must be static).

    Parameters
    ----------
    model
        A checked model with static input shapes. It may be modified.
    where
        The model's path, for messages.
    """
    import onnxslim

    previous_level = logging.getLogger("onnxslim").level
    backup = onnx.ModelProto()
    backup.CopyFrom(model)
    try:
        slimmed = onnxslim.slim(model, skip_optimizations=list(_SKIPPED_SLIM_PASSES))
    except Exception as exc:  # onnxslim crashes with many exception types on valid graphs
        _log.debug(
            "%s: onnxslim failed (%s: %s); using onnx shape inference",
            where,
            type(exc).__name__,
            exc,
        )
        slimmed = None
    finally:
        logging.getLogger("onnxslim").setLevel(previous_level)
    if slimmed is None:
        slimmed = infer_shapes_only(backup)
    return drop_empty_optional_inputs(slimmed)


def infer_shapes_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with onnx's inferred shapes, or unchanged where inference fails.

    The fallback when onnxslim cannot clean a model up: no constant folding,
    but intermediate shapes for the support rules.
    """
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError, ValidationError or RuntimeError
        _log.debug("onnx shape inference failed too (%s); continuing without", exc)
        return model


def apply_fixups(model: onnx.ModelProto) -> onnx.ModelProto:
    """Run the model-specific ONNX fix-ups of :mod:`npuc.frontend.fixups`."""
    from npuc.frontend.fixups import apply_onnx_fixups

    return apply_onnx_fixups(model)
