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
"""

from __future__ import annotations

import logging

import onnx
from npuc.frontend.onnx.normalize import drop_empty_optional_inputs

from npuc.errors import InvalidInputError

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
    try:
        slimmed = onnxslim.slim(model, skip_optimizations=list(_SKIPPED_SLIM_PASSES))
    except Exception as exc:  # onnxslim reports graph problems with many exception types
        raise InvalidInputError(
            f"{where}: ONNX shape inference / constant folding failed: {type(exc).__name__}: {exc}",
            hint="check the model with onnx.checker and onnxruntime; the graph may be inconsistent",
        ) from exc
    finally:
        logging.getLogger("onnxslim").setLevel(previous_level)
    if slimmed is None:
        raise InvalidInputError(f"{where}: ONNX constant folding returned no model")
    return drop_empty_optional_inputs(slimmed)


def apply_fixups(model: onnx.ModelProto) -> onnx.ModelProto:
    """Run the model-specific ONNX fix-ups of :mod:`npuc.frontend.fixups`."""
    from npuc.frontend.fixups import apply_onnx_fixups

    return apply_onnx_fixups(model)
