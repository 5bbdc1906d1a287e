"""Partitioning and lowering of a quantized model: placements with reasons, exact layouts,
and the whole model on the simulator == the integer executor, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from npuc.backend.npu.layout import from_storage, move_chain, to_storage
from npuc.backend.npu.partition import RULES
from npuc.cli.npu_exec import MismatchError, NpuModelExecutor, first_difference
from npuc.core.hw.config import NPU_S
from npuc.midend.quantize.graph import Node, TensorType
from tests.backend.npu.qmodels import mixed_net_onnx, quantized, slice_net_onnx


@pytest.fixture(scope="module")
def mixed() -> NpuModelExecutor:
    qm, fx, feeds = quantized(mixed_net_onnx())
    ex = NpuModelExecutor(qm, NPU_S, fx)
    ex.feeds = feeds  # type: ignore[attr-defined]
    return ex


def test_placements_and_reasons(mixed: NpuModelExecutor) -> None:
    cpu = {p.layer: (p.op, p.reason) for p in mixed.placements if p.target == "cpu"}
    assert [op for op, _ in cpu.values()] == ["softmax"]
    assert all(reason.startswith("float layer") for _, reason in cpu.values())
    assert len(mixed.partitions) == 1
    ops = {p.op for p in mixed.placements if p.target == "npu"}
    assert {"conv2d", "dense", "concat", "resize", "transpose", "reshape", "unary"} <= ops
    # the squeeze-excite multiply (1,C,1,1) * (1,C,H,W) runs on the NPU behind an upsampling
    kinds = [type(op).__name__ for op in mixed.lowered[0].graph.ops]
    assert "NpuResize" in kinds[kinds.index("NpuLut", kinds.index("NpuLut") + 1) :]


@pytest.mark.parametrize("engine", ["ref", "sim"])
def test_mixed_net_bit_exact(mixed: NpuModelExecutor, engine: str) -> None:
    for feeds in mixed.feeds:  # type: ignore[attr-defined]
        got = mixed.verify(feeds, engine=engine)
        expected = mixed.int_exec.run(feeds)
        border = [t for p in mixed.partitions for t in p.outputs]
        for name in border:  # integer tensors at the partition borders
            np.testing.assert_array_equal(got[name].values, expected[name].values)
        for out in mixed.qm.graph.outputs:  # the float softmax after them
            np.testing.assert_array_equal(got[out], expected[out])
    if engine == "sim":
        assert all(s.cycles and s.cycles[-1] > 0 for s in mixed.stats)


def test_first_difference_names_tensor() -> None:
    a = np.zeros((2, 3))
    b = a.copy()
    b[1, 2] = 5
    with pytest.raises(MismatchError, match=r"'t'.*1 of 6.*\(1, 2\)"):
        first_difference("t", a, b)


def _node(op: str, out: tuple[int, ...], **attrs: object) -> Node:
    return Node(
        name="m", op=op, inputs=("x",), out=TensorType(shape=out, dtype="int8"), attrs=attrs
    )


@pytest.mark.parametrize(
    ("shape", "node"),
    [
        ((1, 8, 3, 5), _node("transpose", (1, 3, 5, 8), axes=(0, 2, 3, 1))),
        ((1, 8, 3, 5), _node("transpose", (1, 8, 5, 3), axes=(0, 1, 3, 2))),
        ((1, 8, 3, 5), _node("reshape", (1, 120), shape=(1, 120))),
        ((1, 8, 3, 5), _node("reshape", (1, 2, 12, 5), shape=(1, 2, 12, 5))),
        ((1, 6, 10), _node("transpose", (1, 10, 6), axes=(0, 2, 1))),
        ((1, 6, 1, 10), _node("reshape", (1, 6, 10), shape=(1, 6, 10))),
    ],
)
def test_move_chain_is_exact(shape: tuple[int, ...], node: Node) -> None:
    """Replaying the storage steps on random values gives the op's result in storage layout."""
    x = np.random.default_rng(0).integers(-128, 128, shape)
    steps = move_chain(node, shape)
    assert steps is not None
    s = to_storage(x)
    for kind, arg in steps:
        s = s.transpose(arg) if kind == "transpose" else s.reshape(arg)
    want = x.transpose(node.attr("axes")) if node.op == "transpose" else x.reshape(node.out.shape)
    np.testing.assert_array_equal(from_storage(s, node.out.shape), want)


def test_every_rule_has_a_docstring() -> None:
    assert all(rule.__doc__ and rule.__doc__.strip() for rule in RULES.values())


def test_slices_of_rank_4_and_3_bit_exact() -> None:
    qm, fx, feeds = quantized(slice_net_onnx())
    ex = NpuModelExecutor(qm, NPU_S, fx)
    slices = [p for p in ex.placements if p.op == "slice"]
    assert len(slices) == 4 and all(p.target == "npu" for p in slices)
    for f in feeds:
        ex.verify(f)


class _NhwcInputNet(torch.nn.Module):
    """A channels-last model input transposed to NCHW before the first convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x.permute(0, 3, 1, 2)))


def test_transpose_of_a_model_input_stays_on_the_host() -> None:
    from npuc.backend.npu.partition import INPUT_TRANSPOSE
    from tests.frontend.torch_onnx import export_onnx

    torch.manual_seed(0)
    model = export_onnx(_NhwcInputNet(), (torch.randn(1, 8, 8, 3),), names=["x"])
    qm, fx, feeds = quantized(model)
    ex = NpuModelExecutor(qm, NPU_S, fx)
    placed = {p.op: (p.target, p.reason) for p in ex.placements}
    assert placed["transpose"] == ("cpu", INPUT_TRANSPOSE)
    assert placed["conv2d"][0] == "npu"
    for sample in feeds:
        got = ex.verify(sample, engine="sim")
        expected = ex.int_exec.run(sample)
        out = qm.graph.outputs[0]
        np.testing.assert_array_equal(got[out].values, expected[out].values)
