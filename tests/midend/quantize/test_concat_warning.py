"""A concat whose single output scale leaves one input only a few steps gets a warning.

YOLOv8n's head joins box coordinates (0..320 px) and class scores (0..1) in
one int8 tensor: the scores keep 0 or 1 step. The quantizer cannot fix that
alone (one tensor, one scale), so it says so and names the flags that do.
"""

from __future__ import annotations

import warnings

import pytest

from npuc.midend.quantize.config import LayerQuantConfig
from npuc.midend.quantize.graph import Node, TensorType
from npuc.midend.quantize.qlayers import DERIVE, CoarseConcatWarning
from npuc.midend.quantize.qparams import QParams

BOXES = QParams(scale=320 / 255, zero_point=-128, dtype="int8")  # 0..320 px
SCORES = QParams(scale=1 / 255, zero_point=-128, dtype="int8")  # 0..1
NODE = Node(
    name="concat_7",
    op="concat",
    inputs=("boxes", "scores"),
    out=TensorType(shape=(1, 84, 2100), dtype="int8"),
    attrs={"axis": 1},
)


def _derive(ins: list[QParams], out: QParams) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DERIVE["concat"](NODE, ins, out, LayerQuantConfig(), [(1, 4, 2100), (1, 80, 2100)])
    return [w for w in caught if issubclass(w.category, CoarseConcatWarning)]


def test_scores_joined_to_pixel_coordinates_are_named() -> None:
    caught = _derive([BOXES, SCORES], BOXES)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "'concat_7'" in message and "'scores'" in message
    assert "--float-layers concat_7" in message and "--layer-config" in message


@pytest.mark.parametrize("ratio", [1.0, 4.0])
def test_inputs_of_similar_ranges_give_no_warning(ratio: float) -> None:
    other = QParams(scale=BOXES.scale / ratio, zero_point=-128, dtype="int8")
    assert _derive([BOXES, other], BOXES) == []
