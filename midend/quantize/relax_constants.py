"""Take a Relax module's tensor constants out for storage, and put them back.

TVM's JSON (``tvm.ir.save_json``) writes every tensor constant base64-encoded
inside the text: for ResNet-50 that is ~137 MB of JSON, seconds to write and
to deflate. The ``.npuq`` writer instead stores the constants as raw ``.npy``
members and the module with each tensor constant replaced by a *placeholder*:
a constant of the same type (shape and dtype) whose value is its index, a
0-d ``int64`` tensor. Every tensor constant of every Relax function is
replaced, so on loading every tensor constant is a placeholder.

:func:`split_constants` and :func:`bind_constants` are inverses: binding the
arrays back gives a module structurally equal to the original
(``tvm.ir.assert_structural_equal``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tvm
from tvm import relax
from tvm.ir import GenericConst

from npuc.core.errors import InvalidInputError

#: Reads constant ``index``; gets the shape and dtype the module expects
#: (``None`` where the type does not say) so it can check the stored array.
ReadConstant = Callable[[int, tuple[int, ...] | None, str | None], np.ndarray]


def _is_tensor_const(op: GenericConst) -> bool:
    return isinstance(op.value, tvm.runtime.Tensor)


@relax.expr_functor.mutator
class _Extract(relax.PyExprMutator):
    def __init__(self) -> None:
        super().__init__()
        self.arrays: list[np.ndarray] = []

    def visit_generic_const_(self, op: GenericConst) -> relax.Expr:
        if not _is_tensor_const(op):
            return op
        index = len(self.arrays)
        self.arrays.append(op.value.numpy())
        return GenericConst(tvm.runtime.tensor(np.array(index, dtype=np.int64)), op.ty, op.span)


def type_shape_dtype(ty: object) -> tuple[tuple[int, ...] | None, str | None]:
    """The static shape and dtype a constant's type gives (``None`` where unknown)."""
    dtype = getattr(ty, "dtype", None)
    shape = getattr(ty, "shape", None)
    dims: tuple[int, ...] | None = None
    values = getattr(shape, "values", None)
    if values is not None:
        try:
            dims = tuple(int(v) for v in values)
        except (TypeError, ValueError):
            dims = None
    return dims, None if dtype is None else str(getattr(dtype, "dtype", dtype))


@relax.expr_functor.mutator
class _Bind(relax.PyExprMutator):
    def __init__(self, read: ReadConstant, count: int) -> None:
        super().__init__()
        self.read = read
        self.count = count
        self.seen: set[int] = set()
        # Raised after the walk: an exception would cross TVM's FFI on its way out.
        self.error: InvalidInputError | None = None

    def visit_generic_const_(self, op: GenericConst) -> relax.Expr:
        if not _is_tensor_const(op) or self.error is not None:
            return op
        marker = op.value.numpy()
        if marker.shape != () or marker.dtype != np.int64 or not 0 <= int(marker) < self.count:
            self.error = InvalidInputError(
                f"the stored Relax module has a constant that is not a placeholder"
                f" (value of shape {marker.shape}, dtype {marker.dtype}) for one of its"
                f" {self.count} stored constants"
            )
            return op
        index = int(marker)
        self.seen.add(index)
        shape, dtype = type_shape_dtype(op.ty)
        try:
            array = self.read(index, shape, dtype)
        except InvalidInputError as err:
            self.error = err
            return op
        return GenericConst(tvm.runtime.tensor(array), op.ty, op.span)


def _relax_functions(mod: tvm.IRModule) -> list[tuple[tvm.ir.GlobalVar, relax.Function]]:
    items = [(g, f) for g, f in mod.functions_items() if isinstance(f, relax.Function)]
    return sorted(items, key=lambda item: item[0].name_hint)


def split_constants(mod: tvm.IRModule) -> tuple[tvm.IRModule, list[np.ndarray]]:
    """``mod`` with every tensor constant replaced by a placeholder, and the arrays.

    Returns
    -------
    (tvm.IRModule, list of numpy.ndarray)
        The module (``mod`` is not modified) and the constants' values in
        placeholder order: placeholder ``i`` stands for ``arrays[i]``. The order
        is that of a walk of the Relax functions sorted by name, so the same
        module always gives the same order.
    """
    extract = _Extract()
    new_mod = mod.clone()
    for gvar, func in _relax_functions(mod):
        new_mod.update_func(gvar, extract.visit_expr(func))
    return new_mod, extract.arrays


def bind_constants(mod: tvm.IRModule, count: int, read: ReadConstant) -> tvm.IRModule:
    """Replace the placeholders of ``mod`` by the arrays ``read`` returns.

    Parameters
    ----------
    mod
        A module written by :func:`split_constants`.
    count
        How many constants were stored; every placeholder index must be below it
        and each index must be used.
    read
        ``read(index, shape, dtype)`` returns constant ``index``; it should check
        the array against ``shape`` and ``dtype`` (from the placeholder's type) and
        raise :class:`~npuc.core.errors.InvalidInputError` naming where it is stored.

    Raises
    ------
    InvalidInputError
        A tensor constant that is not a placeholder, or a stored constant that
        no placeholder uses.
    """
    bind = _Bind(read, count)
    new_mod = mod.clone()
    for gvar, func in _relax_functions(mod):
        new_mod.update_func(gvar, bind.visit_expr(func))
        if bind.error is not None:
            raise bind.error
    unused = sorted(set(range(count)) - bind.seen)
    if unused:
        raise InvalidInputError(
            f"stored constant {unused[0]} (of {count}) is not used by the stored Relax module"
        )
    return new_mod
