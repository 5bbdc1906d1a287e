"""LSTM and GRU unrolled over the sequence: torch-exported layers vs onnxruntime (fp32,
rtol 1e-4 / atol 1e-5; measured max abs error <= 2e-7), layout=1 vs onnx's reference
evaluator (onnxruntime refuses layout=1), and the forms npuc declines, by name."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from npuc.core.errors import UnsupportedError
from npuc.frontend import load
from npuc.frontend.fixups.unroll_recurrent import unroll_recurrent
from tests.frontend.onnx_graphs import Case, check_against_onnxruntime
from tests.frontend.torch_onnx import export_onnx
from tests.frontend.zoo_seq import recurrent_case
from tests.tooling.cpu import run_relax_on_cpu

torch = pytest.importorskip("torch")


class _Stacked(torch.nn.Module):
    """A 2-layer recurrent layer with its initial states as model inputs."""

    def __init__(self, cls: type, batch_first: bool, bidirectional: bool) -> None:
        super().__init__()
        self.rnn = cls(5, 6, num_layers=2, batch_first=batch_first, bidirectional=bidirectional)

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if isinstance(self.rnn, torch.nn.LSTM):
            y, (h, c) = self.rnn(x, (h0, torch.tanh(h0)))
            return y, h, c
        y, h = self.rnn(x, h0)
        return y, h


# Two configurations in the default tier, the rest of the matrix in the slow one.
FAST = {("LSTM", True, True), ("GRU", False, True)}
CONFIGS = [
    pytest.param(cls, bf, bi, marks=() if (cls, bf, bi) in FAST else pytest.mark.slow)
    for cls in ("LSTM", "GRU")
    for bf in (False, True)
    for bi in (False, True)
]


@pytest.mark.parametrize(("cls", "batch_first", "bidirectional"), CONFIGS)
def test_torch_recurrent_layers_match_onnxruntime(
    cls: str, batch_first: bool, bidirectional: bool
) -> None:
    torch.manual_seed(0)
    net = _Stacked(getattr(torch.nn, cls), batch_first, bidirectional)
    seq, batch = 4, 3
    x = torch.randn((batch, seq, 5) if batch_first else (seq, batch, 5))
    h0 = torch.randn(2 * (2 if bidirectional else 1), batch, 6)
    model = export_onnx(net, (x, h0), names=("x", "h0"))
    assert {n.op_type for n in model.graph.node} & {"LSTM", "GRU"}
    check_against_onnxruntime(Case(model, {"x": x.numpy(), "h0": h0.numpy()}))


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_layout1_matches_onnx_reference(op: str) -> None:
    from onnx.reference import ReferenceEvaluator

    case = recurrent_case(op, layout=1, direction="bidirectional")
    want = ReferenceEvaluator(case.model).run(None, case.feeds)
    mod, info = load(case.model)
    got = run_relax_on_cpu(mod, case.feeds)
    assert [t.name for t in info.outputs] == [o.name for o in case.model.graph.output]
    for actual, expected in zip(got, want, strict=True):
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def _with(case: Case, **changes: object) -> Case:
    model = case.model
    node = model.graph.node[0]
    for name, value in changes.items():
        if name == "W_computed":
            model.graph.node.insert(0, helper.make_node("Relu", ["w_in"], ["w_relu"]))
            node.input[1] = "w_relu"
            w = next(t for t in model.graph.initializer if t.name == "w")
            model.graph.initializer.remove(w)
            model.graph.input.append(
                helper.make_tensor_value_info("w_in", 1, list(numpy_helper.to_array(w).shape))
            )
        else:
            node.attribute.append(helper.make_attribute(name, value))
    return case


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"clip": 1.0}, "the clip attribute is not supported"),
        ({"activations": ["Relu", "Tanh", "Tanh"]}, "activations"),
        ({"input_forget": 1}, "input_forget=1 is not supported"),
        ({"W_computed": True}, r"W \('w_relu'\) must be a constant"),
    ],
)
def test_declined_forms_name_the_node(changes: dict[str, object], reason: str) -> None:
    case = _with(recurrent_case("LSTM"), **changes)
    case.model.graph.node[-1].name = "encoder_lstm"
    assert unroll_recurrent(case.model).graph.node[-1].op_type == "LSTM"
    with pytest.raises(UnsupportedError, match=f"encoder_lstm \\(LSTM, opset 17\\): {reason}"):
        load(case.model)
