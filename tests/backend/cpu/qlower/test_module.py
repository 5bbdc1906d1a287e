"""``lower_layers`` on a region of a model (what the CPU regions of NPU artifacts use):
its interface follows the executor's representation, its results equal the executor's,
and bad region descriptions are refused with the names at fault."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from npuc.backend.cpu.build import compile_module
from npuc.backend.cpu.qlower import lower_layers
from npuc.backend.cpu.qlower.module import boundary_type
from npuc.core.errors import InvalidInputError
from npuc.core.target import host_target
from npuc.midend.quantize.int_exec import IntegerExecutor
from tests.midend.quantize.tiny_model import samples, tiny_quantized

REGION = ["conv2d_1", "sigmoid_0", "add_0"]  # depthwise conv -> LUT -> residual add


def test_region_of_a_model_equals_the_executor() -> None:
    qm = tiny_quantized()
    mod = lower_layers(qm, REGION, ["conv2d_0"], ["sigmoid_0", "add_0"])
    (param,) = mod["main"].params
    assert str(param.ty.dtype) == qm.tensors["conv2d_0"].dtype == "int8"
    vm = relax.VirtualMachine(compile_module(mod, host_target()), tvm.cpu())
    for feed in samples(2, seed=3):
        env = IntegerExecutor(qm).run(feed)
        x = env["conv2d_0"].values.astype(np.int8)
        got = vm["main"](tvm.runtime.tensor(x))
        for i, name in enumerate(("sigmoid_0", "add_0")):
            np.testing.assert_array_equal(
                got[i].numpy().astype(np.int64), env[name].values, strict=True
            )


def test_boundary_types_follow_the_executor() -> None:
    qm = tiny_quantized(16)
    assert str(boundary_type(qm, "x").dtype) == "int16"  # a graph input with QParams
    assert str(boundary_type(qm, "conv2d_0").dtype) == "int16"
    assert tuple(boundary_type(qm, "dense_0").shape) == (1, 5)


@pytest.mark.parametrize(
    ("layers", "inputs", "outputs", "message"),
    [
        (["nope"], ["x"], ["nope"], "not in the quantized model"),
        (REGION, ["missing"], ["add_0"], "are not tensors of the model"),
        (REGION, [], ["add_0"], "reads ['conv2d_0']"),
        (REGION, ["conv2d_0"], ["dense_0"], "not computed by the region"),
    ],
)
def test_bad_regions_are_refused(
    layers: list[str], inputs: list[str], outputs: list[str], message: str
) -> None:
    with pytest.raises(InvalidInputError) as err:
        lower_layers(tiny_quantized(), layers, inputs, outputs)
    assert message in str(err.value)
