"""Fold an explicit zero ``pad`` into the convolution or max pool that reads it.

Requires: a well-formed module with static shapes.

Guarantees: ``conv2d(pad(x, zeros on H/W), w, padding=p)`` becomes
``conv2d(x, w, padding=p + pad)``, exactly (a convolution pads with zeros).
``max_pool2d(pad(x, zeros on H/W))`` becomes a max pool with that padding only
when ``x`` is a ReLU or a clip with a lower bound >= 0 (a max pool's padding is
never chosen; a zero pad is never larger than such an ``x``) and the pad is
smaller than the pool window. TFLite files spell Keras' ``ZeroPadding2D`` as a
standalone PAD (ResNet-50's conv1 and pool1), which the NPU would otherwise run
on the CPU. Everything else is left as it is; the pad stays if anything else
reads it.
"""

from __future__ import annotations

import tvm
from tvm import relax

from ._rewrite import rewrite_module

__all__ = ["FoldPad"]


@tvm.transform.module_pass(opt_level=0, name="npuc.FoldPad")
class FoldPad:
    """Zero pads into the following conv2d / max_pool2d; see the module docstring."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_module(mod, lambda m, f: _PadFolder(m, f))


def _op(expr: relax.Expr | None) -> str:
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return str(expr.op.name)
    return ""


def _spatial_pad(pad: relax.Call, layout: str) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of a constant zero pad on the H/W axes of ``layout`` only."""
    attrs = pad.attrs
    if str(attrs.pad_mode) != "constant" or float(attrs.pad_value) != 0.0:
        return None
    widths = [int(v) for v in attrs.pad_width]
    if len(widths) != 2 * len(layout):
        return None
    h, w = layout.index("H"), layout.index("W")
    for axis in range(len(layout)):
        if axis not in (h, w) and (widths[2 * axis] or widths[2 * axis + 1]):
            return None
    return widths[2 * h], widths[2 * w], widths[2 * h + 1], widths[2 * w + 1]


@relax.expr_functor.mutator
class _PadFolder(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, func: relax.Function) -> None:
        super().__init__(mod)
        self.var2val = relax.analysis.get_var2val(func)

    def _nonnegative(self, expr: relax.Expr) -> bool:
        value = self.var2val.get(expr) if isinstance(expr, relax.Var) else None
        if _op(value) == "relax.nn.relu":
            return True
        if _op(value) == "relax.clip" and isinstance(value, relax.Call):
            low = value.args[1]
            return type(low).__name__ in ("IntImm", "FloatImm") and float(low.value) >= 0.0
        return False

    def _folded(self, call: relax.Call) -> relax.Expr | None:
        name = _op(call)
        if name not in ("relax.nn.conv2d", "relax.nn.max_pool2d"):
            return None
        x = call.args[0]
        pad = self.var2val.get(x) if isinstance(x, relax.Var) else None
        if _op(pad) != "relax.nn.pad" or not isinstance(pad, relax.Call):
            return None
        a = call.attrs
        layout = str(a.data_layout if name == "relax.nn.conv2d" else a.layout)
        extra = _spatial_pad(pad, layout)
        if extra is None:
            return None
        padding = [int(p) + e for p, e in zip(a.padding, extra, strict=True)]
        src = pad.args[0]
        if name == "relax.nn.conv2d":
            return relax.op.nn.conv2d(
                src,
                call.args[1],
                strides=a.strides,
                padding=padding,
                dilation=a.dilation,
                groups=a.groups,
                data_layout=a.data_layout,
                kernel_layout=a.kernel_layout,
                out_layout=a.out_layout,
                out_dtype=a.out_dtype,
            )
        window = [int(k) for k in a.pool_size]
        if not self._nonnegative(src) or max(padding) >= min(window) or bool(a.ceil_mode):
            return None
        return relax.op.nn.max_pool2d(
            src,
            pool_size=a.pool_size,
            strides=a.strides,
            padding=padding,
            dilation=a.dilation,
            ceil_mode=False,
            count_include_pad=a.count_include_pad,
            layout=a.layout,
            out_layout=a.out_layout,
        )

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value = self.visit_expr(binding.value)
        if isinstance(value, relax.Call):
            folded = self._folded(value)
            if folded is not None:
                value = self.builder_.normalize(folded)
        self.builder_.emit_normalized(relax.VarBinding(binding.var, value))
