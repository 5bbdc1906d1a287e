"""The integer executor is bit-exact to the int64 integer reference (core/intref), layer by layer.

Property tests over shapes, strides, dilations, paddings, zero points, storage
types, shifts, multipliers, 16-bit biases and clamps, including saturation of
the 48-bit accumulator: the executor's float64-BLAS convolutions must give the
very integers the plain int64 reference gives.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.core import intref
from npuc.midend.quantize.config import LayerQuantConfig
from npuc.midend.quantize.graph import Graph, Node, TensorType
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.qmodel import QLayer, QuantizedModel
from npuc.midend.quantize.qparams import QParams

DTYPES = ("int8", "uint8", "int16")


def _executor(node: Node, inputs: list[tuple[str, TensorType]]) -> IntegerExecutor:
    graph = Graph(inputs=tuple(inputs), nodes=(node,), outputs=(node.name,))
    model = QuantizedModel(graph=graph, tensors={}, layers={}, config=_config())
    return IntegerExecutor(model)


def _config():  # type: ignore[no-untyped-def]
    from npuc.midend.quantize.config import QuantConfig

    return QuantConfig()


def _layer(node: Node, params: dict[str, object]) -> QLayer:
    return QLayer(
        name=node.name, kind=node.op, run_on="npu", reason="", config=LayerQuantConfig(),
        params=params,
    )  # fmt: skip


@st.composite
def conv_cases(draw: st.DrawFn) -> dict[str, object]:
    depthwise = draw(st.booleans())
    cin = draw(st.integers(1, 6))
    cout = cin * draw(st.integers(1, 2)) if depthwise else draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers(max(1, dil[0] * (kh - 1) + 1 - pads[0] - pads[2]), 7))
    w = draw(st.integers(max(1, dil[1] * (kw - 1) + 1 - pads[1] - pads[3]), 7))
    in_dtype, out_dtype = draw(st.sampled_from(DTYPES)), draw(st.sampled_from(DTYPES))
    lo, hi = intref.dtype_range(in_dtype)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    big = draw(st.booleans())  # extreme biases and shifts: saturation paths
    olo, ohi = intref.dtype_range(out_dtype)
    act_lo = draw(st.integers(olo, ohi))
    return {
        "x": rng.integers(lo, hi + 1, size=(1, cin, h, w)),
        "ifm_zp": draw(st.integers(lo, hi)),
        "w": rng.integers(-128, 128, size=(cout, 1 if depthwise else cin, kh, kw)).astype(np.int8),
        "b16": rng.integers(-32768, 32768, size=cout).astype(np.int16),
        "bias_shift": draw(st.integers(20, 31)) if big else draw(st.integers(0, 12)),
        "pre_shift": draw(st.integers(0, 16)),
        "post_shift": draw(st.integers(0, 47)),
        "m": rng.integers(0, 32768, size=cout).astype(np.uint16),
        "ofm_zp": draw(st.integers(olo, ohi)),
        "act": (act_lo, draw(st.integers(act_lo, ohi))),
        "stride": stride, "dilation": dil, "pads": pads, "groups": cin if depthwise else 1,
        "in_dtype": in_dtype, "out_dtype": out_dtype,
    }  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(conv_cases())
def test_conv_matches_int64_reference(case: dict) -> None:  # type: ignore[type-arg]
    x = case["x"]
    w = case["w"]
    cout = w.shape[0]
    out_q = QParams(0.1, case["ofm_zp"], case["out_dtype"])
    node = Node(
        name="conv", op="conv2d", inputs=("x",),
        out=TensorType(shape=(1, cout, 1, 1), dtype="float32"),
        attrs={"strides": list(case["stride"]), "padding": list(case["pads"]),
               "dilation": list(case["dilation"]), "groups": case["groups"]},
    )  # fmt: skip
    params = {
        "weights": w, "b16": case["b16"], "bias_shift": case["bias_shift"],
        "ofm_multiplier": case["m"], "pre_shift": case["pre_shift"],
        "post_shift": case["post_shift"], "act_min": case["act"][0], "act_max": case["act"][1],
    }  # fmt: skip
    ex = _executor(node, [("x", TensorType(shape=x.shape, dtype="float32"))])
    ifm = IntTensor(x.astype(np.int64), QParams(0.1, case["ifm_zp"], case["in_dtype"]))
    got = ex.compute(node, _layer(node, params), [ifm], out_q)

    stage = intref.OutputStage(
        pre_shift=case["pre_shift"], post_shift=case["post_shift"], multipliers=case["m"],
        ofm_zp=case["ofm_zp"], act_min=case["act"][0], act_max=case["act"][1],
        ofm_dtype=case["out_dtype"],
    )  # fmt: skip
    t, left, b, r = case["pads"]
    want, overflow = intref.conv2d(
        x[0].transpose(1, 2, 0), w.transpose(0, 2, 3, 1), case["b16"], stage,
        bias_shift=case["bias_shift"], ifm_zp=case["ifm_zp"], stride=case["stride"],
        dilation=case["dilation"], pads=(t, left, b, r), depthwise=case["groups"] != 1,
    )  # fmt: skip
    np.testing.assert_array_equal(got[0].transpose(1, 2, 0), want, strict=True)
    assert ("conv" in ex.overflow) == overflow


@settings(max_examples=100, deadline=None)
@given(
    op=st.sampled_from(["add", "subtract", "multiply", "maximum", "minimum"]),
    dtypes=st.tuples(*(st.sampled_from(DTYPES) for _ in range(3))),
    seed=st.integers(0, 2**32 - 1),
    shift=st.integers(0, 47),
    data=st.data(),
)
def test_eltwise_matches_reference(op: str, dtypes: tuple[str, str, str], seed: int,
                                   shift: int, data: st.DataObject) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    (alo, ahi), (blo, bhi), (ylo, yhi) = (intref.dtype_range(d) for d in dtypes)
    a = rng.integers(alo, ahi + 1, size=(1, 3, 4, 5))
    b = rng.integers(blo, bhi + 1, size=(1, 3, 4, 5))
    qa = QParams(0.1, data.draw(st.integers(alo, ahi)), dtypes[0])
    qb = QParams(0.1, data.draw(st.integers(blo, bhi)), dtypes[1])
    qy = QParams(0.1, data.draw(st.integers(ylo, yhi)), dtypes[2])
    act_min = data.draw(st.integers(ylo, yhi))
    act_max = data.draw(st.integers(act_min, yhi))
    ma, mb = (data.draw(st.integers(0, 32767)) for _ in range(2))
    node = Node(name="e", op=op, inputs=("a", "b"), out=TensorType(shape=a.shape, dtype="float32"))
    names = {"add": "add", "subtract": "sub", "multiply": "mul", "maximum": "max", "minimum": "min"}
    params = {"ifm_multiplier": ma, "ifm2_multiplier": mb, "ofm_multiplier": ma,
              "post_shift": shift, "act_min": act_min, "act_max": act_max}  # fmt: skip
    ty = TensorType(shape=a.shape, dtype="float32")
    ex = _executor(node, [("a", ty), ("b", ty)])
    got = ex.compute(node, _layer(node, params), [IntTensor(a, qa), IntTensor(b, qb)], qy)
    want, _ = intref.eltwise(
        names[op], a, b, ifm_zp=qa.zero_point, ifm2_zp=qb.zero_point, ofm_zp=qy.zero_point,
        ifm_multiplier=ma, ifm2_multiplier=mb, ofm_multiplier=ma, post_shift=shift,
        act_min=act_min, act_max=act_max, ofm_dtype=dtypes[2],
    )  # fmt: skip
    np.testing.assert_array_equal(got, want, strict=True)


@settings(max_examples=80, deadline=None)
@given(
    kind=st.sampled_from(["avg_pool2d", "max_pool2d"]),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    s=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    p=st.tuples(*(st.integers(0, 1) for _ in range(4))),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_pools_match_reference(kind: str, k: tuple[int, int], s: tuple[int, int],
                               p: tuple[int, int, int, int], dtype: str, seed: int,
                               data: st.DataObject) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    lo, hi = intref.dtype_range(dtype)
    x = rng.integers(lo, hi + 1, size=(1, 2, 5, 6))
    q = QParams(0.1, data.draw(st.integers(lo, hi)), dtype)
    m, shift = data.draw(st.integers(0, 32767)), data.draw(st.integers(0, 40))
    node = Node(
        name="p", op=kind, inputs=("x",), out=TensorType(shape=(1, 2, 1, 1), dtype="float32"),
        attrs={"kernel": list(k), "strides": list(s), "padding": list(p), "dilation": [1, 1],
               "count_include_pad": True},
    )  # fmt: skip
    params = {"ofm_multiplier": m, "post_shift": shift, "act_min": lo, "act_max": hi}
    ex = _executor(node, [("x", TensorType(shape=x.shape, dtype="float32"))])
    got = ex.compute(node, _layer(node, params), [IntTensor(x, q)], q)
    hwc = x[0].transpose(1, 2, 0)
    if kind == "max_pool2d":
        want = intref.max_pool(hwc, kernel=k, stride=s, pads=p, act_min=lo, act_max=hi,
                               ofm_dtype=dtype)  # fmt: skip
    else:
        want, _ = intref.avg_pool(
            hwc, kernel=k, stride=s, pads=p, ifm_zp=q.zero_point, ofm_zp=q.zero_point,
            ofm_multiplier=m, post_shift=shift, act_min=lo, act_max=hi, ofm_dtype=dtype,
        )  # fmt: skip
    np.testing.assert_array_equal(got[0].transpose(1, 2, 0), want, strict=True)


def test_float64_blas_accumulation_is_exact_at_the_extremes() -> None:
    """The largest products (int16 extremes x int8 -128) over a long reduction stay exact."""
    x = np.full((1, 512, 3, 3), 32767, np.int64)
    w = np.full((2, 512, 3, 3), -128, np.int8)
    node = Node(
        name="c", op="conv2d", inputs=("x",), out=TensorType(shape=(1, 2, 1, 1), dtype="float32"),
        attrs={"strides": [1, 1], "padding": [0, 0, 0, 0], "dilation": [1, 1], "groups": 1},
    )  # fmt: skip
    ex = _executor(node, [("x", TensorType(shape=x.shape, dtype="float32"))])
    params = {"weights": w, "b16": np.zeros(2, np.int16), "bias_shift": 0}
    acc = ex.conv_accumulate(node, params, IntTensor(x, QParams(1.0, -32768, "int16")))
    expected = 512 * 9 * 65535 * -128
    assert acc.dtype == np.int64
    np.testing.assert_array_equal(acc.reshape(-1), np.full(2, expected, np.int64), strict=True)
