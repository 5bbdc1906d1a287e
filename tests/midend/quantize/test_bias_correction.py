"""Bias correction gives the same model whether the batches of a layer run in one thread or two."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np

from npuc.midend.quantize import bias_correction
from npuc.midend.quantize.api import BATCH, batched
from npuc.midend.quantize.bias_correction import correct_bias
from tests.midend.quantize.tiny_model import samples, tiny_quantized


def test_threads_do_not_change_the_corrected_model() -> None:
    model = tiny_quantized()
    feeds = batched(list(samples(3 * BATCH + 3, seed=5)), BATCH)  # 4 batches, the last short
    results = {}
    for workers in (1, 2):
        with patch.object(bias_correction, "WORKERS", workers):
            results[workers] = correct_bias(model, feeds)
    (one, shifts_one), (two, shifts_two) = results[1], results[2]
    assert shifts_one == shifts_two and shifts_one  # some layer was corrected
    assert one.layers.keys() == two.layers.keys()
    for name, layer in one.layers.items():
        other = two.layers[name].params
        assert layer.params.keys() == other.keys()
        for key, value in layer.params.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, other[key], strict=True)
            else:
                assert value == other[key], (name, key)
