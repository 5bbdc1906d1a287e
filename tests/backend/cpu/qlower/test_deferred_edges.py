"""Edge cases of float layers computed on stored integers (:mod:`npuc.backend.cpu.qlower.deferred`):
pad values no integer holds, pooling windows of padding only, scales whose dequantized values
overflow float32, and random chains of moves, pads and max pools read back by integer layers
with other QParams. Every output equals the integer executor's bit for bit (integers, and the
float32 bits of float outputs)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tvm import relax

from npuc.backend.cpu.build import compile_module
from npuc.backend.cpu.qlower import lower_model
from npuc.core.target import host_target
from npuc.midend.quantize.config import LayerQuantConfig, QuantConfig
from npuc.midend.quantize.graph import Graph, Node, TensorType
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.qmodel import QLayer, QuantizedModel
from npuc.midend.quantize.qparams import QParams

Make = Callable[[relax.Expr], relax.Expr]


def _f32(shape: Sequence[int]) -> TensorType:
    return TensorType(shape=tuple(int(d) for d in shape), dtype="float32")


def _relax_node(name: str, src: str, shape: tuple[int, ...], make: Make) -> Node:
    call = make(relax.Var(src, relax.TensorType(shape, "float32")))
    out = relax.BlockBuilder().normalize(call).ty.shape.values
    return Node(name=name, op="relax", inputs=(src,), out=_f32(out), relax_call=call)


def _graph_node(name: str, src: str, in_shape: tuple[int, ...], op: str, **attrs: Any) -> Node:
    """A graph-op node (transpose, reshape, slice, max_pool2d); its shape from the executor's
    own formula on a dummy input."""
    if op == "max_pool2d":
        (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = (
            attrs[k] for k in ("kernel", "strides", "padding", "dilation")
        )
        h = (in_shape[2] + pt + pb - dh * (kh - 1) - 1) // sh + 1
        w = (in_shape[3] + pl + pr - dw * (kw - 1) - 1) // sw + 1
        out: tuple[int, ...] = (*in_shape[:2], h, w)
    elif op == "reshape":
        out = tuple(attrs["shape"])
    elif op == "transpose":
        out = tuple(in_shape[a] for a in attrs["axes"])
    else:
        from npuc.midend.quantize.kernels import slice_index

        index = slice_index(in_shape, attrs["axes"], attrs["begin"], attrs["end"], attrs["strides"])
        out = np.zeros(in_shape)[index].shape
    return Node(name=name, op=op, inputs=(src,), out=_f32(out), attrs=attrs)


def _model(
    shape: tuple[int, ...], xq: QParams, nodes: list[Node], tensors: dict[str, QParams]
) -> QuantizedModel:
    """Graph input x (stored integers of ``xq``) -> ``nodes``; a node with QParams in
    ``tensors`` and not a float layer's output runs on the NPU (integer layer)."""
    integer = {n.name for n in nodes if n.name in tensors and n.op != "relax"}
    integer -= {n.name for n in nodes if n.name.startswith("float_")}
    layers = {
        n.name: QLayer(name=n.name, kind=n.op, run_on="npu" if n.name in integer else "cpu",
                       reason="", config=LayerQuantConfig(),
                       params={"lut": _identity(tensors[n.name].dtype)} if n.op == "unary" else {})
        for n in nodes
    }  # fmt: skip
    graph = Graph(
        inputs=(("x", _f32(shape)),),
        nodes=tuple(nodes),
        outputs=tuple(n.name for n in nodes),
        relax_module=tvm.IRModule(),
    )
    return QuantizedModel(
        graph=graph, tensors={"x": xq, **tensors}, layers=layers, config=QuantConfig()
    )


def _identity(dtype: str) -> np.ndarray:
    """A LUT mapping each stored value of an 8-bit type to itself (saturated)."""
    return np.arange(-128, 128) if dtype == "int8" else np.arange(256)


def _values(v: object) -> np.ndarray:
    return v.values if isinstance(v, IntTensor) else np.asarray(v)


def _assert_exact(qm: QuantizedModel, x: np.ndarray) -> None:
    """Every tensor of ``qm`` from the compiled library equals the executor's, bit for bit."""
    env = IntegerExecutor(qm).run({"x": x}, raw_inputs=True)
    mod = lower_model(qm, raw_inputs=True)
    vm = relax.VirtualMachine(compile_module(mod, host_target()), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x))
    for i, name in enumerate(qm.graph.outputs):
        want, have = _values(env[name]), got[i].numpy()
        if name in qm.tensors and qm.layers[name].run_on == "npu":
            assert have.dtype == np.dtype(qm.tensors[name].dtype), name
            np.testing.assert_array_equal(have.astype(np.int64), want, strict=True, err_msg=name)
        else:
            want32 = want.astype(np.float32)
            assert have.dtype == np.float32 and have.shape == want32.shape, name
            np.testing.assert_array_equal(have.view(np.int32), want32.view(np.int32), err_msg=name)


def _ints(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    info = np.iinfo(np.dtype(dtype))
    x = rng.integers(int(info.min), int(info.max) + 1, size=shape).astype(dtype)
    edges = [int(info.min), int(info.max)][: x.size]
    x.reshape(-1)[: len(edges)] = edges
    return x


@pytest.mark.parametrize(
    "pad_value", [float("-inf"), float("inf"), -0.0, 0.0123, float(np.finfo(np.float32).max)]
)
def test_pad_with_a_value_no_stored_integer_holds(pad_value: float) -> None:
    """The pad stays a float layer (infinities used to crash the lowering) and an integer
    layer reading it quantizes the executor's floats."""
    shape, xq = (1, 2, 3, 4), QParams(0.05, 3, "int8")
    pad = _relax_node("pad_0", "x", shape, lambda v: relax.op.nn.pad(
        v, [0, 0, 0, 1, 1, 0, 2, 1], "constant", pad_value))  # fmt: skip
    move = _graph_node("move_0", "pad_0", pad.out.shape, "transpose", axes=[0, 2, 3, 1])
    qm = _model(shape, xq, [pad, move], {"pad_0": xq, "move_0": xq})
    _assert_exact(qm, _ints(np.random.default_rng(0), "int8", shape))


def test_pad_with_nan_stays_float() -> None:
    shape, xq = (1, 2, 3, 4), QParams(0.05, 3, "int8")
    pad = _relax_node("pad_0", "x", shape, lambda v: relax.op.nn.pad(
        v, [0, 0, 0, 0, 1, 1, 0, 0], "constant", float("nan")))  # fmt: skip
    _assert_exact(_model(shape, xq, [pad], {}), _ints(np.random.default_rng(1), "int8", shape))


@pytest.mark.parametrize("kind", ["graph", "NCHW", "NHWC"])
def test_max_pool_window_of_padding_only(kind: str) -> None:
    """Dilation 2 over a 1x1 input with padding 1: each pad is below the window size, yet the
    windows (offsets -1 and 1) hold padding only; the float pool's lowest float wins there."""
    shape, xq = (1, 2, 1, 1), QParams(0.05, 3, "int8")
    geometry = {"pool_size": (2, 2), "strides": (1, 1), "padding": (1, 1, 1, 1), "dilation": (2, 2)}
    if kind == "graph":
        attrs = {"kernel": [2, 2], "strides": [1, 1], "padding": [1, 1, 1, 1], "dilation": [2, 2]}
        pool = _graph_node("pool_0", "x", shape, "max_pool2d", **attrs, count_include_pad=False)
    else:
        pool = _relax_node("pool_0", "x", shape, lambda v: relax.op.nn.max_pool2d(
            v, **geometry, layout=kind))  # fmt: skip
    _assert_exact(_model(shape, xq, [pool], {}), _ints(np.random.default_rng(2), "int8", shape))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # the executor's
@pytest.mark.parametrize(("dtype", "scale"), [("int8", 1e37), ("uint8", 3e36), ("int16", 1e34)])
def test_scale_whose_dequantized_values_overflow(dtype: str, scale: float) -> None:
    """``D_q(v)`` is inf for several ``v``: quantizing the executor's floats does not give
    the integers back, so a float move is not its integers moved."""
    shape, xq = (1, 2, 3, 4), QParams(float(np.float32(scale)), 0, dtype)
    nodes = [
        _graph_node("float_0", "x", shape, "transpose", axes=[0, 2, 3, 1]),
        _graph_node("move_0", "float_0", (1, 3, 4, 2), "transpose", axes=[0, 3, 1, 2]),
    ]
    qm = _model(shape, xq, nodes, {"float_0": xq, "move_0": xq})
    _assert_exact(qm, _ints(np.random.default_rng(3), dtype, shape))


def test_max_pool_where_only_the_lowest_integer_dequantizes_to_minus_infinity() -> None:
    """Scale 2.66e36, zero point 0: ``D_q(-128) = -inf`` (every value still round-trips); a
    window of -128s and padding is float32's lowest in the executor's float pool, not -inf."""
    shape, xq = (1, 1, 2, 2), QParams(float(np.float32(2.66e36)), 0, "int8")
    geometry = {"kernel": [2, 2], "strides": [1, 1], "padding": [1, 1, 1, 1], "dilation": [1, 1]}
    pool = _graph_node("pool_0", "x", shape, "max_pool2d", **geometry, count_include_pad=False)
    x = np.full(shape, -128, np.int8)
    with np.errstate(over="ignore"):  # the executor's own dequantization overflows
        _assert_exact(_model(shape, xq, [pool], {}), x)


_PERMS = st.permutations(range(4))


@st.composite
def _chain(draw: st.DrawFn) -> tuple[QuantizedModel, np.ndarray]:
    """x -> 1-4 float layers (moves, constant pads, max pools; maybe a last reshape to rank 3)
    -> an integer move and, for 8-bit QParams, an integer table lookup, both reading the last
    float layer's QParams (the source's or others, of another type)."""
    dtype = draw(st.sampled_from(["int8", "uint8", "int16"]))
    info = np.iinfo(np.dtype(dtype))
    zp = draw(st.sampled_from([int(info.min), int(info.max), 0 if dtype != "uint8" else 128]))
    scale = float(np.float32(draw(st.sampled_from([1e-3, 0.031, 0.5, 7.25]))))
    xq = QParams(scale, zp, dtype)
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=3, max_size=3)))
    shape = (1, *shape)
    nodes: list[Node] = []
    src, cur = "x", shape
    for i in range(draw(st.integers(1, 3))):
        name = f"float_{i}"
        kind = draw(st.sampled_from(["transpose", "reshape", "slice", "pad", "pool", "gpool"]))
        if kind == "transpose":
            node = _graph_node(name, src, cur, "transpose", axes=list(draw(_PERMS)))
        elif kind == "reshape":
            node = _graph_node(
                name, src, cur, "reshape", shape=[1, cur[0] * cur[1] * cur[2], cur[3], 1]
            )
        elif kind == "slice":
            axis, step = draw(st.integers(1, 3)), draw(st.sampled_from([1, 2, -1]))
            begin, end = (0, cur[axis]) if step > 0 else (cur[axis] - 1, -cur[axis] - 1)
            node = _graph_node(name, src, cur, "slice", axes=[axis], begin=[begin], end=[end],
                               strides=[step])  # fmt: skip
        elif kind == "pad":
            code = draw(st.integers(int(info.min), int(info.max)))
            value = draw(st.sampled_from([float(np.float32((code - zp) * scale)), 0.0, 0.3]))
            widths = draw(st.lists(st.integers(0, 2), min_size=8, max_size=8))
            widths[:2] = [0, 0]
            node = _relax_node(name, src, cur, lambda v, w=widths, c=value: relax.op.nn.pad(
                v, w, "constant", c))  # fmt: skip
        else:
            k = draw(st.lists(st.integers(1, 3), min_size=2, max_size=2))
            s = draw(st.lists(st.integers(1, 2), min_size=2, max_size=2))
            d = draw(st.lists(st.integers(1, 2), min_size=2, max_size=2))
            p = [draw(st.integers(0, k[j % 2])) for j in range(4)]
            layout = "NCHW" if kind == "gpool" else draw(st.sampled_from(["NCHW", "NHWC"]))
            h, w = (cur[2], cur[3]) if layout == "NCHW" else (cur[1], cur[2])
            if h + p[0] + p[2] < d[0] * (k[0] - 1) + 1 or w + p[1] + p[3] < d[1] * (k[1] - 1) + 1:
                continue
            if kind == "gpool":
                node = _graph_node(name, src, cur, "max_pool2d", kernel=k, strides=s, padding=p,
                                   dilation=d, count_include_pad=False)  # fmt: skip
            else:
                node = _relax_node(name, src, cur, lambda v, g=(k, s, p, d, layout): (
                    relax.op.nn.max_pool2d(v, g[0], g[1], g[2], g[3], layout=g[4])))  # fmt: skip
        nodes.append(node)
        src, cur = name, tuple(node.out.shape)
    if not nodes or draw(st.booleans()):  # a last move to rank 3 (or the only layer)
        name = "float_last"
        nodes.append(
            _graph_node(name, src, cur, "reshape", shape=[1, cur[0] * cur[1] * cur[2], cur[3]])
        )
        src, cur = name, tuple(nodes[-1].out.shape)
    out_dtype = draw(st.sampled_from(["same", "int8", "uint8", "int16"]))
    if out_dtype == "same":
        dst = xq
    else:
        dinfo = np.iinfo(np.dtype(out_dtype))
        dst = QParams(float(np.float32(scale * draw(st.sampled_from([0.7, 1.0, 3.0])))),
                      draw(st.integers(int(dinfo.min), int(dinfo.max))), out_dtype)  # fmt: skip
    tensors = {src: dst, "int_move": dst}
    axes = [0, *range(len(cur) - 1, 0, -1)]
    nodes.append(_graph_node("int_move", src, cur, "transpose", axes=axes))
    if dst.dtype != "int16":
        nodes.append(Node(name="int_lut", op="unary", inputs=(src,), out=_f32(cur),
                          attrs={"func": "sigmoid"}))  # fmt: skip
        tensors["int_lut"] = dst
    seed = draw(st.integers(0, 2**16))
    return _model(shape, xq, nodes, tensors), _ints(np.random.default_rng(seed), dtype, shape)


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(_chain())
def test_random_chains_equal_the_executor(case: tuple[QuantizedModel, np.ndarray]) -> None:
    _assert_exact(*case)
