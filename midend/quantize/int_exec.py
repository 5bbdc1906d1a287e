"""The integer executor: the golden model of a quantized model, layer by layer.

Integer layers run the NPU's formulas (docs/npu_spec.md) with the integer
reference's primitives (:mod:`npuc.core.intref`: ``rshift_round``, ``sat32``,
``sat48``, the conv output stage, element-wise ops and table lookups). The
multiply-accumulate of convolutions and fully connected layers runs in
float64 BLAS, which is exact here: every product of an int16 (or narrower)
activation and an int8 weight is below 2^23, and sums of up to 2^30 of them
stay below 2^53 (tests/midend/quantize check it against int64); float32 where
every partial sum provably stays below 2^24. The output stage (bias, shifts,
multiplier, clamp) then runs in float64 too where every intermediate provably
stays below 2^52 (:mod:`.exact_stage`, checked against the int64 reference),
else in the int64 reference itself. BLAS runs on one thread
(:mod:`.threads`).

Float layers (``run_on == "cpu"``) run in float32 through the compiled
kernels of :mod:`.float_kernels` (the integer CPU library embeds the same
kernels, so it gets the same bits); layers that only move values run in
numpy. At a boundary an integer tensor is dequantized, and a float tensor
read by an integer layer is quantized with its parameters (round half to
even, saturate), which is what the host does at the NPU's boundary.

Guarantees: the result is a deterministic function of the quantized model and
the inputs; the simulator and the CPU integer path must equal it bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuc.core.intref import eltwise
from npuc.core.intref.arith import clamp_activation, rshift_round, sat32, sat48
from npuc.core.intref.conv import OutputStage, apply_output_stage
from npuc.core.intref.lut import lut_lookup

from . import kernels
from .exact_eltwise import add_f64
from .exact_stage import clamp_bounds, fits_f64, output_stage_f64
from .float_exec import FloatExecutor, data_movement
from .float_kernels import FloatKernels
from .graph import Node
from .qmodel import QLayer, QuantizedModel
from .qparams import QParams
from .threads import blas_one_thread

_ELTWISE = {"add": "add", "subtract": "sub", "multiply": "mul", "maximum": "max", "minimum": "min"}


@dataclass(frozen=True, slots=True)
class IntTensor:
    """Stored integers (int64 array, NCHW as the graph) and their quantization parameters."""

    values: np.ndarray
    qparams: QParams

    def dequantize(self) -> np.ndarray:
        return self.qparams.dequantize(self.values).astype(np.float32)


class IntegerExecutor:
    """Runs a :class:`~.qmodel.QuantizedModel`; integer layers bit-exact to the NPU formulas."""

    def __init__(self, model: QuantizedModel, float_executor: FloatExecutor | None = None) -> None:
        self.model = model
        self.float = float_executor or FloatExecutor(model.graph)
        float_layers = [n for n, layer in model.layers.items() if layer.run_on != "npu"]
        self.kernels = FloatKernels(model.graph, float_layers)
        self.overflow: set[str] = set()
        self._resize_index: dict[str, np.ndarray] = {}
        self._dtypes: dict[tuple[int, QParams], tuple[np.dtype[Any], int]] = {}

    @blas_one_thread
    def run(self, feeds: Mapping[str, np.ndarray], *, raw_inputs: bool = False) -> dict[str, Any]:
        """Every tensor for one sample: :class:`IntTensor` for integer tensors, arrays otherwise.

        ``raw_inputs``: the feeds of integer graph inputs are already stored
        integers (an integer-only pipeline), not floats to quantize.
        """
        env: dict[str, Any] = {}
        for name, ty in self.model.graph.inputs:
            value = np.asarray(feeds[name])
            if name in self.model.tensors:
                q = self.model.tensors[name]
                ints = value.astype(np.int64) if raw_inputs else q.quantize(value).astype(np.int64)
                env[name] = IntTensor(ints, q)
            else:
                env[name] = value.astype(ty.dtype, copy=False)
        for node in self.model.graph.nodes:
            env[node.name] = self.run_node(node, env)
        return env

    def run_node(self, node: Node, env: Mapping[str, Any]) -> Any:
        """One layer's output from the values in ``env``."""
        layer = self.model.layers[node.name]
        if layer.run_on != "npu":
            inputs = [self.as_float(env[n]) for n in node.inputs]
            computed = self.kernels.run(node, inputs)
            if computed is not None:
                return computed
            floats = {**env, **dict(zip(node.inputs, inputs, strict=True))}
            return self.float.run_node(node, inputs, floats)
        ins = [self.as_int(env[n], self.model.tensors[n]) for n in node.inputs]
        out = self.model.tensors[node.name]
        return IntTensor(self.compute(node, layer, ins, out), out)

    @staticmethod
    def as_float(value: Any) -> Any:
        return value.dequantize() if isinstance(value, IntTensor) else value

    @staticmethod
    def as_int(value: Any, q: QParams) -> IntTensor:
        if isinstance(value, IntTensor):
            return value
        return IntTensor(q.quantize(value).astype(np.int64), q)

    def compute(self, node: Node, layer: QLayer, ins: list[IntTensor], out: QParams) -> np.ndarray:
        """Stored output integers (int64) of an integer layer."""
        p = layer.params
        op = node.op
        if op in ("conv2d", "dense"):
            return self._conv(node, p, ins[0], out)
        if op in _ELTWISE:
            a, b = ins[0], ins[1] if len(ins) > 1 else None
            if b is None:
                const = IntTensor(
                    np.asarray(p["const"], np.int64),
                    QParams(p["const_scale"], p["const_zp"], out.dtype),
                )
                a, b = (const, a) if node.attr("const_side") == "lhs" else (a, const)
            if op in ("add", "subtract") and len(ins) > 1:
                fast = add_f64(
                    a.values, b.values, a.qparams, b.qparams,
                    ifm_multiplier=p.get("ifm_multiplier", 0),
                    ifm2_multiplier=p.get("ifm2_multiplier", 0), subtract=op == "subtract",
                    post_shift=p["post_shift"], ofm_zp=out.zero_point,
                    act_min=p["act_min"], act_max=p["act_max"], ofm_dtype=out.dtype,
                )  # fmt: skip
                if fast is not None:  # provably the reference's integers (exact_eltwise)
                    return fast
            y, overflow = eltwise(
                _ELTWISE[op], a.values, b.values,
                ifm_zp=a.qparams.zero_point, ifm2_zp=b.qparams.zero_point, ofm_zp=out.zero_point,
                ifm_multiplier=p.get("ifm_multiplier", 0),
                ifm2_multiplier=p.get("ifm2_multiplier", 0),
                ofm_multiplier=p.get("ofm_multiplier", 0),
                post_shift=p["post_shift"], act_min=p["act_min"], act_max=p["act_max"],
                ofm_dtype=out.dtype,
            )  # fmt: skip
            if overflow:
                self.overflow.add(node.name)
            return np.asarray(y, np.int64)
        x = ins[0]
        if op == "clip":
            return self._requant(x.values - x.qparams.zero_point, p, out)
        if op in ("avg_pool2d", "global_avg_pool"):
            centered = (x.values - x.qparams.zero_point).astype(np.float64)
            if op == "global_avg_pool":
                total = centered.sum(axis=(2, 3), keepdims=True)
            else:
                total = kernels.pool_sum_nchw(
                    centered, kernel=node.attr("kernel"), strides=node.attr("strides"),
                    padding=node.attr("padding"), dilation=node.attr("dilation"),
                    pad_value=0.0, reduce="sum",
                )  # fmt: skip
            summed = sat32(total.astype(np.int64))
            return self._requant(summed, p, out)
        if op == "max_pool2d":
            lowest = float(np.iinfo(np.int32).min)
            y = kernels.pool_sum_nchw(
                x.values.astype(np.float64), kernel=node.attr("kernel"),
                strides=node.attr("strides"), padding=node.attr("padding"),
                dilation=node.attr("dilation"), pad_value=lowest, reduce="max",
            )  # fmt: skip
            return clamp_activation(y.astype(np.int64), out.qmin, out.qmax, out.dtype)
        if op == "unary":
            table = np.asarray(p["lut"])
            looked = lut_lookup(
                x.values, table, in_dtype=x.qparams.dtype, lut_bits=int(p.get("lut_bits", 8))
            )
            return clamp_activation(looked, out.qmin, out.qmax, out.dtype)
        if op == "concat":
            parts = []
            for t, (m, shift) in zip(ins, p["input_requant"], strict=True):
                if (m, shift) == (1, 0) and t.qparams == out:
                    parts.append(t.values)
                else:
                    y = rshift_round((t.values - t.qparams.zero_point) * m, shift) + out.zero_point
                    parts.append(clamp_activation(y, out.qmin, out.qmax, out.dtype))
            return np.concatenate(parts, axis=node.attr("axis"))
        if op == "resize":
            one = self._resize_map(node, (1, *x.values.shape[1:]))
            stride = int(np.prod(x.values.shape[1:]))
            flat = x.values.reshape(-1)
            return np.concatenate(
                [flat[i * stride + one] for i in range(x.values.shape[0])], axis=0
            )
        return data_movement(node, [t.values for t in ins])

    @staticmethod
    def _exact_float(p: Mapping[str, Any], q: QParams) -> tuple[np.dtype[Any], int]:
        """The float dtype that sums exactly, and the bound on ``|sum((x - ifm_zp) * w)|``.

        Any partial sum of ``(x - ifm_zp) * w[c]`` over a reduction is bounded by
        ``sum|w[c]| * max|x - ifm_zp|``; below 2^24 every such integer (and every
        product) is exact in float32's 24-bit significand, in any summation order;
        otherwise float64 (exact below 2^53, see the module docstring).
        """
        weights = np.asarray(p["weights"])
        l1 = np.abs(weights.astype(np.int64)).reshape(weights.shape[0], -1).sum(axis=1)
        if weights.ndim == 2:  # dense (K, N): the reduction runs over K
            l1 = np.abs(weights.astype(np.int64)).sum(axis=0)
        peak = max(q.zero_point - q.qmin, q.qmax - q.zero_point)
        bound = int(l1.max(initial=0)) * peak
        return np.dtype(np.float32 if bound < (1 << 24) else np.float64), bound

    def conv_sums(self, node: Node, p: Mapping[str, Any], x: IntTensor) -> tuple[np.ndarray, int]:
        """``sum((x - ifm_zp) * w)`` without the bias, channels last, and a bound on ``|sum|``.

        The array is float32 or float64 holding the exact integers (a fresh array).
        """
        key = (id(p["weights"]), x.qparams)
        plan = self._dtypes.get(key)
        if plan is None:
            plan = self._dtypes[key] = self._exact_float(p, x.qparams)
        dtype, bound = plan
        centered = np.subtract(x.values, x.qparams.zero_point, dtype=dtype)  # exact: < 2^17
        w = np.asarray(p["weights"], dtype)
        if node.op == "conv2d":
            acc = kernels.conv2d_nchw(
                centered, w, strides=node.attr("strides"), padding=node.attr("padding"),
                dilation=node.attr("dilation"), groups=node.attr("groups"), pad_value=0.0,
            ).transpose(0, 2, 3, 1)  # fmt: skip
        else:
            acc = centered @ w
        return acc, bound

    def conv_accumulate(self, node: Node, p: Mapping[str, Any], x: IntTensor) -> np.ndarray:
        """``sat48(sum((x - ifm_zp) * w) + (b16 << bias_shift))``, int64, channels last."""
        acc48, overflow = self._acc48(self.conv_sums(node, p, x)[0], p)
        if overflow:
            self.overflow.add(node.name)
        return acc48

    @staticmethod
    def _acc48(acc: np.ndarray, p: Mapping[str, Any]) -> tuple[np.ndarray, bool]:
        return sat48(acc.astype(np.int64) + (np.asarray(p["b16"], np.int64) << p["bias_shift"]))

    def conv_output(
        self,
        node: Node,
        p: Mapping[str, Any],
        sums: tuple[np.ndarray, int],
        out: QParams | None,
        *,
        as_float: bool = False,
    ) -> np.ndarray:
        """The output stage of :meth:`conv_sums`'s result, int64 in the graph's layout
        (``as_float``: the same integers as float64).

        With ``out``: the stored output integers. With None: the stage before the
        clamp, minus ``ofm_zp`` (bias correction's view),
        ``rshift_round(sat32(rshift_round(acc48, pre_shift)) * M[c], post_shift)``.
        ``sums`` is not modified. Runs in float64 (:mod:`.exact_stage`) where that
        is provably exact, else in the int64 reference.
        """
        acc, bound = sums
        bias = np.asarray(p["b16"], np.int64) << p["bias_shift"]
        m = np.asarray(p["ofm_multiplier"])
        pre, post = p["pre_shift"], p["post_shift"]
        if fits_f64(bound, bias, m, pre, post):
            y, overflow = output_stage_f64(
                acc, bias, acc_bound=bound, pre_shift=pre, post_shift=post, multipliers=m,
                ofm_zp=0 if out is None else out.zero_point,
                clamp=None if out is None else clamp_bounds(p["act_min"], p["act_max"], out.dtype),
                dtype=np.float64 if as_float else np.int64,
            )  # fmt: skip
        else:
            acc48, overflow = self._acc48(acc, p)
            if out is None:
                acc32 = sat32(rshift_round(acc48, pre))
                y = rshift_round(acc32 * np.asarray(m, np.int64).reshape(-1), post)
            else:
                stage = OutputStage(
                    pre_shift=pre, post_shift=post, multipliers=m, ofm_zp=out.zero_point,
                    act_min=p["act_min"], act_max=p["act_max"], ofm_dtype=out.dtype,
                )  # fmt: skip
                y = apply_output_stage(acc48, stage)
            y = y.astype(np.float64) if as_float else y
        if overflow:
            self.overflow.add(node.name)
        return y.transpose(0, 3, 1, 2) if node.op == "conv2d" else y

    def _conv(self, node: Node, p: Mapping[str, Any], x: IntTensor, out: QParams) -> np.ndarray:
        return self.conv_output(node, p, self.conv_sums(node, p, x), out)

    def conv_unclamped(self, node: Node, p: Mapping[str, Any], x: IntTensor) -> np.ndarray:
        """:meth:`conv_output` with ``out=None`` (the stage before the clamp, minus ``ofm_zp``)."""
        return self.conv_output(node, p, self.conv_sums(node, p, x), None)

    @staticmethod
    def _requant(centered: np.ndarray, p: Mapping[str, Any], out: QParams) -> np.ndarray:
        y = rshift_round(np.asarray(centered, np.int64) * p["ofm_multiplier"], p["post_shift"])
        return clamp_activation(y + out.zero_point, p["act_min"], p["act_max"], out.dtype)

    def _resize_map(self, node: Node, shape: tuple[int, ...]) -> np.ndarray:
        """Flat source index of every output element of a nearest resize (from TVM's own op)."""
        index = self._resize_index.get(node.name)
        if index is None:
            n, c, h, w = shape
            codes = np.arange(n * c * h * w, dtype=np.float64).reshape(shape)
            if codes.size >= 1 << 24:
                raise ValueError(f"{node.name}: resize input too large to index")
            mapped = self.float.run_node(node, [codes.astype(np.float32)], {})
            index = self._resize_index[node.name] = np.rint(mapped).astype(np.int64)
        return index
