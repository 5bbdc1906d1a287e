"""A concat whose one int8 scale would leave an input < 16 steps is kept float by default.

The graphs (``concat_graphs.py``) join sigmoid scores (0..1) and ReLU
"boxes" (0..~300) along channels, as YOLOv8's head does: at ~1.2 per step
the scores keep under one step when the concat is integer.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from npuc.core.errors import InvalidInputError
from npuc.midend.quantize.config import QuantConfig
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.qlayers import CoarseConcatKeptFloat, CoarseConcatWarning
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.midend.quantize.serialize import config_from_json

from .concat_graphs import SCORES, concat_graph, quantized, samples


def _quantize(
    tail: str, config: QuantConfig
) -> tuple[QuantizedModel, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qm = quantized(tail, config)
    return qm, [w for w in caught if issubclass(w.category, CoarseConcatWarning)]


def _score_error(tail: str, qm: QuantizedModel) -> float:
    """Max |int8 - float| of the score channels over 4 evaluation samples (not calibration)."""
    _, fx = concat_graph(tail)
    executor = IntegerExecutor(qm)
    out = qm.graph.outputs[0]
    worst = 0.0
    for feed in samples(4, seed=2):
        got = executor.run(feed)[out]
        got = got.dequantize() if isinstance(got, IntTensor) else np.asarray(got)
        want = np.asarray(fx.run(feed)[out])
        worst = max(worst, float(np.abs(got[:, :SCORES] - want[:, :SCORES]).max()))
    return worst


def test_output_concat_is_kept_float_and_the_scores_survive() -> None:
    on, notes = _quantize("output", QuantConfig())
    off, warned = _quantize("output", QuantConfig(float_coarse_concats=False))
    layer = on.layers["concat_0"]
    assert layer.run_on == "cpu"
    assert "'sigmoid_0'" in layer.reason and "steps" in layer.reason
    assert [w.category for w in notes] == [CoarseConcatKeptFloat]
    assert "concat_0" in str(notes[0].message) and "float_coarse_concats" in str(notes[0].message)
    # Everything else stays integer; the producers keep their own scales.
    assert {n for n, lr in on.layers.items() if lr.run_on == "cpu"} == {"concat_0"}
    assert on.tensors["sigmoid_0"].scale < off.tensors["sigmoid_0"].scale / 100
    # Off: the scores share the boxes' ~1.2 step, so they come out 0 or 1.2 (error up
    # to ~0.6); kept float, they keep the sigmoid's own 1/255 step (error ~0.002
    # from the table plus what the 1x1 conv's int8 rounding moves it).
    assert off.layers["concat_0"].run_on == "npu"
    assert [w.category for w in warned] == [CoarseConcatWarning]
    before, after = _score_error("output", off), _score_error("output", on)
    assert before > 0.2
    assert after < 0.02


def test_data_movement_after_the_concat_follows_it() -> None:
    qm, notes = _quantize("slice", QuantConfig())
    placed = {n: lr.run_on for n, lr in qm.layers.items()}
    assert placed == {
        "conv2d_0": "npu", "sigmoid_0": "npu", "conv2d_1": "npu", "concat_0": "cpu",
        "reshape_0": "cpu", "slice_0": "cpu", "sigmoid_1": "npu",
    }  # fmt: skip
    assert "'concat_0'" in qm.layers["slice_0"].reason
    assert "concat_0, reshape_0, slice_0" in str(notes[0].message)
    # The slice's output (the scores alone) is quantized with its own range.
    assert qm.tensors["slice_0"].scale < 1.0 / 100


def test_a_computing_reader_of_the_joined_tensor_leaves_it_integer_with_a_warning() -> None:
    qm, caught = _quantize("conv", QuantConfig())
    assert qm.layers["concat_0"].run_on == "npu"
    assert [w.category for w in caught] == [CoarseConcatWarning]
    message = str(caught[0].message)
    assert "'conv2d_2' reads the joined tensor" in message
    assert "--float-layers concat_0,conv2d_2" in message and "--layer-config" in message


def test_16_bit_activations_have_steps_enough() -> None:
    from npuc.midend.quantize.config import LayerQuantConfig

    config = QuantConfig(default=LayerQuantConfig(q_bits_activation=16))
    qm, caught = _quantize("output", config)
    assert qm.layers["concat_0"].run_on == "npu" and caught == []


def test_the_option_is_a_checked_serialized_bool() -> None:
    with pytest.raises(InvalidInputError, match="float_coarse_concats"):
        QuantConfig(float_coarse_concats="false")  # type: ignore[arg-type]
    assert (
        config_from_json({"default": {}, "float_coarse_concats": False}).float_coarse_concats
        is False
    )
    assert config_from_json({"default": {}}).float_coarse_concats is True  # older .npuq files
