"""TVM's TFLite operator converter with npuc's fixes, and a per-operator support report.

:class:`NpucTFLiteConverter` subclasses ``tvm.relax.frontend.tflite``'s
``OperatorConverter``. It is handed to ``from_tflite(..., op_converter=...)``
for one import, so TVM's module is never patched. Guarantees:

- every operator the importer cannot take is reported at once, each with its
  index, TFLite op name, first output tensor and the reason
  (:meth:`NpucTFLiteConverter.unsupported_ops`);
- an exception raised while converting one operator comes out as
  :class:`ConversionFailure` naming that operator;
- the TVM 0.27 bugs listed in ``docs/frontends_tflite_torch.md`` are fixed
  here: ``EXPAND_DIMS`` (three-argument ``expand_dims`` call), ``DEQUANTIZE``
  of a ``DENSIFY`` output (sparse fp16 weights) and ``PRELU`` (which TVM
  lowers through a constant as large as the activation).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
from tvm import relax
from tvm.relax.frontend.tflite.tflite_frontend import OperatorConverter, get_tensor_name

# Ops whose inputs or outputs may carry quantization parameters: TVM's own
# list, plus DENSIFY, which only unpacks a constant (its DEQUANTIZE is ours).
_QUANTIZED_OK: frozenset[str] = OperatorConverter._SUPPORTED_QUANTIZED_OPS | {"DENSIFY"}


@dataclass(frozen=True, slots=True)
class OpProblem:
    """One operator the importer cannot convert."""

    index: int
    op: str
    output: str
    reason: str

    def describe(self) -> str:
        return f"operator #{self.index} {self.op} (output '{self.output}'): {self.reason}"


class ConversionFailure(Exception):
    """Converting one operator raised; carries which one and the original error."""

    def __init__(self, problem: OpProblem) -> None:
        super().__init__(problem.describe())
        self.problem = problem


class NpucTFLiteConverter(OperatorConverter):
    """``OperatorConverter`` with per-op error reporting and npuc's bug fixes."""

    convert_map: dict[str, Callable[..., Any]]  # TFLite op name -> converter (TVM's)

    def __init__(self, model: Any, subgraph: Any, exp_tab: Any, ctx: Any, *args: Any) -> None:
        super().__init__(model, subgraph, exp_tab, ctx, *args)
        self.convert_map.update(self.npuc_converters())
        positions = {subgraph.Operators(i)._tab.Pos: i for i in range(subgraph.OperatorsLength())}
        self.convert_map = {
            name: _guarded(self, name, fn, positions) for name, fn in self.convert_map.items()
        }

    def npuc_converters(self) -> dict[str, Callable[..., Any]]:
        """The converters npuc replaces (subclasses add theirs), by TFLite op name."""
        return {
            "EXPAND_DIMS": self._convert_expand_dims_fixed,
            "DEQUANTIZE": self._convert_dequantize_fixed,
            "PRELU": self._convert_prelu_channelwise,
        }

    # ------------------------------------------------------------------ report
    def op_name(self, op: Any) -> tuple[str, str | None]:
        """The op's TFLite name, or a readable placeholder and why TVM cannot name it."""
        try:
            return str(self.get_op_code_str(op)), None
        except NotImplementedError as err:
            code = self.model.OperatorCodes(op.OpcodeIndex())
            custom = code.CustomCode()
            if custom is not None:
                return f"CUSTOM({custom.decode('utf-8', 'replace')})", "custom operator"
            return f"BUILTIN_{max(code.BuiltinCode(), code.DeprecatedBuiltinCode())}", str(err)

    def unsupported_ops(self) -> list[OpProblem]:
        """Every operator of the main subgraph that cannot be converted, in graph order."""
        problems: list[OpProblem] = []
        for index in range(self.subgraph.OperatorsLength()):
            op = self.subgraph.Operators(index)
            name, why = self.op_name(op)
            outputs = op.OutputsAsNumpy()
            out_name = get_tensor_name(self.subgraph, int(outputs[0])) if len(outputs) else "-"
            reason = why or self._quantization_problem(op, name)
            if why is None and name not in self.convert_map:
                reason = "TVM's TFLite importer has no converter for this operator"
            if reason is not None:
                problems.append(OpProblem(index, name, out_name, reason))
        return problems

    def _quantization_problem(self, op: Any, name: str) -> str | None:
        ins = self.get_input_tensors(op)
        outs = self.get_output_tensors(op)
        q_in = any(t.qnn_params is not None for t in ins[:1])
        q_weights = any(t.qnn_params is not None for t in ins[1:])
        q_out = any(t.qnn_params is not None for t in outs)
        if q_weights and not (q_in or q_out):
            return (
                "dynamic-range quantized weights (float activations) are not supported: convert "
                "the model full-integer (representative_dataset, TFLITE_BUILTINS_INT8), or give "
                "npuc the float model and --calib"
            )
        if (q_in or q_weights or q_out) and name not in _QUANTIZED_OK:
            return "quantized form of this operator is not supported"
        return None

    def check_unsupported_ops(self) -> None:
        """Called by ``from_tflite``; :func:`load_tflite` already reported problems."""
        problems = self.unsupported_ops()
        if problems:
            raise ConversionFailure(problems[0])

    # ------------------------------------------------------------------ fixes
    def _convert_expand_dims_fixed(self, op: Any) -> relax.Expr:
        """EXPAND_DIMS; TVM 0.27 calls ``relax.op.expand_dims(x, axis, 1)``, which raises."""
        data, axis_tensor = self.get_input_tensors(op)
        axis = np.asarray(self.get_tensor_value_or_prefetched(axis_tensor)).reshape(-1)
        if axis.size != 1:
            raise tvm.error.OpNotImplemented("EXPAND_DIMS needs one constant axis")
        return relax.op.expand_dims(self.get_tensor_expr(data), int(axis[0]))

    def _convert_dequantize_fixed(self, op: Any) -> relax.Expr:
        """DEQUANTIZE; an input produced by DENSIFY has no buffer, only a prefetched value."""
        (data,) = self.get_input_tensors(op)
        if not self.is_prefetched(data.tensor_idx):
            return OperatorConverter.convert_dequantize(self, op)
        value = np.asarray(self.get_prefetched_node(data.tensor_idx))
        const = self.exp_tab.new_const(value, dtype=str(value.dtype))
        if data.qnn_params is None:  # fp16 weights
            return relax.op.astype(const, "float32")
        return self.dequantize(const, data)  # int8 weights with scale / zero point

    def _convert_prelu_channelwise(self, op: Any) -> relax.Expr:
        """PRELU as ``nn.prelu`` on the channel axis, or ``where`` for other alpha shapes.

        TVM broadcasts alpha to the full activation shape and flattens both,
        which builds a constant as large as the activation.
        """
        data, alpha = self.get_input_tensors(op)
        x = self.get_tensor_expr(data)
        shape = [int(d) for d in self.get_tensor_shape(data)]
        alpha_shape = [int(d) for d in self.get_tensor_shape(alpha)]
        while alpha_shape and alpha_shape[0] == 1 and len(alpha_shape) > 1:
            alpha_shape = alpha_shape[1:]
        a = self.get_tensor_expr(alpha)
        if shape and alpha_shape in ([shape[-1]], [1]):
            a = relax.op.reshape(a, [alpha_shape[0]])
            if alpha_shape[0] != shape[-1]:
                a = relax.op.broadcast_to(a, [shape[-1]])
            return relax.op.nn.prelu(x, a, axis=len(shape) - 1)
        zero = relax.const(0.0, "float32")
        return relax.op.where(relax.op.greater_equal(x, zero), x, relax.op.multiply(x, a))


def _guarded(
    conv: NpucTFLiteConverter, name: str, fn: Callable[..., Any], positions: dict[int, int]
) -> Callable[..., Any]:
    """Wrap one converter entry so a failure names the operator it came from."""

    @functools.wraps(fn)
    def call(*args: Any, op: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, op=op, **kwargs)
        except ConversionFailure:
            raise
        except Exception as err:  # TVM raises assorted types (AssertionError, TVMError, ...)
            outputs = op.OutputsAsNumpy()
            out = get_tensor_name(conv.subgraph, int(outputs[0])) if len(outputs) else "-"
            reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}"
            index = positions.get(op._tab.Pos, -1)
            raise ConversionFailure(OpProblem(index, name, out, reason)) from err

    return call
