"""CPU regions of an NPU build: grouping, compiled libraries against the integer executor,
determinism, and the recorded fallback when lowering refuses a region."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import tvm
from tvm import relax

import npuc.backend.cpu.qlower as qlower
from npuc.backend.npu.build import compile_quantized
from npuc.backend.npu.cpu_regions import (
    compile_cpu_regions,
    compile_region,
    find_cpu_regions,
    region_values,
)
from npuc.backend.npu.partition import Partition
from npuc.core.cpu_region_format import FLOAT_TOLERANCE, region_arguments
from npuc.core.errors import UnsupportedError
from npuc.core.hw.config import NPU_S
from npuc.core.target import host_target
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.qmodel import QuantizedModel
from tests.backend.npu.cpu_region_nets import region_net_onnx, shuffle_net_onnx
from tests.backend.npu.qmodels import quantized

Built = tuple[QuantizedModel, IntegerExecutor, list[Partition], list[dict[str, np.ndarray]]]


def _built(model: Any) -> Built:
    qm, fx, feeds = quantized(model, samples=3)
    ix = IntegerExecutor(qm, fx)
    _, parts, *_ = compile_quantized(qm, NPU_S, ix)
    return qm, ix, parts, feeds


@pytest.fixture(scope="module")
def region_net() -> Built:
    return _built(region_net_onnx())


@pytest.fixture(scope="module")
def shuffle_net() -> Built:
    return _built(shuffle_net_onnx())


class _Library:
    """A region's library loaded once (rewriting a loaded .so in place would crash)."""

    def __init__(self, library: bytes, entry: Any, tmp: Any) -> None:
        path = tmp / f"{entry.name}-{len(list(tmp.iterdir()))}.so"
        path.write_bytes(library)
        self.entry = entry
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())

    def __call__(self, env: dict[str, Any]) -> list[np.ndarray]:
        values = {t.name: region_values(env[t.name]) for t in self.entry.inputs}
        args = region_arguments(self.entry, values, "test")
        return [t.numpy() for t in self.vm["main"](*(tvm.runtime.tensor(a) for a in args))]


def test_regions_are_maximal_runs_of_cpu_layers_in_execution_order(region_net: Built) -> None:
    qm, _, parts, _ = region_net
    regions = find_cpu_regions(qm, parts)
    in_part = {n for p in parts for n in p.layers}
    cpu_layers = [n.name for n in qm.graph.nodes if n.name not in in_part]
    assert [n for r in regions for n in r.layers] == cpu_layers
    # Between two regions there is always an NPU partition (else they would be one run).
    order = [n.name for n in qm.graph.nodes]
    first = {p.layers[0] for p in parts}
    for a, b in itertools.pairwise(regions):
        between = order[order.index(a.layers[-1]) + 1 : order.index(b.layers[0])]
        assert first & set(between)
    readers = {n.name: set(n.inputs) for n in qm.graph.nodes}
    for r in regions:
        inside = set(r.layers)
        assert not inside & set(r.inputs)
        assert set(r.inputs) == {i for n in r.layers for i in readers[n]} - inside
        for out in r.outputs:  # read after the region or a model output
            used = {n for n, ins in readers.items() if out in ins} - inside
            assert used or out in qm.graph.outputs
    # The 5-D shuffle (integer layers) is one region; softmax, layer norm and matmul follow.
    assert len(regions[0].layers) == 3 and len(regions) == 4


def test_integer_region_is_bit_exact_on_new_inputs(shuffle_net: Built, tmp_path: Any) -> None:
    qm, ix, parts, feeds = shuffle_net
    golden = [ix.run(feeds[0])]
    compiled = compile_cpu_regions(qm, parts, host_target(), golden)
    assert len(compiled) == 2 and all(c.entry.library for c in compiled)
    libraries = [_Library(c.library, c.entry, tmp_path) for c in compiled]
    rng = np.random.default_rng(7)
    for _ in range(3):
        env = ix.run({"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32) * 3})
        for c, library in zip(compiled, libraries, strict=True):
            for spec, got in zip(c.entry.outputs, library(env), strict=True):
                want = env[spec.name]
                assert isinstance(want, IntTensor) and got.dtype == np.dtype(want.qparams.dtype)
                np.testing.assert_array_equal(
                    got, want.values.astype(want.qparams.dtype), strict=True
                )


def test_float_regions_agree_within_the_stated_tolerance(region_net: Built, tmp_path: Any) -> None:
    qm, ix, parts, feeds = region_net
    compiled = compile_cpu_regions(qm, parts, host_target(), [ix.run(feeds[0])])
    assert all(c.entry.library for c in compiled), [c.entry.fallback_reason for c in compiled]
    env = ix.run(feeds[2])  # not a golden sample
    for c in compiled:
        library = _Library(c.library, c.entry, tmp_path)
        for spec, got in zip(c.entry.outputs, library(env), strict=True):
            want = region_values(env[spec.name])
            if got.dtype.kind == "f":
                scale = max(1.0, float(np.abs(want).max()))
                np.testing.assert_allclose(got, want, rtol=0, atol=FLOAT_TOLERANCE * scale)
            else:
                np.testing.assert_array_equal(got, want.astype(got.dtype), strict=True)


def test_the_library_bytes_are_deterministic(shuffle_net: Built) -> None:
    qm, _, parts, _ = shuffle_net
    region = find_cpu_regions(qm, parts)[0]
    a = compile_region(qm, region, host_target())
    b = compile_region(qm, region, host_target())
    assert a.library and a.library == b.library and a.entry == b.entry


def test_a_region_lowering_refuses_is_recorded_with_its_reason(
    shuffle_net: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    qm, _, parts, _ = shuffle_net

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise UnsupportedError("layer 'reshape_0': integer reshape has no CPU lowering")

    monkeypatch.setattr(qlower, "lower_layers", refuse)
    compiled = compile_cpu_regions(qm, parts, host_target())
    assert compiled and all(c.entry.library is None and not c.library for c in compiled)
    reason = compiled[0].entry.fallback_reason
    assert reason is not None and "integer reshape has no CPU lowering" in reason
    assert compiled[0].entry.to_json()["fallback_reason"] == reason
