"""Move every computation on stored weights into one function the runtime calls at load.

A compact-weight module (:mod:`.weight_storage`: ``main`` takes its stored int8
or float16 weights as parameters after its ``num_input`` inputs, and
``npuc_stored_weights()`` returns them) computes the float32 weights — the
dequantization, then the weight packing the schedules asked for — inside
``main``, on every call. This pass lifts those computations (TVM's
``LiftTransformParams``) into ``main_transform_params``, binds its parameters
to the stored values so that it takes no argument, and removes
``npuc_stored_weights``. ``main`` then takes ``(inputs..., float32 weights...)``
and runs exactly the float kernels; the runtime (:mod:`npuc.runtime.compiled_model`)
calls ``main_transform_params()`` once when it loads the library and passes its
results to every ``main`` call. The library stores only the compact weights.

Requires: :class:`~npuc.backend.cpu.prepack_weights.PrepackWeights` done (the
packing calls exist, as calls on parameters) and dataflow blocks still
present (before ``ToNonDataflow``); no constant folding after this pass (it
would fold the stored weights back to float32 constants).

Guarantees: a module without ``npuc_stored_weights`` is returned unchanged.
Otherwise ``main`` computes nothing from its weight parameters but the model
itself, and ``main_transform_params()`` returns ``main``'s weight parameters in
order. Semantics: ``main(x, *main_transform_params())`` equals the compact-weight
module's ``main(x, *npuc_stored_weights())``.
"""

from __future__ import annotations

import tvm
from tvm import relax

from npuc.backend.cpu.weight_storage import STORED_WEIGHTS_FUNC, TRANSFORM_FUNC


def _stored_values(func: relax.Function) -> relax.Tuple:
    """The tuple of constants that ``npuc_stored_weights`` returns."""
    result = func.body.body if isinstance(func.body, relax.SeqExpr) else func.body
    if isinstance(result, relax.Var):
        result = relax.analysis.get_var2val(func)[result]
    if not isinstance(result, relax.Tuple):
        raise ValueError(f"{STORED_WEIGHTS_FUNC} does not return a tuple: {type(result).__name__}")
    return result


@tvm.transform.module_pass(opt_level=0, name="npuc.LiftWeightTransforms")
class LiftWeightTransforms:
    """Lift the weight computations of ``main`` into ``main_transform_params()``. No options."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        names = {gvar.name_hint for gvar in mod.get_global_vars()}
        if STORED_WEIGHTS_FUNC not in names:
            return mod
        values = _stored_values(mod[STORED_WEIGHTS_FUNC])
        lifted = relax.transform.LiftTransformParams()(mod)
        transform = lifted[TRANSFORM_FUNC]
        (param_tuple,) = transform.params
        bound = transform.bind_params({param_tuple: values}).without_attr("num_input")
        new_mod = lifted.clone()
        new_mod[TRANSFORM_FUNC] = bound
        del new_mod[STORED_WEIGHTS_FUNC]
        return new_mod
