"""Whole quantized models on the integer CPU path equal the integer executor.

Every tensor of the model is returned (``lower_layers`` with all layers as
outputs) and must equal the executor's bit for bit (``assert_array_equal``):
integer tensors, and float tensors too (the CPU's float layers, e.g. a
softmax, a layer norm's mean, a ``conv2d_transpose``), since the library
embeds the executor's own float kernels (:mod:`npuc.midend.quantize.float_kernels`);
a float32 difference in a layer an integer layer reads would move a stored
code. The models are quantized on 2 standard-normal samples and run on both;
accuracy is not the point. Real trained models are ``slow`` (their
compilation takes ~40-90 s). PP-OCRv4 rec and det have float layers in the
middle (attention softmax and matmuls, layer-norm statistics; a
``conv2d_transpose``) whose results integer layers quantize.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import tvm
from tvm import relax

from npuc.backend.cpu.build import compile_module
from npuc.backend.cpu.qlower import lower_layers, lower_model
from npuc.core.target import host_target
from npuc.frontend import load
from npuc.midend.pipeline import Pipeline, graph_passes
from npuc.midend.quantize.calibrate import calibrate
from npuc.midend.quantize.config import LayerQuantConfig, QuantConfig
from npuc.midend.quantize.extract import extract_graph
from npuc.midend.quantize.float_exec import FloatExecutor
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.midend.quantize.quantize import quantize_model
from tests.backend.npu.qmodels import mixed_net_onnx
from tools.real_models import ORIENTATION, PPOCR_CLS, PPOCR_DET, PPOCR_REC, RealModel


def quantize(
    model: onnx.ModelProto | Path,
    config: QuantConfig,
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> tuple[QuantizedModel, list[dict[str, np.ndarray]]]:
    """``model`` quantized with ``config`` on 2 standard-normal samples, and those samples."""
    mod, _ = load(model, input_shapes=shapes)
    graph = extract_graph(Pipeline(graph_passes())(mod))
    rng = np.random.default_rng(0)
    feeds = [
        {n: rng.standard_normal(ty.shape).astype(np.float32) for n, ty in graph.inputs}
        for _ in range(2)
    ]
    observers, _ = calibrate(graph, iter(feeds), config, executor=FloatExecutor(graph))
    return quantize_model(graph, observers, config), feeds


def every_tensor_vm(qm: QuantizedModel) -> relax.VirtualMachine:
    """``qm`` compiled for this machine with every tensor as an output (float graph inputs):
    ``main(*inputs) -> tuple`` in the order of :func:`tensor_names`."""
    inputs = [n for n, _ in qm.graph.inputs]
    nodes = [n.name for n in qm.graph.nodes]
    mod = lower_layers(qm, nodes, inputs, tensor_names(qm), float_inputs=inputs)
    return relax.VirtualMachine(compile_module(mod, host_target()), tvm.cpu())


def tensor_names(qm: QuantizedModel) -> list[str]:
    return [n.name for n in qm.graph.nodes if n.out.dtype != "tuple"]


def check_every_tensor(
    qm: QuantizedModel,
    feeds: list[dict[str, np.ndarray]],
    vm: relax.VirtualMachine | None = None,
) -> int:
    """Compare every tensor of ``qm`` with the executor (``vm``: :func:`every_tensor_vm`,
    compiled here when not given); returns how many were integer."""
    vm = vm or every_tensor_vm(qm)
    names, inputs = tensor_names(qm), [n for n, _ in qm.graph.inputs]
    integer = 0
    for feed in feeds:
        env = IntegerExecutor(qm).run(feed)
        got = vm["main"](*[tvm.runtime.tensor(feed[n]) for n in inputs])
        integer = 0
        for name, value in zip(names, got, strict=True):
            want, have = env[name], value.numpy()
            if isinstance(want, IntTensor):
                integer += 1
                assert have.dtype == np.dtype(want.qparams.dtype), name
                np.testing.assert_array_equal(
                    have.astype(np.int64), want.values, strict=True, err_msg=name
                )
            else:
                np.testing.assert_array_equal(have, np.asarray(want), strict=True, err_msg=name)
    return integer


MIXED_CONFIGS = {
    "int8": QuantConfig(),
    "int16": QuantConfig(default=LayerQuantConfig(q_bits_activation=16)),
    "uint8": QuantConfig(default=LayerQuantConfig(q_unsigned_activation=True)),
    # float layers in the middle: int -> float -> int boundaries both ways
    "int8_float_layers": QuantConfig(float_layers=("conv2d_2", "multiply_0", "concat_0")),
}


@functools.cache
def _mixed(
    config: str,
) -> tuple[QuantizedModel, list[dict[str, np.ndarray]], relax.VirtualMachine]:
    """The mixed net quantized with ``config``, its samples and :func:`every_tensor_vm`,
    made once per process (the ``int8`` one serves two tests)."""
    qm, feeds = quantize(mixed_net_onnx(), MIXED_CONFIGS[config])
    return qm, feeds, every_tensor_vm(qm)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(c, marks=pytest.mark.slow) if c in ("int16", "uint8") else c
        for c in sorted(MIXED_CONFIGS)
    ],
)
def test_mixed_net_every_integer_tensor_is_bit_exact(config: str) -> None:
    qm, feeds, vm = _mixed(config)
    if config == "int8_float_layers":
        assert {"conv2d_2", "multiply_0", "concat_0"} <= {
            n for n, layer in qm.layers.items() if layer.run_on == "cpu"
        }
    assert check_every_tensor(qm, feeds, vm) >= 15


def test_lower_model_raw_and_float_inputs() -> None:
    """``lower_model`` quantizes float inputs at the boundary (ties round to even) or takes
    the stored integers; its outputs are the graph outputs in the executor's representation.

    The float-input boundary is the one of :func:`every_tensor_vm` (``lower_layers`` with
    float inputs, as ``lower_model(raw_inputs=False)`` calls it), shared with the mixed-net
    test; the raw-input model is compiled here."""
    qm, feeds, every = _mixed("int8")
    (name,) = (n for n, _ in qm.graph.inputs)
    q = qm.tensors[name]
    # values exactly halfway between two codes exercise round-half-to-even
    ties = (np.arange(feeds[0][name].size) % 7 - 3 + 0.5).reshape(feeds[0][name].shape)
    feed = {name: (ties * q.scale).astype(np.float32)}
    assert check_every_tensor(qm, [feed], every) >= 15
    floats = lower_model(qm, raw_inputs=False)["main"].params
    assert [p.ty.dtype for p in floats] == ["float32"]
    raw = relax.VirtualMachine(
        compile_module(lower_model(qm, raw_inputs=True), host_target()), tvm.cpu()
    )
    arg = q.quantize(feed[name])
    got = raw["main"](tvm.runtime.tensor(arg))
    env = IntegerExecutor(qm).run({name: arg}, raw_inputs=True)
    for i, out in enumerate(qm.graph.outputs):
        want = env[out]
        want = want.values.astype(want.qparams.dtype) if isinstance(want, IntTensor) else want
        np.testing.assert_array_equal(got[i].numpy(), want, strict=True)


def _real(model: RealModel) -> Callable[[], Path]:
    def get() -> Path:
        try:
            return model.path()
        except FileNotFoundError as err:
            pytest.skip(str(err))

    return get


def _mobilenet_v2() -> onnx.ModelProto:
    import torch

    from tests.frontend.torch_onnx import export_onnx
    from tests.tooling.torch_nets import mobilenet_v2

    return export_onnx(mobilenet_v2(), (torch.zeros(1, 3, 224, 224),), names=["input"])


REAL: dict[str, tuple[Callable[[], onnx.ModelProto | Path], dict[str, tuple[int, ...]] | None]] = {
    ORIENTATION.key: (_real(ORIENTATION), {"x": (1, 3, 224, 224)}),
    PPOCR_CLS.key: (_real(PPOCR_CLS), {"x": (1, 3, 48, 192)}),
    "mobilenet_v2": (_mobilenet_v2, None),
    PPOCR_REC.key: (_real(PPOCR_REC), {"x": (1, 3, 48, 320)}),
    PPOCR_DET.key: (_real(PPOCR_DET), {"x": (1, 3, 224, 224)}),
}


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(REAL))
def test_real_model_every_integer_tensor_is_bit_exact(key: str) -> None:
    get, shapes = REAL[key]
    qm, feeds = quantize(get(), QuantConfig(), shapes)
    assert check_every_tensor(qm, feeds) > 20
