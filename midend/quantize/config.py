"""Quantization options: one frozen config for the whole model, with per-layer overrides.

Field names follow Zhouyi Compass OPT's per-layer configuration (what its
users already edit); the presets follow LEIP's ``--quantizer`` names. Every
field is listed with its meaning by ``npuc quantize --list-fields``
(:data:`LAYER_FIELDS`, :data:`MODEL_FIELDS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from npuc.core.errors import InvalidInputError

from .ranges import parse_strategy

QUANTIZER_PRESETS = ("none", "symmetric", "asymmetric", "symmetricpc", "asymmetricpc")

LAYER_FIELDS: dict[str, str] = {
    "q_mode_activation": "symmetric | asymmetric: zero point 0, or chosen from the range",
    "q_mode_weight": "per_tensor | per_channel: one weight scale, or one per output channel",
    "q_bits_activation": "8 | 16: activation storage (int8, or int16 at half MAC rate)",
    "q_unsigned_activation": "true: uint8 storage for 8-bit asymmetric activations",
    "q_bits_weight": "8: the MAC array takes int8 weights only",
    "q_bits_bias": "16: b16 << bias_shift (docs/npu_spec.md)",
    "lut_items_in_bits": "table size for 16-bit LUT inputs: 2^k + 1 entries, k <= 10",
    "q_strategy_activation": "extrema | mean | <R>percentile | <N>std | <N>kld | "
    "<R>aciq_laplace | <R>aciq_gauss | mse",
    "q_strategy_weight": "extrema | mse",
    "running_statistic_momentum": "momentum of the running min/max (strategy 'mean'), [0, 1)",
    "histc_bins": "histogram bins for percentile/kld/aciq/mse",
    "weight_narrow_range": "true: int8 weights in [-127, 127]; false: [-128, 127]",
    "run_on": "npu | cpu: cpu keeps this layer float on the host",
}

MODEL_FIELDS: dict[str, str] = {
    "bias_correction": "empirical per-channel bias correction on the calibration data",
    "unify_scales_for_concat": "give a concat's inputs the concat's scale (no requant copies)",
    "float_coarse_concats": "keep float a concat whose one scale leaves an input < 16 steps",
    "trim_infinity": "leave +-inf and |x| >= 1e30 out of the activation statistics",
    "calibration_samples": "at most this many calibration samples (0: all)",
    "bias_correction_samples": "samples used by bias correction (0: all calibration samples)",
    "float_layers": "layers kept float (run on the CPU), by name",
    "float_op_types": "layer kinds kept float, e.g. conv2d, add, sigmoid",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerQuantConfig:
    """Quantization choices for one layer (see :data:`LAYER_FIELDS`)."""

    q_mode_activation: str = "asymmetric"
    q_mode_weight: str = "per_channel"
    q_bits_activation: int = 8
    q_unsigned_activation: bool = False
    q_bits_weight: int = 8
    q_bits_bias: int = 16
    lut_items_in_bits: int = 10
    q_strategy_activation: str = "mse"
    q_strategy_weight: str = "extrema"
    running_statistic_momentum: float = 0.9
    histc_bins: int = 2048
    weight_narrow_range: bool = True
    run_on: str = "npu"

    def __post_init__(self) -> None:
        checks = (
            ("q_mode_activation", ("symmetric", "asymmetric")),
            ("q_mode_weight", ("per_tensor", "per_channel")),
            ("q_bits_activation", (8, 16)),
            ("q_bits_weight", (8,)),
            ("q_bits_bias", (16,)),
            ("q_strategy_weight", ("extrema", "mse")),
            ("run_on", ("npu", "cpu")),
        )
        for name, allowed in checks:
            value = getattr(self, name)
            if value not in allowed:
                raise InvalidInputError(
                    f"{name} = {value!r} is not one of {', '.join(map(str, allowed))}"
                )
        _check_types(self, {"weight_narrow_range": bool, "q_unsigned_activation": bool,
                            "histc_bins": int, "lut_items_in_bits": int,
                            "q_strategy_activation": str})  # fmt: skip
        parse_strategy(self.q_strategy_activation)
        if self.q_unsigned_activation and self.q_bits_activation != 8:
            raise InvalidInputError(
                f"q_unsigned_activation needs 8-bit activations, not {self.q_bits_activation}: "
                "the NPU's only unsigned storage type is uint8 (its 16-bit type, int16, is signed)",
                hint="for 16-bit activations drop --unsigned-activations (q_unsigned_activation "
                "= false; int16 is asymmetric too); for uint8 keep --activation-bits 8",
            )
        if self.q_unsigned_activation and self.q_mode_activation != "asymmetric":
            raise InvalidInputError(
                "q_unsigned_activation needs asymmetric activations: uint8 has no symmetric "
                "form (zero point 0 would leave no negative values)",
                hint="use an asymmetric preset (--quantizer asymmetric or asymmetricpc), or drop "
                "--unsigned-activations",
            )
        if not 1 <= self.lut_items_in_bits <= 10:
            raise InvalidInputError(
                f"lut_items_in_bits = {self.lut_items_in_bits} is not in [1, 10]"
            )
        if not 0.0 <= self.running_statistic_momentum < 1.0:
            raise InvalidInputError("running_statistic_momentum must be in [0, 1)")
        if self.histc_bins < 8:
            raise InvalidInputError(f"histc_bins = {self.histc_bins} must be >= 8")

    @property
    def activation_dtype(self) -> str:
        if self.q_bits_activation == 16:
            return "int16"
        return "uint8" if self.q_unsigned_activation else "int8"

    @property
    def symmetric(self) -> bool:
        return self.q_mode_activation == "symmetric"

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _check_types(config: object, kinds: Mapping[str, type]) -> None:
    """Raise naming the field when a value has the wrong type (``"false"`` is not a bool)."""
    for name, kind in kinds.items():
        value = getattr(config, name)
        wrong = isinstance(value, bool) != (kind is bool) or not isinstance(value, kind)
        if wrong:
            raise InvalidInputError(
                f"{name} must be {'true or false' if kind is bool else kind.__name__}, "
                f"not {value!r}"
            )


def apply_overrides(
    base: LayerQuantConfig, overrides: Mapping[str, Any], where: str
) -> LayerQuantConfig:
    """``base`` with ``overrides`` applied; unknown fields and bad values name ``where``."""
    unknown = sorted(set(overrides) - set(LAYER_FIELDS))
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown field(s) {', '.join(unknown)}",
            hint=f"fields: {', '.join(LAYER_FIELDS)} (npuc quantize --list-fields)",
        )
    try:
        return replace(base, **dict(overrides))
    except InvalidInputError as err:
        raise InvalidInputError(f"{where}: {err.message}", hint=err.hint) from err
    except TypeError as err:
        raise InvalidInputError(f"{where}: {err}") from err


def preset(name: str) -> dict[str, Any]:
    """LEIP's ``--quantizer`` presets as layer-field overrides (``asymmetricpc`` is npuc's)."""
    table = {
        "symmetric": {"q_mode_activation": "symmetric", "q_mode_weight": "per_tensor"},
        "asymmetric": {"q_mode_activation": "asymmetric", "q_mode_weight": "per_tensor"},
        "symmetricpc": {"q_mode_activation": "symmetric", "q_mode_weight": "per_channel"},
        "asymmetricpc": {"q_mode_activation": "asymmetric", "q_mode_weight": "per_channel"},
        "none": {"run_on": "cpu"},
    }
    if name not in table:
        raise InvalidInputError(
            f"--quantizer {name!r} is not one of {', '.join(QUANTIZER_PRESETS)}"
        )
    return table[name]


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantConfig:
    """Whole-model quantization options; ``layers`` holds per-layer overrides by layer name."""

    default: LayerQuantConfig = field(default_factory=LayerQuantConfig)
    layers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    bias_correction: bool = True
    unify_scales_for_concat: bool = True
    float_coarse_concats: bool = True
    trim_infinity: bool = False
    calibration_samples: int = 0
    bias_correction_samples: int = 32
    float_layers: tuple[str, ...] = ()
    float_op_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_types(self, {"bias_correction": bool, "unify_scales_for_concat": bool,
                            "float_coarse_concats": bool, "trim_infinity": bool,
                            "calibration_samples": int,
                            "bias_correction_samples": int})  # fmt: skip
        if self.calibration_samples < 0 or self.bias_correction_samples < 0:
            raise InvalidInputError("calibration_samples and bias_correction_samples must be >= 0")

    def for_layer(self, name: str, kind: str) -> LayerQuantConfig:
        """The effective config of layer ``name`` of kind ``kind`` (per-layer values win)."""
        cfg = self.default
        if name in self.layers:
            cfg = apply_overrides(cfg, self.layers[name], f"layer {name!r}")
        if name in self.float_layers or kind in self.float_op_types:
            cfg = replace(cfg, run_on="cpu")
        return cfg

    def check_layer_names(self, names: set[str], kinds: set[str]) -> None:
        """Raise if an override names a layer or kind the model does not have."""
        for what, given, known in (
            ("layer-config entry", set(self.layers), names),
            ("--float-layers name", set(self.float_layers), names),
            ("--float-op-types kind", set(self.float_op_types), kinds),
        ):
            unknown = sorted(given - known)
            if unknown:
                raise InvalidInputError(
                    f"{what} {', '.join(unknown)} is not in the model",
                    hint=f"the model has: {', '.join(sorted(known)[:20])}"
                    + (" ..." if len(known) > 20 else ""),
                )
