"""load_torch's contract on small modules: sources, shapes, ModelInfo and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.core.fileio import sha256_file
from npuc.frontend import ImportedModel, load
from npuc.frontend.torch_export import load_torch
from tests.tooling.cpu import run_relax_on_cpu

# fp32 conv/linear: TVM and torch sum in different orders.
RTOL, ATOL = 1e-5, 1e-5


class ConvHead(nn.Module):
    """Conv + BN + PReLU + pooled linear head with two outputs (ceil-mode max pool)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.PReLU(8)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.fc = nn.Linear(8, 5)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.pool(self.act(self.bn(self.conv(image))))
        logits = self.fc(y.mean(dim=(2, 3)))
        return logits, torch.softmax(logits, dim=1)


def _net() -> ConvHead:
    torch.manual_seed(0)
    net = ConvHead().eval()
    with torch.no_grad():  # non-trivial BN statistics
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net


def _check(imported: ImportedModel, net: nn.Module, x: torch.Tensor) -> None:
    mod, info = imported
    assert (info.source_format, info.layout) == ("torch", "NCHW")
    ours = run_relax_on_cpu(mod, {info.inputs[0].name: x.numpy()})
    with torch.no_grad():
        refs = [r.numpy() for r in net(x)]
    assert [o.shape for o in info.outputs] == [r.shape for r in refs]
    for got, want in zip(ours, refs, strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_module_with_example_inputs() -> None:
    net, x = _net(), torch.randn(2, 3, 11, 13)
    imported = load_torch(net, example_inputs=(x,))
    info = imported.info
    assert [(t.name, t.shape, t.dtype) for t in info.inputs] == [
        ("image", (2, 3, 11, 13), "float32")
    ]
    assert len(info.outputs) == 2 and info.source_path == "<torch.nn.Module ConvHead>"
    assert len(info.source_sha256) == 64
    _check(imported, net, x)


class _DictOut(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, object]:
        return {"logits": torch.relu(x) / 2, "aux": (x * 2, x - 1)}


def test_output_names_are_user_keys_or_positions() -> None:
    """Never the FX node names (``addmm``, ``div_1``), which change between torch versions."""
    x = torch.randn(2, 3)
    info = load_torch(_DictOut(), example_inputs=(x,)).info
    assert [o.name for o in info.outputs] == ["logits", "aux.0", "aux.1"]
    info = load_torch(_net(), {"image": (1, 3, 8, 8)}).info
    assert [o.name for o in info.outputs] == ["output_0", "output_1"]


def test_module_with_input_shapes_only() -> None:
    imported = load_torch(_net(), {"image": (1, 3, 8, 8)})
    assert imported.info.inputs[0].shape == (1, 3, 8, 8)
    assert [o.shape for o in imported.info.outputs] == [(1, 5), (1, 5)]


def test_saved_pt2_through_frontend_load(tmp_path: Path) -> None:
    net, x = _net(), torch.randn(1, 3, 9, 9)
    path = tmp_path / "convhead.pt2"
    torch.export.save(torch.export.export(net, (x,)), path)
    imported = load(path)
    assert isinstance(imported, ImportedModel)
    assert imported.info.source_path == str(path)
    assert imported.info.source_sha256 == sha256_file(path)
    _check(imported, net, x)


def test_dynamic_batch_needs_and_takes_a_shape(tmp_path: Path) -> None:
    net = _net()
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(
        net, (torch.randn(2, 3, 8, 8),), dynamic_shapes={"image": {0: batch}}
    )
    with pytest.raises(InvalidInputError, match="'image' has symbolic shape") as err:
        load_torch(program)
    assert "input_shapes" in (err.value.hint or "")
    imported = load_torch(program, {"image": (3, 3, 8, 8)})
    assert imported.info.inputs[0].shape == (3, 3, 8, 8)
    _check(imported, net, torch.randn(3, 3, 8, 8))


@pytest.mark.parametrize(
    ("shapes", "needle"),
    [
        ({"img": (1, 3, 8, 8)}, "'img', which is not a model input"),
        ({"image": (1, 3, 9, 9)}, r"exported with static shape \[1, 3, 8, 8\]"),
        ({"image": (1, 3, 8)}, "has rank 4"),
    ],
)
def test_bad_input_shapes(shapes: dict[str, tuple[int, ...]], needle: str) -> None:
    program = torch.export.export(_net(), (torch.randn(1, 3, 8, 8),))
    with pytest.raises(InvalidInputError, match=needle):
        load_torch(program, shapes)


def test_module_without_inputs_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"forward\(\) argument \(image\)"):
        load_torch(_net())


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such file"):
        load_torch(tmp_path / "absent.pt2")
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"PK\x03\x04 definitely not an archive")
    with pytest.raises(InvalidInputError, match=r"not a torch\.export archive"):
        load_torch(junk)
    with pytest.raises(InvalidInputError, match="got a int"):
        load_torch(3)


class _Exotic(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(x)  # supported: must not be listed
        return torch.erfinv(y.clamp(max=0.5)) + torch.i0(y) + torch.histc(y, bins=4).sum()


def test_all_unsupported_ops_reported_at_once() -> None:
    with pytest.raises(UnsupportedError) as err:
        load_torch(_Exotic(), example_inputs=(torch.rand(4, 4),))
    msg = err.value.message
    assert "3 operator(s)" in msg
    for target in ("erfinv.default", "i0.default", "histc.default"):
        assert f"({target}): TVM's importer has no converter" in msg
    assert "relu" not in msg and err.value.exit_code == 4


class _DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # Python control flow on a tensor value: torch.export refuses
            return x * 2
        return x


def test_export_failure_is_unsupported() -> None:
    with pytest.raises(UnsupportedError, match=r"torch\.export failed") as err:
        load_torch(_DataDependent(), example_inputs=(torch.randn(2, 2),))
    assert "traceable" in (err.value.hint or "")
