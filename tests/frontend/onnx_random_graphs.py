"""Hypothesis strategies for small random ONNX graphs over the operators npuc claims.

Each draw is a :class:`GenCase`: a one- or two-node float32 model (opset 18),
its feeds, and ``combo``, a short key naming the operator and the attribute
combination drawn (``"MaxPool auto_pad=SAME_LOWER s=2 ceil=0"``), so a run can
count how many distinct combinations it tried. The draws deliberately reach
the edges the fault reports came from: every ``auto_pad`` with any stride,
LayerNormalization with lower-rank scale/bias, reflect pads wider than the
axis, empty slices with negative steps, even LRN sizes, Resize scales that
do not divide the size.

:func:`run_case` compiles a case through npuc's CPU path
(:class:`tools.conformance.backend.NpucCpuBackend`: import, midend, build,
runtime) and through onnxruntime, and returns the outcome: ``"match"`` (same
shapes, values within ``RTOL``/``ATOL``) or ``"declined"`` (npuc's support
check refused it by a rule, with its reason). Anything else raises
:class:`DifferentialMismatch`: a wrong value or shape, a model onnxruntime
refuses but npuc compiles, or an error that is not a rule's refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

# fp32 graphs whose reductions TVM and onnxruntime order differently
RTOL = 1e-4
ATOL = 1e-4
OPSET = 18

Draw = Callable[[st.SearchStrategy], object]


@dataclass(frozen=True)
class GenCase:
    """One generated model, its feeds and the combination key it exercises."""

    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    combo: str


class DifferentialMismatch(AssertionError):
    """npuc and onnxruntime disagree on a generated case, with no rule declining it."""


def single_input_model(
    nodes: list[onnx.NodeProto],
    x_shape: Sequence[int],
    consts: dict[str, np.ndarray],
    seed: int,
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    graph = helper.make_graph(
        nodes,
        "gen",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    rng = np.random.default_rng(seed)
    return model, {"x": rng.standard_normal(x_shape).astype(np.float32)}


def _weights(shape: Sequence[int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32)


def _i64(values: Sequence[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def _spatial(draw: Draw, rank: int = 2) -> tuple[int, ...]:
    return tuple(draw(st.integers(3, 9)) for _ in range(rank))


def _pool_or_conv(draw: Draw, op: str, seed: int) -> GenCase:
    channels = draw(st.integers(1, 3))
    spatial = _spatial(draw)
    kernel = tuple(draw(st.integers(1, min(4, s))) for s in spatial)
    stride = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2)) if op != "AveragePool" else 1
    auto_pad = draw(st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    attrs: dict[str, object] = {"strides": [stride, stride]}
    if op != "Conv":
        attrs["kernel_shape"] = list(kernel)
    if dilation > 1:
        attrs["dilations"] = [dilation, dilation]
    # the dilated kernel must fit the input
    if any((k - 1) * dilation + 1 > s for k, s in zip(kernel, spatial, strict=True)):
        dilation = 1
        attrs.pop("dilations", None)
    if auto_pad == "NOTSET":
        pads = [draw(st.integers(0, k - 1)) for k in kernel * 2]
        attrs["pads"] = pads
    else:
        attrs["auto_pad"] = auto_pad
    ceil = 0
    if op != "Conv":
        ceil = draw(st.integers(0, 1))
        attrs["ceil_mode"] = ceil
    combo = f"{op} auto_pad={auto_pad} s={stride} d={dilation} ceil={ceil}"
    consts: dict[str, np.ndarray] = {}
    inputs = ["x"]
    if op == "AveragePool":
        include = draw(st.integers(0, 1))
        attrs["count_include_pad"] = include
        combo += f" include_pad={include}"
    if op == "Conv":
        depthwise = channels > 1 and draw(st.booleans())
        out_ch = channels if depthwise else draw(st.integers(1, 3))
        group = channels if depthwise else 1
        attrs["group"] = group
        consts["w"] = _weights((out_ch, channels // group, *kernel), seed)
        inputs.append("w")
        if draw(st.booleans()):
            consts["b"] = _weights((out_ch,), seed + 2)
            inputs.append("b")
        combo += f" group={'C' if depthwise else 1} bias={len(inputs) == 3}"
    node = helper.make_node(op, inputs, ["y"], **attrs)
    model, feeds = single_input_model([node], (1, channels, *spatial), consts, seed)
    return GenCase(model, feeds, combo)


def _conv_transpose(draw: Draw, seed: int) -> GenCase:
    channels = draw(st.integers(1, 3))
    spatial = _spatial(draw)
    kernel = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    pads = [draw(st.integers(0, kernel - 1)) for _ in range(4)]
    out_pad = draw(st.integers(0, stride - 1))
    consts = {"w": _weights((channels, draw(st.integers(1, 3)), kernel, kernel), seed)}
    auto_pad = draw(st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    attrs: dict[str, object] = {"strides": [stride, stride], "output_padding": [out_pad] * 2}
    if auto_pad == "NOTSET":
        attrs["pads"] = pads
    else:
        attrs["auto_pad"] = auto_pad
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)
    model, feeds = single_input_model([node], (1, channels, *spatial), consts, seed)
    combo = f"ConvTranspose auto_pad={auto_pad} s={stride} out_pad={out_pad > 0}"
    return GenCase(model, feeds, combo)


def _layer_norm(draw: Draw, seed: int) -> GenCase:
    rank = draw(st.integers(2, 4))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    axis = draw(st.integers(-rank, rank - 1))
    normalised = shape[axis % rank :]
    scale_rank = draw(st.integers(1, len(normalised)))
    scale_shape = normalised[len(normalised) - scale_rank :]
    consts = {"scale": _weights(scale_shape, seed)}
    inputs = ["x", "scale"]
    with_bias = draw(st.booleans())
    if with_bias:
        consts["bias"] = _weights(scale_shape, seed + 3)
        inputs.append("bias")
    node = helper.make_node("LayerNormalization", inputs, ["y"], axis=axis)
    model, feeds = single_input_model([node], shape, consts, seed)
    low = scale_rank < len(normalised)
    return GenCase(model, feeds, f"LayerNorm rank={rank} scale_lower_rank={low} bias={with_bias}")


def _pad(draw: Draw, seed: int) -> GenCase:
    rank = draw(st.integers(2, 4))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    mode = draw(st.sampled_from(["constant", "reflect", "edge"]))
    pads = [draw(st.integers(0, 4)) for _ in range(2 * rank)]
    node = helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode)
    model, feeds = single_input_model([node], shape, {"pads": _i64(pads)}, seed)
    wide = any(p > s - 1 for p, s in zip(pads, shape * 2, strict=True))
    return GenCase(model, feeds, f"Pad mode={mode} wider_than_axis={wide}")


def _slice(draw: Draw, seed: int) -> GenCase:
    rank = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 6)) for _ in range(rank))
    axis = draw(st.integers(0, rank - 1))
    size = shape[axis]
    start = draw(st.integers(-size - 2, size + 2))
    end = draw(st.integers(-size - 2, size + 2))
    step = draw(st.sampled_from([-3, -2, -1, 1, 2, 3]))
    consts = {"st": _i64([start]), "en": _i64([end]), "ax": _i64([axis]), "sp": _i64([step])}
    slice_node = helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["s"])
    # Concat with x keeps the output non-empty, as in the reported model
    concat = helper.make_node("Concat", ["s", "x"], ["y"], axis=axis)
    model, feeds = single_input_model([slice_node, concat], shape, consts, seed)
    empty = len(range(*slice(start, end, step).indices(size))) == 0
    return GenCase(model, feeds, f"Slice step<0={step < 0} empty={empty}")


def _lrn(draw: Draw, seed: int) -> GenCase:
    size = draw(st.integers(1, 6))
    shape = (1, draw(st.integers(1, 7)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=0.5, beta=0.75, bias=1.0)
    model, feeds = single_input_model([node], shape, {}, seed)
    return GenCase(model, feeds, f"LRN size_even={size % 2 == 0}")


def _resize(draw: Draw, seed: int) -> GenCase:
    shape = (1, 2, draw(st.integers(2, 6)), draw(st.integers(2, 6)))
    mode = draw(st.sampled_from(["nearest", "linear"]))
    ctm = draw(st.sampled_from(["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]))
    scale = draw(st.sampled_from([0.5, 0.6, 0.75, 1.5, 2.0, 3.0]))
    scales = np.asarray([1.0, 1.0, scale, scale], dtype=np.float32)
    attrs: dict[str, object] = {"mode": mode, "coordinate_transformation_mode": ctm}
    if mode == "nearest":
        attrs["nearest_mode"] = draw(
            st.sampled_from(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
        )
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], **attrs)
    model, feeds = single_input_model([node], shape, {"scales": scales}, seed)
    exact = all(np.float32(np.floor(s * scale)) / np.float32(s) == scale for s in shape[2:])
    return GenCase(
        model, feeds, f"Resize {mode} {ctm} {attrs.get('nearest_mode', '')} exact={exact}"
    )


def _unary(draw: Draw, seed: int) -> GenCase:
    op = draw(
        st.sampled_from(
            [
                "Relu",
                "Sigmoid",
                "Tanh",
                "Exp",
                "Erf",
                "HardSwish",
                "Softmax",
                "LeakyRelu",
                "HardSigmoid",
                "Clip",
                "Flatten",
                "Transpose",
                "ReduceMean",
            ]
        )
    )
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    attrs: dict[str, object] = {}
    inputs = ["x"]
    consts: dict[str, np.ndarray] = {}
    if op in ("Softmax", "Flatten"):
        attrs["axis"] = draw(st.integers(-rank, rank - 1 if op == "Softmax" else rank))
    elif op == "Transpose":
        attrs["perm"] = list(draw(st.permutations(range(rank))))
    elif op == "ReduceMean":
        axes = sorted(draw(st.sets(st.integers(0, rank - 1), min_size=1)))
        consts["axes"] = _i64(axes)
        inputs.append("axes")
        attrs["keepdims"] = draw(st.integers(0, 1))
    elif op == "Clip":
        consts = {"lo": np.float32(-0.5), "hi": np.float32(0.7)}
        inputs += ["lo", "hi"]
    node = helper.make_node(op, inputs, ["y"], **attrs)
    model, feeds = single_input_model([node], shape, consts, seed)
    return GenCase(model, feeds, f"{op} rank={rank} {sorted(attrs)}")


def _binary(draw: Draw, seed: int) -> GenCase:
    op = draw(st.sampled_from(["Add", "Sub", "Mul", "Div", "MatMul"]))
    rank = draw(st.integers(2, 4))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    if op == "MatMul":
        other: tuple[int, ...] = (*shape[:-2][draw(st.integers(0, rank - 2)) :], shape[-1], 3)
    else:
        keep = draw(st.integers(1, rank))
        other = tuple(1 if draw(st.booleans()) else d for d in shape[rank - keep :])
    node = helper.make_node(op, ["x", "w"], ["y"])
    w = _weights(other, seed)
    if op == "Div":
        w = np.where(np.abs(w) < 0.3, 1.0, w).astype(np.float32)
    model, feeds = single_input_model([node], shape, {"w": w}, seed)
    return GenCase(model, feeds, f"{op} rank={rank} other_rank={len(other)}")


_KINDS = ("MaxPool", "AveragePool", "Conv", "ConvTranspose", "LayerNormalization", "Pad",
          "Slice", "LRN", "Resize", "unary", "binary")  # fmt: skip


@st.composite
def onnx_cases(draw: Draw) -> GenCase:
    """A random small model over npuc's claimed operators (see the module docstring)."""
    kind = draw(st.sampled_from(_KINDS))
    seed = draw(st.integers(0, 2**16))
    if kind in ("MaxPool", "AveragePool", "Conv"):
        return _pool_or_conv(draw, kind, seed)
    makers = {
        "ConvTranspose": _conv_transpose,
        "LayerNormalization": _layer_norm,
        "Pad": _pad,
        "Slice": _slice,
        "LRN": _lrn,
        "Resize": _resize,
        "unary": _unary,
        "binary": _binary,
    }
    return makers[kind](draw, seed)


def run_case(case: GenCase) -> str:
    """``"match"`` or ``"declined"``; raises :class:`DifferentialMismatch` otherwise."""
    from npuc.core.errors import NpucError, UnsupportedError
    from tests.tooling.reference import run_onnxruntime
    from tools.conformance.backend import NpucCpuBackend

    try:
        expected: dict[str, np.ndarray] | None = run_onnxruntime(case.model, case.feeds)
        ort_error = ""
    except Exception as exc:  # onnxruntime refuses the model: npuc must refuse it too
        expected, ort_error = None, str(exc).splitlines()[0]
    try:
        rep = NpucCpuBackend.prepare(case.model)
    except UnsupportedError as exc:
        if exc.nodes:  # the support check's refusal by a rule, naming the node
            return "declined"
        raise DifferentialMismatch(f"{case.combo}: refused without a rule: {exc}") from exc
    except NpucError as exc:
        raise DifferentialMismatch(f"{case.combo}: npuc error without a rule: {exc}") from exc
    if expected is None:
        raise DifferentialMismatch(
            f"{case.combo}: onnxruntime refuses ({ort_error}); npuc compiled it"
        )
    got = rep.run(case.feeds)
    for (name, want), actual in zip(expected.items(), got, strict=True):
        if actual.shape != want.shape:
            raise DifferentialMismatch(
                f"{case.combo}: {name} has shape {actual.shape}, onnxruntime {want.shape}"
            )
        try:
            np.testing.assert_allclose(actual, want, rtol=RTOL, atol=ATOL)
        except AssertionError as exc:
            raise DifferentialMismatch(f"{case.combo}: {name} differs: {exc}") from exc
    return "match"


@dataclass
class DifferentialStats:
    """What a differential run tried: outcomes, and examples per combination key."""

    outcomes: dict[str, int]
    combos: dict[str, int]

    @property
    def examples(self) -> int:
        return sum(self.outcomes.values())


def run_differential(max_examples: int) -> DifferentialStats:
    """Run up to ``max_examples`` generated cases (derandomized: the same cases every run).

    Raises :class:`DifferentialMismatch` (after hypothesis shrinks it) on the
    first case that is neither a match nor a rule's refusal.
    """
    from hypothesis import HealthCheck, given, settings

    stats = DifferentialStats(outcomes={}, combos={})

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(onnx_cases())
    def check(case: GenCase) -> None:
        outcome = run_case(case)
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1
        stats.combos[case.combo] = stats.combos.get(case.combo, 0) + 1

    check()
    return stats
