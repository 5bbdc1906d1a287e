"""A small BERT-style encoder exported by torch.onnx.export (legacy exporter) against onnxruntime.

The graph has what real BERT exports have: embedding lookups of run-time token
ids (Gather), an attention mask built with Cast-to-bool / Equal / Not / And /
Expand / Where, encoder layers (MatMul, Softmax, LayerNormalization, erf GELU),
and mean pooling with ReduceSum plus L2 normalisation with ReduceL2. Weights
are random (graph coverage), inputs are real token ids and masks with padding.
The same network goes through torch.export too. Tolerances: fp32, rtol 1e-4,
atol 1e-5 (measured max abs error ~6e-8 on unit-norm outputs).
"""

from __future__ import annotations

import numpy as np
import pytest

from npuc.frontend import load
from tests.frontend.onnx_graphs import Case, check_against_onnxruntime
from tests.frontend.torch_onnx import export_onnx
from tests.tooling.cpu import run_relax_on_cpu

torch = pytest.importorskip("torch")
nn = torch.nn

VOCAB, MAX_LEN = 50, 16


class TinyBert(nn.Module):
    """Token + position + type embeddings, a masked encoder, masked mean pooling, L2 norm."""

    def __init__(self, hidden: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, hidden)
        self.pos = nn.Embedding(MAX_LEN, hidden)
        self.typ = nn.Embedding(2, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.heads = heads
        layer = nn.TransformerEncoderLayer(
            hidden, heads, 2 * hidden, dropout=0.0, batch_first=True, activation="gelu"
        )
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        length = input_ids.shape[1]
        pos = torch.arange(length).unsqueeze(0).expand_as(input_ids)
        h = self.norm(self.tok(input_ids) + self.pos(pos) + self.typ(token_type_ids))
        pad = ~(attention_mask.to(torch.bool) & (input_ids != 0))
        mask = pad[:, None, None, :].expand(-1, self.heads, length, -1).reshape(-1, length, length)
        h = self.enc(h, mask=torch.where(mask, torch.tensor(-1e4), torch.tensor(0.0)))
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return pooled / torch.linalg.vector_norm(pooled, 2, dim=-1, keepdim=True)


def _inputs(batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (batch, length), generator=gen)
    attn = torch.ones(batch, length, dtype=torch.int64)
    attn[-1, length * 2 // 3 :] = 0
    ids[-1, length * 2 // 3 :] = 0  # padding tokens
    types = torch.zeros(batch, length, dtype=torch.int64)
    types[:, length // 2 :] = 1
    return ids, attn, types


NAMES = ("input_ids", "attention_mask", "token_type_ids")


def _net(**kw: int) -> TinyBert:
    torch.manual_seed(0)
    return TinyBert(**kw).eval()


def test_tiny_bert_onnx_matches_onnxruntime() -> None:
    net, args = _net(hidden=16, heads=2, layers=1), _inputs(2, 8)
    model = export_onnx(net, args, names=NAMES)
    ops = {n.op_type for n in model.graph.node}
    assert {"Gather", "Cast", "And", "Where", "Expand", "ReduceSum", "ReduceL2"} <= ops
    feeds = {n: a.numpy() for n, a in zip(NAMES, args, strict=True)}
    check_against_onnxruntime(Case(model, feeds))


@pytest.mark.slow
def test_bert_onnx_and_torch_export_agree() -> None:
    """Two layers, batch 3 x 12 tokens: the ONNX path vs onnxruntime, torch.export vs torch."""
    net, args = _net(), _inputs(3, 12)
    model = export_onnx(net, args, names=NAMES)
    feeds = {n: a.numpy() for n, a in zip(NAMES, args, strict=True)}
    check_against_onnxruntime(Case(model, feeds))
    mod, info = load(model)
    onnx_out = run_relax_on_cpu(mod, feeds)[0]
    from npuc.frontend.torch_export import load_torch

    mod, info = load_torch(net, example_inputs=args)
    torch_out = run_relax_on_cpu(
        mod, {t.name: a.numpy() for t, a in zip(info.inputs, args, strict=True)}
    )[0]
    with torch.no_grad():
        want = net(*args).numpy()
    np.testing.assert_allclose(torch_out, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-4, atol=1e-5)
