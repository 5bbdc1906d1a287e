"""Move transposes below element-wise arithmetic, pads, max pools and lookups, cancelling pairs.

A model converted from NHWC (TFLite) holds its residual adds, channel pads and
max pools in NHWC between NCHW convolutions, so each add reads transposed
inputs and its result is transposed back for the next convolution: int8
transposes the fallback schedule runs element by element. This pass rewrites,
in ``main``'s dataflow blocks:

- ``op(permute(a, p), permute(b, p), scalars...)`` -> ``permute(op(a, b, ...), p)``
  for an element-wise operator (:data:`ELEMENTWISE`) whose tensor operands all
  have one shape and the same permutation ``p`` (other operands: 0-d tensors);
- ``pad(permute(a, p))`` -> ``permute(pad(a, widths in a's axis order), p)``;
- ``max_pool2d(permute(a, [0, 2, 3, 1]), NHWC)`` -> ``permute(max_pool2d(a, NCHW), ...)``;
- an 8-bit table lookup (:func:`~.lut.emit_lookup`: flatten, lookup kernel, reshape
  back) of ``permute(a, p)`` -> ``permute(lookup of a, p)``;
- ``permute(permute(a, p), r)`` -> ``permute(a, p[r])``, or ``a`` when that is the identity.

Guarantees: the same values bit for bit (each rewrite only re-indexes: an
element-wise operator, a constant pad, a window maximum and a lookup commute
with a permutation of the axes). Bindings left without a use are removed by
the caller's dead-code elimination. Requires a module whose ``main`` is in
dataflow form (what :func:`~.module.lower_layers` builds).
"""

from __future__ import annotations

import tvm
from tvm import relax

from npuc.backend.cpu.fuse_lut import is_lookup

PERMUTE = "relax.permute_dims"
#: Element-wise operators (same-shape tensors and 0-d tensors) that commute with a transpose.
ELEMENTWISE = frozenset(
    "relax." + name
    for name in (
        "add", "subtract", "multiply", "divide", "floor_divide", "right_shift", "left_shift",
        "maximum", "minimum", "astype", "round", "floor", "ceil", "negative", "abs",
        "bitwise_and", "bitwise_or", "bitwise_xor",
    )
)  # fmt: skip
NHWC_FROM_NCHW = (0, 2, 3, 1)


def _axes(call: relax.Call, ndim: int) -> tuple[int, ...]:
    """A ``permute_dims`` call's axes, each in ``[0, ndim)`` (the attribute keeps negative
    axes as written; the pad rewrite indexes widths by axis)."""
    axes = call.attrs.axes
    return tuple(range(ndim))[::-1] if axes is None else tuple(int(a) % ndim for a in axes)


def _ndim(expr: relax.Expr) -> int:
    """Rank of a tensor-typed expression with a known shape, -1 otherwise."""
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or not isinstance(ty.shape, relax.ShapeExpr):
        return -1
    return len(ty.shape.values)


def _shape(expr: relax.Expr) -> tuple[int, ...] | None:
    """The static shape of a tensor-typed expression, None when a dimension is symbolic."""
    dims = expr.ty.shape.values
    if not all(isinstance(d, tvm.tirx.IntImm) for d in dims):
        return None
    return tuple(int(d) for d in dims)


def _op_name(value: object) -> str | None:
    if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
        return str(value.op.name)
    return None


@relax.expr_functor.mutator
class _Sink(relax.PyExprMutator):
    def _bound(self, expr: relax.Expr, op: str) -> relax.Call | None:
        """The call ``expr`` is bound to, when it is a call of ``op``."""
        value = self.lookup_binding(expr) if isinstance(expr, relax.Var) else None
        return value if _op_name(value) == op else None

    def _permuted(self, expr: relax.Expr) -> tuple[relax.Expr, tuple[int, ...]] | None:
        """``(a, p)`` when ``expr`` is bound to ``permute_dims(a, p)``."""
        value = self._bound(expr, PERMUTE)
        if value is None or _ndim(value.args[0]) < 0:
            return None
        src = value.args[0]
        return src, _axes(value, _ndim(src))

    def _permute(self, inner: relax.Expr, axes: tuple[int, ...]) -> relax.Expr:
        var = self.builder_.emit(inner)
        if axes == tuple(range(len(axes))):
            return var
        return relax.op.permute_dims(var, list(axes))

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        name = _op_name(call)
        if name is None or not call.args:
            return call
        first = self._permuted(call.args[0])
        if name == PERMUTE and first is not None:
            src, p = first
            r = _axes(call, len(p))
            composed = tuple(p[j] for j in r)
            if composed == tuple(range(len(p))):
                return src
            return relax.op.permute_dims(src, list(composed))
        if name in ELEMENTWISE:
            return self._elementwise(call)
        if name == "relax.nn.pad" and first is not None:
            src, p = first
            widths = [int(v) for v in call.attrs.pad_width]
            inner = [0] * len(widths)
            for i, axis in enumerate(p):  # output axis i is src axis p[i]
                inner[2 * axis : 2 * axis + 2] = widths[2 * i : 2 * i + 2]
            mode, value = str(call.attrs.pad_mode), float(call.attrs.pad_value)
            return self._permute(relax.op.nn.pad(src, inner, mode, value), p)
        if name == "relax.nn.max_pool2d" and first is not None:
            return self._max_pool(call, *first)
        if name == "relax.reshape":
            return self._lookup(call)
        return call

    def _elementwise(self, call: relax.Call) -> relax.Expr:
        if any(_ndim(a) < 0 for a in call.args):
            return call
        tensors = [a for a in call.args if _ndim(a) != 0]
        found = [self._permuted(a) for a in tensors]
        if not found or any(f is None for f in found):
            return call
        perms = {f[1] for f in found if f is not None}
        shapes = {_shape(a) for a in tensors}
        if len(perms) != 1 or len(shapes) != 1 or None in shapes:
            return call
        (p,) = perms
        sources = iter([f[0] for f in found if f is not None])
        args = [next(sources) if _ndim(a) != 0 else a for a in call.args]
        return self._permute(relax.Call(call.op, args, call.attrs, call.ty_args), p)

    def _max_pool(self, call: relax.Call, src: relax.Expr, p: tuple[int, ...]) -> relax.Expr:
        attrs = call.attrs
        if p != NHWC_FROM_NCHW or str(attrs.layout) != "NHWC" or str(attrs.out_layout) != "NHWC":
            return call
        pooled = relax.op.nn.max_pool2d(
            src,
            pool_size=[int(v) for v in attrs.pool_size],
            strides=[int(v) for v in attrs.strides],
            padding=[int(v) for v in attrs.padding],
            dilation=[int(v) for v in attrs.dilation],
            ceil_mode=bool(attrs.ceil_mode),
            count_include_pad=bool(attrs.count_include_pad),
            layout="NCHW",
            out_layout="NCHW",
        )
        return self._permute(pooled, p)

    def _lookup(self, call: relax.Call) -> relax.Expr:
        """``reshape(lookup(reshape(permute(a, p), flat)), shape)`` -> ``permute(.. a .., p)``."""
        looked = self._bound(call.args[0], "relax.call_tir")
        if looked is None or not is_lookup(self.builder_.get()[looked.args[0]]):
            return call
        flat, table = looked.args[1].fields
        found = self._bound(flat, "relax.reshape")
        permuted = None if found is None else self._permuted(found.args[0])
        if found is None or permuted is None:
            return call
        shape, flat_shape, src_shape = _shape(call), _shape(flat), _shape(permuted[0])
        if shape is None or flat_shape is None or src_shape is None:
            return call
        if shape != _shape(found.args[0]):
            return call
        src, p = permuted
        flat_src = self.builder_.emit(relax.op.reshape(src, flat_shape))
        out = self.builder_.emit(
            relax.call_tir(looked.args[0], [flat_src, table], looked.ty_args[0])
        )
        return self._permute(relax.op.reshape(out, src_shape), p)


def sink_transposes(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with ``main``'s transposes moved down and cancelled (module docstring)."""
    sink = _Sink(mod)
    func = sink.visit_expr(mod["main"])
    out = sink.builder_.get()
    out["main"] = func
    return out
