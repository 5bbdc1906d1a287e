"""Table lookups, concat, max pool, reshape/transpose/slice and nearest resize on integer
tensors, compiled for the CPU, equal the integer executor bit for bit."""

from __future__ import annotations

import numpy as np
from tvm import relax

from npuc.midend.quantize.graph import Node, TensorType
from npuc.midend.quantize.qparams import QParams

from .harness import DTYPES, Case, assert_cases_exact, ints, node, qparams


def lut_case(rng: np.random.Generator, index: int) -> Case:
    """A random table: 256 entries for 8-bit input, 2^bits + 1 (bits 1..10) for int16."""
    xq, out = qparams(rng, DTYPES[index % 3]), qparams(rng, str(rng.choice(DTYPES)))
    bits = int(rng.integers(1, 11)) if xq.dtype == "int16" else 8
    entries = (1 << bits) + 1 if xq.dtype == "int16" else 256
    name = f"lut{index}"
    x = ints(rng, xq.dtype, (1, 4, 8, 9))
    x.reshape(-1)[:2] = np.iinfo(x.dtype).min, np.iinfo(x.dtype).max
    return Case(
        node=node(name, "unary", (f"{name}_x",), func="sigmoid"),
        inputs={f"{name}_x": (x, xq)},
        params={"lut": ints(rng, "int16", (entries,)), "lut_bits": bits},
        out=out,
    )


def test_random_tables_are_bit_exact() -> None:
    rng = np.random.default_rng(20)
    assert_cases_exact([lut_case(rng, i) for i in range(12)])


def test_concat_max_pool_and_data_movement_are_bit_exact() -> None:
    rng = np.random.default_rng(21)
    out = QParams(0.05, 3, "int8")
    q16 = qparams(rng, "int16")
    concat_inputs = {
        "c_a": (ints(rng, "int8", (1, 2, 3, 4)), out),  # identity: copied
        "c_b": (ints(rng, "uint8", (1, 3, 3, 4)), qparams(rng, "uint8")),
        "c_c": (ints(rng, "int16", (1, 1, 3, 4)), q16),
    }
    cases = [
        Case(node=node("concat", "concat", tuple(concat_inputs), axis=1), inputs=concat_inputs,
             params={"input_requant": [(1, 0), (20000, 15), (32767, 22)]}, out=out),
    ]  # fmt: skip
    for i, dtype in enumerate(DTYPES):
        q = qparams(rng, dtype)
        x = ints(rng, dtype, (1, 3, 7, 6))
        pool = {"kernel": [3, 2], "strides": [2, 1], "padding": [1, 1, 2, 0], "dilation": [1, 1]}
        slice_attrs = {"axes": [1, 2, 3], "begin": [2, 1, -1], "end": [0, 100, -7],
                       "strides": [-1, 2, -2]}  # fmt: skip
        for op, attrs in (
            ("max_pool2d", pool),
            ("reshape", {}),
            ("transpose", {"axes": [0, 2, 3, 1]}),
            ("slice", slice_attrs),
        ):
            name = f"{op}{i}"
            n = node(name, op, (f"{name}_x",), **attrs)
            if op == "reshape":
                n = Node(name=name, op=op, inputs=n.inputs, out=TensorType(shape=(1, 18, 7),
                         dtype="float32"), attrs={"shape": [1, 18, 7]})  # fmt: skip
            cases.append(Case(node=n, inputs={f"{name}_x": (x, q)}, out=q))
    assert_cases_exact(cases)


def test_nearest_resize_is_bit_exact() -> None:
    """The resize layer's own Relax call (nearest, asymmetric) run on the stored integers."""
    rng = np.random.default_rng(22)
    cases = []
    for i, dtype in enumerate(DTYPES):
        name = f"r{i}_x"
        var = relax.Var(name, relax.TensorType((1, 2, 3, 5), "float32"))
        call = relax.op.image.resize2d(
            var, (7, 9), method="nearest_neighbor",
            coordinate_transformation_mode="asymmetric", rounding_method="floor",
        )  # fmt: skip
        n = Node(
            name=f"r{i}", op="resize", inputs=(name,),
            out=TensorType(shape=(1, 2, 7, 9), dtype="float32"),
            attrs={"size": [7, 9], "method": "nearest"}, relax_call=call,
        )  # fmt: skip
        q = qparams(rng, dtype)
        cases.append(Case(node=n, inputs={name: (ints(rng, dtype, (1, 2, 3, 5)), q)},
                          out=q))  # fmt: skip
    assert_cases_exact(cases)
