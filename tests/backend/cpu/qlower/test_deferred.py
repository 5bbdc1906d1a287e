"""Float pads, max pools and moves on stored integers (:mod:`npuc.backend.cpu.qlower.deferred`)
and transposes moved below them (:mod:`~npuc.backend.cpu.qlower.sink_transpose`) equal the
integer executor bit for bit: the integers an integer layer reads after them and the float32
values of float outputs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import tvm
from tvm import relax

from npuc.backend.cpu.build import compile_module
from npuc.backend.cpu.qlower import lower_model
from npuc.backend.cpu.qlower.deferred import requant_table
from npuc.core.target import CpuTarget, host_target
from npuc.midend.quantize.config import LayerQuantConfig, QuantConfig
from npuc.midend.quantize.graph import Graph, Node, TensorType
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.qmodel import QLayer, QuantizedModel
from npuc.midend.quantize.qparams import QParams

SHAPE = (1, 3, 6, 5)  # NCHW graph input
#: The host (AVX-512 VBMI here: the lookup fuses into its producer), AVX2 and baseline x86-64.
TARGETS = {
    "host": None,
    "avx2": CpuTarget(cpu_name="haswell", features=("avx", "avx2", "f16c", "fma"), num_cores=2),
    "generic": CpuTarget(cpu_name="x86-64", features=("sse2",), num_cores=2),
}


def _f32(shape: tuple[int, ...]) -> TensorType:
    return TensorType(shape=shape, dtype="float32")


def _relax_node(
    name: str, src: str, shape: tuple[int, ...], make: Callable[[relax.Expr], relax.Expr]
) -> Node:
    call = make(relax.Var(src, relax.TensorType(shape, "float32")))
    out = tuple(int(d) for d in relax.BlockBuilder().normalize(call).ty.shape.values)
    return Node(name=name, op="relax", inputs=(src,), out=_f32(out), relax_call=call)


def chain_model(dtype: str, pad_value: float, lut: np.ndarray) -> QuantizedModel:
    """x (stored ints) -> transpose to NHWC (integer) -> max pool, channel pad, transpose
    back (float layers) -> LUT (integer, reads the last move's QParams); the float pad and
    move are outputs too."""
    xq = QParams(0.031, 5 if dtype == "int8" else 130, dtype)
    h, w = SHAPE[2] // 2, SHAPE[3] // 2
    nodes = [
        Node(name="transpose_0", op="transpose", inputs=("x",),
             out=_f32((1, 6, 5, 3)), attrs={"axes": [0, 2, 3, 1]}),
        _relax_node("pool_0", "transpose_0", (1, 6, 5, 3), lambda v: relax.op.nn.max_pool2d(
            v, pool_size=(2, 2), strides=(2, 2), layout="NHWC")),
        _relax_node("pad_0", "pool_0", (1, h, w, 3), lambda v: relax.op.nn.pad(
            v, [0, 0, 0, 1, 0, 0, 0, 2], "constant", pad_value)),
        Node(name="transpose_1", op="transpose", inputs=("pad_0",),
             out=_f32((1, 5, h + 1, w)), attrs={"axes": [0, 3, 1, 2]}),
        Node(name="lut_0", op="unary", inputs=("transpose_1",), out=_f32((1, 5, h + 1, w)),
             attrs={"func": "sigmoid"}),
    ]  # fmt: skip
    run_on = {"transpose_0": "npu", "lut_0": "npu"}
    params = {"lut_0": {"lut": lut}}
    layers = {
        n.name: QLayer(name=n.name, kind=n.op, run_on=run_on.get(n.name, "cpu"), reason="",
                       config=LayerQuantConfig(), params=params.get(n.name, {}))
        for n in nodes
    }  # fmt: skip
    out_q = QParams(0.027, -3 if dtype == "int8" else 120, dtype)
    tensors = {"x": xq, "transpose_0": xq, "transpose_1": out_q, "lut_0": out_q}
    graph = Graph(
        inputs=(("x", _f32(SHAPE)),),
        nodes=tuple(nodes),
        outputs=("lut_0", "pad_0", "transpose_1"),
        relax_module=tvm.IRModule(),
    )
    return QuantizedModel(graph=graph, tensors=tensors, layers=layers, config=QuantConfig())


def _values(v: object) -> np.ndarray:
    return v.values if isinstance(v, IntTensor) else np.asarray(v)


@pytest.mark.parametrize(
    ("dtype", "pad_value", "target"),
    [("int8", 0.0, "host"), ("uint8", 0.031 * 4, "host"), ("int8", 0.0, "avx2"),
     ("uint8", 0.031 * 4, "generic")],
)  # fmt: skip
def test_chain_equals_the_executor(dtype: str, pad_value: float, target: str) -> None:
    rng = np.random.default_rng(7)
    info = np.iinfo(np.dtype(dtype))
    qm = chain_model(dtype, pad_value, rng.integers(-128, 128, size=256))
    x = rng.integers(int(info.min), int(info.max) + 1, size=SHAPE).astype(dtype)
    x.reshape(-1)[:2] = info.min, info.max
    mod = lower_model(qm, raw_inputs=True)
    kernels = [gv.name_hint for gv, _ in mod.functions_items()]
    assert not [k for k in kernels if k.startswith("float_")], kernels  # no float kernel left
    # the two transposes cancel; one remains for the NHWC float output pad_0
    assert mod["main"].script().count("R.permute_dims") == 1
    env = IntegerExecutor(qm).run({"x": x}, raw_inputs=True)
    built = compile_module(mod, TARGETS[target] or host_target())
    vm = relax.VirtualMachine(built, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x))
    assert got[0].numpy().dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got[0].numpy().astype(np.int64), _values(env["lut_0"]))
    for i, name in ((1, "pad_0"), (2, "transpose_1")):
        want = _values(env[name]).astype(np.float32)
        assert got[i].numpy().dtype == np.float32
        np.testing.assert_array_equal(got[i].numpy().view(np.int32), want.view(np.int32))


def test_requant_table_is_the_executors_quantize_of_its_dequantize() -> None:
    src, dst = QParams(0.0187, -128, "int8"), QParams(0.0184, -128, "int8")
    table = requant_table(src, dst)
    for v in (-128, -1, 0, 5, 127):
        real = np.float32(src.dequantize(np.asarray(v)))
        assert table[v % 256] == dst.quantize(np.asarray(real))


def test_transposes_sink_below_elementwise_arithmetic_and_cancel() -> None:
    """NHWC residual add of two NCHW tensors, transposed back: no transpose remains."""
    from npuc.backend.cpu.qlower.sink_transpose import sink_transposes

    shape = (1, 4, 3, 5)
    bb = relax.BlockBuilder()
    a, b = (relax.Var(n, relax.TensorType(shape, "int8")) for n in ("a", "b"))
    with bb.function("main", [a, b]):
        with bb.dataflow():
            nhwc = [bb.emit(relax.op.permute_dims(v, [0, 2, 3, 1])) for v in (a, b)]
            wide = [bb.emit(relax.op.astype(v, "int32")) for v in nhwc]
            total = bb.emit(relax.op.add(wide[0], relax.op.multiply(wide[1], relax.const(3))))
            out = bb.emit(relax.op.astype(relax.op.right_shift(total, relax.const(1)), "int8"))
            back = bb.emit_output(relax.op.permute_dims(out, [0, 3, 1, 2]))
        bb.emit_func_output(back)
    mod = relax.transform.DeadCodeElimination(["main"])(sink_transposes(bb.get()))
    assert "permute_dims" not in mod["main"].script()
    rng = np.random.default_rng(3)
    x, y = (rng.integers(-128, 128, size=shape).astype(np.int8) for _ in range(2))
    vm = relax.VirtualMachine(compile_module(mod, host_target()), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(y)).numpy()
    want = ((x.astype(np.int32) + y.astype(np.int32) * 3) >> 1).astype(np.int8)
    np.testing.assert_array_equal(got, want, strict=True)
