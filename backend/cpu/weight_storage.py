"""Shared plumbing of the compact weight modes (``--precision weight-int8 / fp16-weights``).

Not a pass: what :class:`~npuc.backend.cpu.quantize_weights_int8.QuantizeWeightsInt8`
and :class:`~npuc.backend.cpu.store_weights_fp16.StoreWeightsFp16` share — which
weights qualify, and how a qualifying weight constant of ``main`` becomes a
*stored* tensor (int8 or float16) that the library keeps, plus the Relax
expression that turns it back into the float32 weight.

The stored tensors leave ``main``'s body: they become extra parameters of
``main`` after its inputs (the function's ``num_input`` attribute counts the
inputs), and their values are returned, in the same order, by a function of
its own, :data:`STORED_WEIGHTS_FUNC`. So no constant folding can turn them back
into float32 constants before
:class:`~npuc.backend.cpu.lift_weight_transforms.LiftWeightTransforms` moves
every computation on them (the dequantization, the schedules' weight packing)
into :data:`TRANSFORM_FUNC`, which the runtime calls once when it loads the
library. A weight shared by several operators is stored once; each use gets
its own float32 copy at load (the schedules may pack each differently).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from npuc.core.artifact_format import WEIGHT_TRANSFORM_FUNC

WEIGHT_PRECISIONS = ("float", "weight-int8", "fp16-weights")
"""How a float CPU library stores its weights (``npuc build --precision``)."""

STORED_WEIGHTS_FUNC = "npuc_stored_weights"
"""Zero-argument Relax function returning the stored weights (a tuple), in ``main``'s order."""

TRANSFORM_FUNC = WEIGHT_TRANSFORM_FUNC
"""Zero-argument function of a compact-weight library giving ``main``'s float32 weights
(TVM's ``LiftTransformParams`` name; the runtime looks it up)."""

MIN_WEIGHT_ELEMENTS = 1024
"""Weights with fewer elements stay float32 (TFLite's dynamic-range default): biases,
tiny convolutions; storing them compactly saves little and costs accuracy."""

WEIGHT_OPS = ("relax.nn.conv1d", "relax.nn.conv2d", "relax.nn.conv3d", "relax.matmul")
"""The operators whose weight (second operand, a float32 constant) is stored compactly."""


@dataclass(frozen=True, slots=True)
class StoredWeight:
    """One weight as the library stores it.

    Attributes
    ----------
    values
        The stored tensor (int8 or float16), the weight's shape.
    to_float
        Builds the float32 weight from the stored tensor's Relax variable.
    """

    values: np.ndarray
    to_float: Callable[[relax.Expr], relax.Expr]


Compressor = Callable[[np.ndarray, int], StoredWeight | None]
"""``(float32 weight, output-channel axis) -> StoredWeight``, or ``None`` to keep it float."""


def output_channel_axis(call: relax.Call) -> int | None:
    """The axis of ``call``'s weight (``args[1]``) that indexes output channels.

    Convolutions: the ``O`` of their ``kernel_layout`` (``OIHW`` -> 0). ``matmul``
    ``x @ W``: the last axis of ``W`` (ndim >= 2). ``None`` for anything else.
    """
    name = call.op.name if isinstance(call.op, tvm.ir.Op) else ""
    if name not in WEIGHT_OPS or len(call.args) < 2:
        return None
    if name == "relax.matmul":
        ndim = getattr(call.args[1].ty, "ndim", -1)
        return ndim - 1 if ndim >= 2 else None
    layout = str(call.attrs.kernel_layout)
    return layout.index("O") if "O" in layout else None


def qualifying_weight(call: relax.Call, min_elements: int) -> tuple[np.ndarray, int] | None:
    """``(float32 weight, output-channel axis)`` if ``call``'s weight is stored compactly."""
    axis = output_channel_axis(call)
    if axis is None:
        return None
    weight = call.args[1]
    if not isinstance(weight, tvm.ir.expr.Constant) or str(weight.value.dtype) != "float32":
        return None
    values = weight.value.numpy()
    if values.size < min_elements:
        return None
    return values, axis


@relax.expr_functor.mutator
class _WeightStorer(relax.PyExprMutator):
    """Replaces qualifying weights by ``to_float(stored parameter)``; collects the parameters."""

    def __init__(self, mod: tvm.IRModule, compress: Compressor, min_elements: int) -> None:
        super().__init__(mod)
        self.compress = compress
        self.min_elements = min_elements
        self.params: list[relax.Var] = []
        self.values: list[np.ndarray] = []
        # A weight shared by several operators is stored once.
        self._stored: dict[tvm.ir.expr.Constant, tuple[relax.Var, StoredWeight]] = {}

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not isinstance(call, relax.Call):
            return call
        found = qualifying_weight(call, self.min_elements)
        if found is None:
            return call
        constant = call.args[1]
        if constant not in self._stored:
            stored = self.compress(*found)
            if stored is None:
                return call
            var = relax.Var(
                f"w{len(self.params)}_{stored.values.dtype}",
                relax.TensorType(stored.values.shape, str(stored.values.dtype)),
            )
            self.params.append(var)
            self.values.append(stored.values)
            self._stored[constant] = (var, stored)
        var, stored = self._stored[constant]
        weight = self.builder_.emit(stored.to_float(var))
        return relax.Call(call.op, [call.args[0], weight, *call.args[2:]], call.attrs, call.ty_args)


def store_weights(mod: tvm.IRModule, compress: Compressor, min_elements: int) -> tvm.IRModule:
    """Store ``main``'s qualifying weights with ``compress``; see the module docstring.

    ``main`` keeps its inputs first; the stored tensors follow as parameters
    (``num_input`` = the number of inputs) and :data:`STORED_WEIGHTS_FUNC`
    returns their values. A module that already has :data:`STORED_WEIGHTS_FUNC`
    (stored before) or has no qualifying weight is returned unchanged.
    """
    main = mod["main"]
    names = {gvar.name_hint for gvar in mod.get_global_vars()}
    if not isinstance(main, relax.Function) or STORED_WEIGHTS_FUNC in names:
        return mod
    storer = _WeightStorer(mod, compress, min_elements)
    body = storer.visit_expr(main.body)
    if not storer.params:
        return mod
    new_main = relax.Function(
        [*main.params, *storer.params], body, main.ret_ty, main.is_pure, main.attrs
    ).with_attr("num_input", len(main.params))
    builder = relax.BlockBuilder()
    with builder.function(STORED_WEIGHTS_FUNC, []):
        builder.emit_func_output(relax.Tuple([relax.const(v) for v in storer.values]))
    new_mod = mod.clone()
    new_mod["main"] = new_main
    new_mod[STORED_WEIGHTS_FUNC] = builder.get()[STORED_WEIGHTS_FUNC]
    return new_mod
