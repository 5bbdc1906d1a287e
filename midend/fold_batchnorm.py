"""Fold inference-mode batch normalisations with constant parameters away.

Requires: Relax in dataflow form with constant batch-norm parameters,
convolution weights and biases (run
:class:`~npuc.midend.fold_constants.FoldConstants` first so that the ONNX
importer's ``reshape(const)`` conv bias becomes a constant).

Guarantees, for ``bn = batch_norm(y, gamma, beta, mean, var)`` in inference
mode with constant parameters, whose statistics outputs are not read, and
with ``s = gamma / sqrt(var + epsilon)`` (computed in float64, stored in the
tensor dtype):

1. if ``y = conv(x, W) [+ b]`` (conv1d/2d/3d, constant ``W``, per-channel
   constant ``b`` in either operand order) and nothing else reads the conv or
   the bias add: ``bn[0]`` becomes ``conv(x, W * s) + ((b - mean) * s + beta)``,
   the scale applied along the kernel's ``O`` axis;
2. otherwise: ``bn[0]`` becomes ``y * s + (beta - mean * s)``, two elementwise
   ops that fuse with their neighbours.

Any layout works whose channel axis (``C`` of ``out_layout``) is the batch
norm's axis; blocked layouts (``NCHW16c``) are left alone. Batch norms in
training mode or with runtime parameters are left for
:class:`~npuc.midend.decompose_inference_ops.DecomposeInferenceOps`.
Idempotent (the output holds no batch norm this pass can fold).

Why not TVM's ``FoldBatchnormToConv2D``: the ONNX importer emits a Conv with a
bias as ``conv2d`` + ``add``, which it does not match; it also assumes NCHW
output and duplicates the convolution when the conv result has another reader.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import DFPattern, is_const, is_op, is_tuple_get_item, wildcard

from ._rewrite import count_uses, rewrite_module

_CONV_OPS = ("relax.nn.conv1d", "relax.nn.conv2d", "relax.nn.conv3d")
Matches = dict[DFPattern, relax.Expr]


@tvm.transform.module_pass(opt_level=0, name="npuc.FoldBatchnorm")
class FoldBatchnorm:
    """Fold constant inference batch norms into convs or a scale and shift.

    See the module docstring for what it requires and guarantees. No options.
    """

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_module(mod, lambda m, f: _BatchnormFolder(m, f))


@relax.expr_functor.mutator
class _BatchnormFolder(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, func: relax.Function) -> None:
        super().__init__(mod)
        self.var2val = relax.analysis.get_var2val(func)
        self.uses: Counter[relax.Var] = count_uses(func)
        self.var_of: dict[relax.Expr, relax.Var] = {val: var for var, val in self.var2val.items()}

        self.data, self.weight, self.bias = wildcard(), is_const(), is_const()
        conv_ops = [is_op(name)(self.data, self.weight) for name in _CONV_OPS]
        self.conv = conv_ops[0] | conv_ops[1] | conv_ops[2]
        add = is_op("relax.add")
        self.conv_bias = add(self.conv, self.bias) | add(self.bias, self.conv)
        self.params = [is_const() for _ in range(4)]  # gamma, beta, mean, var
        self.conv_bn = is_op("relax.nn.batch_norm")(self.conv_bias | self.conv, *self.params)
        self.bn_input = wildcard()
        self.plain_bn = is_op("relax.nn.batch_norm")(self.bn_input, *self.params)

    def visit_tuple_getitem_(self, op: relax.TupleGetItem) -> relax.Expr:
        conv = is_tuple_get_item(self.conv_bn, 0).extract_matched_expr(op, self.var2val)
        if conv is not None and self._conv_foldable(conv):
            return self._fold_into_conv(conv)
        plain = is_tuple_get_item(self.plain_bn, 0).extract_matched_expr(op, self.var2val)
        if plain is not None and self._bn_foldable(plain[self.plain_bn]):
            return self._fold_into_scale_shift(plain)
        return super().visit_tuple_getitem_(op)

    def _single_use(self, expr: relax.Expr) -> bool:
        var = self.var_of.get(expr)
        return var is not None and self.uses[var] == 1

    def _bn_foldable(self, bn: relax.Call) -> bool:
        ty = bn.args[0].ty
        return (
            not bool(bn.attrs.training)
            and self._single_use(bn)
            and isinstance(ty, relax.TensorType)
            and ty.ndim > 0
            and "float" in str(ty.dtype)
        )

    def _conv_foldable(self, matches: Matches) -> bool:
        bn, conv = matches[self.conv_bn], matches[self.conv]
        if not (self._bn_foldable(bn) and self._single_use(conv)):
            return False
        if self.conv_bias in matches and not self._single_use(matches[self.conv_bias]):
            return False
        out_layout, kernel_layout = str(conv.attrs.out_layout), str(conv.attrs.kernel_layout)
        if not (out_layout.isupper() and kernel_layout.isupper()):
            return False  # blocked layouts (NCHW16c) split the channel axis
        if int(bn.attrs.axis) % conv.ty.ndim != out_layout.index("C"):
            return False
        return self.bias not in matches or self._bias_vector(matches) is not None

    def _scale_shift(self, matches: Matches, bn: relax.Call) -> tuple[np.ndarray, np.ndarray]:
        """``s`` and ``beta - mean * s`` as float64 vectors over the channels."""
        gamma, beta, mean, var = (matches[p].value.numpy().astype(np.float64) for p in self.params)
        gamma = gamma if bool(bn.attrs.scale) else np.ones_like(gamma)
        beta = beta if bool(bn.attrs.center) else np.zeros_like(beta)
        scale = gamma / np.sqrt(var + float(bn.attrs.epsilon))
        return scale, beta - mean * scale

    def _fold_into_conv(self, matches: Matches) -> relax.Expr:
        conv, bn = matches[self.conv], matches[self.conv_bn]
        scale, shift = self._scale_shift(matches, bn)
        weight = matches[self.weight].value.numpy()
        bias = self._bias_vector(matches) if self.bias in matches else 0.0
        new_weight = weight.astype(np.float64) * _along(
            scale, str(conv.attrs.kernel_layout).index("O"), weight.ndim
        )
        new_bias = _along(bias * scale + shift, str(conv.attrs.out_layout).index("C"), conv.ty.ndim)
        data = self.visit_expr(conv.args[0])  # the variable; matches[] holds its value
        new_conv = self.builder_.emit(
            relax.Call(conv.op, [data, relax.const(new_weight.astype(weight.dtype))], conv.attrs)
        )
        return relax.op.add(new_conv, relax.const(new_bias.astype(str(conv.ty.dtype))))

    def _fold_into_scale_shift(self, matches: Matches) -> relax.Expr:
        bn = matches[self.plain_bn]
        ty = bn.args[0].ty
        scale, shift = self._scale_shift(matches, bn)
        axis, dtype = int(bn.attrs.axis) % ty.ndim, str(ty.dtype)
        x = self.visit_expr(bn.args[0])  # the variable; matches[] holds its value
        scaled = self.builder_.emit(
            relax.op.multiply(x, relax.const(_along(scale, axis, ty.ndim).astype(dtype)))
        )
        return relax.op.add(scaled, relax.const(_along(shift, axis, ty.ndim).astype(dtype)))

    def _bias_vector(self, matches: Matches) -> np.ndarray | None:
        """The conv bias as a per-channel float64 vector, or None if it is not per-channel."""
        bias = matches[self.bias].value.numpy()
        conv = matches[self.conv]
        rank = conv.ty.ndim
        if bias.ndim > rank:
            return None
        shape = (1,) * (rank - bias.ndim) + bias.shape
        channel_axis = str(conv.attrs.out_layout).index("C")
        if any(size != 1 for axis, size in enumerate(shape) if axis != channel_axis):
            return None
        channels = int(conv.ty.shape[channel_axis])
        if shape[channel_axis] not in (1, channels):
            return None
        return np.broadcast_to(bias.astype(np.float64).reshape(-1), (channels,)).copy()


def _along(vector: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """``vector`` reshaped to broadcast along ``axis`` of an ``ndim``-d tensor."""
    shape = [1] * ndim
    shape[axis] = -1
    return vector.reshape(shape)
