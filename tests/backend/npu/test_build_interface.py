"""``interface_io`` (``npuc build --io-dtype``): what the artifact's interface carries.

int8 <-> uint8 with the same scale is exact: the zero point and every value shift
by 128; int16 cannot be carried in 8 bits and is refused naming the tensor.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from npuc.backend.npu.build import _output_names, interface_io
from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.midend.quantize.qparams import QParams


def _qm(x: QParams | None, y: QParams | None) -> Any:
    tensors = {name: q for name, q in (("x", x), ("y", y)) if q is not None}
    graph = SimpleNamespace(inputs=[("x", None)], outputs=["y"])
    return SimpleNamespace(graph=graph, tensors=tensors)


@pytest.mark.parametrize(
    ("stored", "io_dtype", "offset"),
    [("int8", "int8", 0), ("int8", "uint8", -128), ("uint8", "int8", 128), ("uint8", "uint8", 0)],
)
def test_shift_between_int8_and_uint8_is_exact(stored: str, io_dtype: str, offset: int) -> None:
    zp = 5 if stored == "int8" else 133
    q = QParams(0.05, zp, stored)
    io = interface_io(_qm(q, q), io_dtype)
    face = io["x"]["interface"]
    assert face == {"dtype": io_dtype, "scale": 0.05, "zero_point": zp - offset, "offset": offset}
    # Every stored value is an interface value + offset, and both mean the same real number.
    values = np.arange(*((-128, 128) if stored == "int8" else (0, 256)))
    interface = values - offset
    lo, hi = (-128, 127) if io_dtype == "int8" else (0, 255)
    assert interface.min() == lo and interface.max() == hi
    np.testing.assert_array_equal(
        (interface - face["zero_point"]) * face["scale"], (values - zp) * q.scale
    )


def test_float_interface_records_storage_only() -> None:
    io = interface_io(_qm(QParams(0.1, 0, "int16"), None), "float")
    assert io == {"x": {"scale": pytest.approx(0.1), "zero_point": 0, "dtype": "int16"},
                  "y": {"dtype": "float32"}}  # fmt: skip


def test_int16_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedError, match=r"output 'y' is quantized to int16") as info:
        interface_io(_qm(QParams(0.1, 0, "int8"), QParams(0.1, 0, "int16")), "uint8")
    assert "--io-dtype float" in (info.value.hint or "")


def test_unknown_io_dtype() -> None:
    with pytest.raises(InvalidInputError, match="--io-dtype int4: not one of float, int8, uint8"):
        interface_io(_qm(None, None), "int4")


def test_output_names_follow_the_source_model_by_position() -> None:
    qm: Any = SimpleNamespace(graph=SimpleNamespace(outputs=["dense_0", "softmax_0"]))
    assert _output_names(qm, ["logits", "probs"]) == {"dense_0": "logits", "softmax_0": "probs"}
    assert _output_names(qm, ["logits"]) == {}  # counts differ: npuc's names stay
    assert _output_names(qm, ["y", "y"]) == {}  # duplicate source names would collide
