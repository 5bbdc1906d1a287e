"""Quantization config: validation, per-layer overrides, presets, layer-name checks."""

from __future__ import annotations

import pytest

from npuc.core.errors import InvalidInputError
from npuc.midend.quantize.config import (
    LAYER_FIELDS,
    QUANTIZER_PRESETS,
    LayerQuantConfig,
    QuantConfig,
    apply_overrides,
    preset,
)


def test_every_field_is_documented() -> None:
    assert set(LAYER_FIELDS) == set(LayerQuantConfig().to_json())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("q_bits_activation", 12),
        ("q_mode_weight", "per_group"),
        ("run_on", "gpu"),
        ("lut_items_in_bits", 11),
        ("running_statistic_momentum", 1.0),
        ("histc_bins", 4),
    ],
)
def test_bad_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidInputError, match=field):
        apply_overrides(LayerQuantConfig(), {field: value}, "layer 'conv'")


def test_override_error_names_where_and_keeps_hint() -> None:
    with pytest.raises(InvalidInputError) as info:
        apply_overrides(LayerQuantConfig(), {"q_strategy_activation": "foo"}, "layer 'conv'")
    assert info.value.message.startswith("layer 'conv': ")
    assert info.value.hint is not None and "kld" in info.value.hint


def test_unknown_field() -> None:
    with pytest.raises(InvalidInputError, match=r"unknown field.*bogus") as info:
        apply_overrides(LayerQuantConfig(), {"bogus": 1}, "layer 'conv'")
    assert "--list-fields" in str(info.value.hint)


def test_per_layer_wins_and_float_lists() -> None:
    config = QuantConfig(
        default=LayerQuantConfig(q_bits_activation=8),
        layers={"a": {"q_bits_activation": 16}},
        float_layers=("b",),
        float_op_types=("sigmoid",),
    )
    assert config.for_layer("a", "conv2d").q_bits_activation == 16
    assert config.for_layer("a", "conv2d").run_on == "npu"
    assert config.for_layer("b", "conv2d").run_on == "cpu"
    assert config.for_layer("c", "sigmoid").run_on == "cpu"
    assert config.for_layer("c", "conv2d") == config.default


def test_presets() -> None:
    for name in QUANTIZER_PRESETS:
        apply_overrides(LayerQuantConfig(), preset(name), name)
    assert preset("symmetric")["q_mode_weight"] == "per_tensor"
    assert preset("symmetricpc")["q_mode_activation"] == "symmetric"
    with pytest.raises(InvalidInputError, match="int4"):
        preset("int4")


def test_check_layer_names() -> None:
    config = QuantConfig(layers={"ghost": {}}, float_op_types=("conv2d",))
    with pytest.raises(InvalidInputError, match="ghost is not in the model"):
        config.check_layer_names({"a"}, {"conv2d"})
    QuantConfig(float_op_types=("conv2d",)).check_layer_names({"a"}, {"conv2d"})
    with pytest.raises(InvalidInputError, match="kind dense"):
        QuantConfig(float_op_types=("dense",)).check_layer_names({"a"}, {"conv2d"})


def test_unsigned_activations_are_uint8_and_need_asymmetric_8_bit() -> None:
    from npuc.core.errors import InvalidInputError
    from npuc.midend.quantize.config import LayerQuantConfig

    assert LayerQuantConfig(q_unsigned_activation=True).activation_dtype == "uint8"
    for bad in (
        {"q_mode_activation": "symmetric"},
        {"q_bits_activation": 16},
    ):
        with pytest.raises(InvalidInputError, match="q_unsigned_activation"):
            LayerQuantConfig(q_unsigned_activation=True, **bad)  # type: ignore[arg-type]


def test_values_of_the_wrong_type_are_refused_by_name() -> None:
    from npuc.core.errors import InvalidInputError
    from npuc.midend.quantize.config import LayerQuantConfig, QuantConfig, apply_overrides

    with pytest.raises(InvalidInputError, match="bias_correction must be true or false"):
        QuantConfig(bias_correction="false")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="weight_narrow_range must be true or false"):
        apply_overrides(LayerQuantConfig(), {"weight_narrow_range": "false"}, "layer 'c'")
    with pytest.raises(InvalidInputError, match="histc_bins must be int"):
        LayerQuantConfig(histc_bins=True)  # type: ignore[arg-type]
