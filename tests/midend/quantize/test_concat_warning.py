"""Which concats count as coarse, and the warning when one stays integer.

YOLOv8n's head joins box coordinates (0..320 px) and class scores (0..1) in
one int8 tensor: the scores keep under one step. The count uses each input's
calibrated range, not its (possibly already unified) scale: with
``unify_scales_for_concat`` the scores' producer writes in the concat's scale,
which would hide the loss.
"""

from __future__ import annotations

import warnings

import pytest

from npuc.midend.quantize.coarse_concat import (
    CoarseConcat,
    find_coarse_concats,
    keep_coarse_concats_float,
)
from npuc.midend.quantize.graph import Graph, Node, TensorType
from npuc.midend.quantize.qlayers import CoarseConcatKeptFloat, CoarseConcatWarning
from npuc.midend.quantize.qparams import QParams, choose_qparams

F32 = "float32"


def _node(name: str, op: str, inputs: tuple[str, ...], channels: int) -> Node:
    return Node(
        name=name, op=op, inputs=inputs, out=TensorType(shape=(1, channels, 2100), dtype=F32)
    )


def _graph(tail: tuple[Node, ...] = ()) -> Graph:
    nodes = (
        _node("boxes", "multiply", ("x",), 4),
        _node("scores", "unary", ("x",), 80),
        _node("concat_7", "concat", ("boxes", "scores"), 84),
        *tail,
    )
    return Graph(
        inputs=(("x", TensorType(shape=(1, 84, 2100), dtype=F32)),),
        nodes=nodes,
        outputs=(nodes[-1].name,),
    )


def _find(graph: Graph, score_hi: float) -> list[CoarseConcat]:
    spans = {
        "x": (0.0, 1.0),
        "boxes": (0.0, 320.0),
        "scores": (0.0, score_hi),
        "concat_7": (0.0, 320.0),
    }
    for node in graph.nodes[3:]:
        spans[node.name] = (0.0, 320.0)
    run_on = {n.name: ("npu", "") for n in graph.nodes}

    def out_qparams(name: str) -> QParams:
        return choose_qparams(*spans[name], dtype="int8", symmetric=False)

    return find_coarse_concats(graph, run_on, spans.get, out_qparams)


def test_scores_joined_to_pixel_coordinates_are_found_with_their_steps() -> None:
    (found,) = _find(_graph(), score_hi=1.0)
    assert found.name == "concat_7" and [i.name for i in found.inputs] == ["scores"]
    assert found.inputs[0].steps == pytest.approx(255 / 320, rel=0.01)
    assert found.followers == () and found.blocked_by == ""


@pytest.mark.parametrize("score_hi", [320.0, 80.0, 0.0])
def test_similar_ranges_and_constant_inputs_are_not_coarse(score_hi: float) -> None:
    # 80 of 320 keeps ~64 steps; a constant input (zero range) loses nothing.
    assert _find(_graph(), score_hi=score_hi) == []


def test_pre_quantized_scales_are_left_alone() -> None:
    graph = _graph()
    run_on = {n.name: ("npu", "") for n in graph.nodes}
    spans = {"boxes": (0.0, 320.0), "concat_7": (0.0, 320.0)}  # "scores": the file's scale
    found = find_coarse_concats(
        graph,
        run_on,
        spans.get,
        lambda n: choose_qparams(0.0, 320.0, dtype="int8", symmetric=False),
    )
    assert found == []


def _keep(
    found: list[CoarseConcat], *, enabled: bool
) -> tuple[dict[str, tuple[str, str]], list[warnings.WarningMessage]]:
    run_on = {"concat_7": ("npu", ""), "reshape_0": ("npu", "")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keep_coarse_concats_float(found, run_on, enabled=enabled)
    return run_on, [w for w in caught if issubclass(w.category, CoarseConcatWarning)]


def test_with_the_option_off_the_warning_names_layer_input_and_flags() -> None:
    found = _find(_graph((_node("reshape_0", "reshape", ("concat_7",), 84),)), score_hi=1.0)
    assert found[0].followers == ("reshape_0",)
    run_on, caught = _keep(found, enabled=False)
    assert run_on["concat_7"][0] == "npu" and run_on["reshape_0"][0] == "npu"
    assert [w.category for w in caught] == [CoarseConcatWarning]
    message = str(caught[0].message)
    assert "'concat_7'" in message and "'scores'" in message and "0.8 steps" in message
    assert "--float-layers concat_7" in message and "--layer-config" in message
    assert "float_coarse_concats = false" in message


def test_with_the_option_on_the_concat_and_its_data_movement_run_float() -> None:
    found = _find(_graph((_node("reshape_0", "reshape", ("concat_7",), 84),)), score_hi=1.0)
    run_on, caught = _keep(found, enabled=True)
    assert run_on["concat_7"][0] == "cpu" and "'scores'" in run_on["concat_7"][1]
    assert run_on["reshape_0"] == (
        "cpu",
        f"data movement of 'concat_7', which is {run_on['concat_7'][1]}",
    )
    assert [w.category for w in caught] == [CoarseConcatKeptFloat]


def test_a_computing_reader_blocks_the_fix() -> None:
    tail = (
        _node("reshape_0", "reshape", ("concat_7",), 84),
        _node("add_0", "add", ("reshape_0",), 84),
    )
    found = _find(_graph(tail), score_hi=1.0)
    assert found[0].blocked_by == "add_0"
    run_on, caught = _keep(found, enabled=True)
    assert run_on["concat_7"][0] == "npu"
    assert "'add_0' reads the joined tensor" in str(caught[0].message)
