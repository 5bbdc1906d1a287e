"""Conv/FC parameter derivation: one bias_shift per instruction must not round live biases away."""

from __future__ import annotations

import numpy as np

from npuc.midend.quantize.config import LayerQuantConfig
from npuc.midend.quantize.graph import Node, TensorType
from npuc.midend.quantize.qlayers import derive_params
from npuc.midend.quantize.qparams import QParams


def test_a_dead_channel_with_a_bias_does_not_force_a_large_bias_shift() -> None:
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((4, 8, 1, 1)) * 0.02).astype(np.float32)
    weight[3] = 1e-12  # a channel BN folding left (almost) without weights
    bias = np.full(4, 0.5, np.float32)
    node = Node(
        name="se", op="conv2d", inputs=("x",), out=TensorType(shape=(1, 4, 1, 1), dtype="float32"),
        attrs={"strides": [1, 1], "padding": [0, 0, 0, 0], "dilation": [1, 1], "groups": 1,
               "act_min": None, "act_max": None},
        consts={"weight": weight, "bias": bias},
    )  # fmt: skip
    x_q, y_q = QParams(0.06, -128, "int8"), QParams(0.003, -128, "int8")
    p = derive_params(node, [x_q], y_q, LayerQuantConfig(), [(1, 8, 1, 1)])
    acc_scale = x_q.scale * np.asarray(p["weight_scales"])
    represented = p["b16"].astype(np.float64) * 2.0 ** p["bias_shift"] * acc_scale
    # Every channel's bias survives to within 0.1% (it was rounded to 0-2 steps of 2^16 before).
    np.testing.assert_allclose(represented, bias, rtol=1e-3)
    assert p["bias_shift"] <= 4
