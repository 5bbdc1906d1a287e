"""Quantization flags shared by ``npuc quantize`` and ``npuc build --target npu``.

Precedence, lowest first: npuc's defaults, the ``[quantize]`` table of
``--config FILE.toml``, the command-line flags, then per-layer entries of
``--layer-config FILE.json`` (the template every run writes).
"""

from __future__ import annotations

import argparse
import json
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from npuc.cli import common
from npuc.core.errors import InvalidInputError

# ONNX / TFLite operator names users know -> npuc's layer kinds.
OP_TYPE_ALIASES = {
    "conv": "conv2d", "convolution": "conv2d", "depthwiseconv2d": "conv2d", "gemm": "dense",
    "matmul": "dense", "fullyconnected": "dense", "add": "add", "sub": "subtract",
    "mul": "multiply", "max": "maximum", "min": "minimum", "relu": "clip", "clip": "clip",
    "maxpool": "max_pool2d", "averagepool": "avg_pool2d", "globalaveragepool": "global_avg_pool",
    "concat": "concat", "reshape": "reshape", "transpose": "transpose", "slice": "slice",
    "resize": "resize", "sigmoid": "sigmoid", "tanh": "tanh", "hardswish": "hardswish",
    "hardsigmoid": "hardsigmoid", "leakyrelu": "leaky_relu", "softmax": "softmax",
}  # fmt: skip
_TOML_MODEL_KEYS = (
    "bias_correction", "unify_scales_for_concat", "float_coarse_concats", "trim_infinity",
    "calibration_samples", "bias_correction_samples", "float_layers", "float_op_types",
)  # fmt: skip


def add_quant_flags(parser: argparse.ArgumentParser) -> None:
    """The quantization options (see docs/quantization.md)."""
    group = parser.add_argument_group("quantization")
    group.add_argument(
        "--quantizer",
        choices=("none", "symmetric", "asymmetric", "symmetricpc", "asymmetricpc"),
        help="scheme preset: activations symmetric/asymmetric, weights per tensor or per "
        "channel (pc); none keeps every layer float (default: asymmetricpc)",
    )
    group.add_argument(
        "--activation-bits", type=int, choices=(8, 16), help="8 (int8) or 16 (int16)"
    )
    group.add_argument(
        "--unsigned-activations",
        action="store_true",
        default=None,
        help="store 8-bit asymmetric activations as uint8 instead of int8",
    )
    group.add_argument(
        "--q-strategy-activation",
        metavar="STRATEGY",
        help="activation range: extrema, mean, <R>percentile, <N>std, <N>kld, "
        "<R>aciq_laplace, <R>aciq_gauss, mse (default: mse)",
    )
    group.add_argument("--q-strategy-weight", choices=("extrema", "mse"), help="weight range")
    group.add_argument("--histc-bins", type=int, metavar="N", help="histogram bins (default 2048)")
    group.add_argument(
        "--optimization",
        action="append",
        default=None,
        metavar="NAME",
        help="bias_correction (on by default; LEIP's spelling) or none (turns it off)",
    )
    group.add_argument("--config", metavar="FILE.toml", help="options file ([quantize] table)")
    group.add_argument(
        "--layer-config", metavar="FILE.json", help="per-layer settings (the written template)"
    )
    group.add_argument(
        "--float-layers", metavar="NAME,...", help="keep these layers float (on the CPU)"
    )
    group.add_argument(
        "--float-op-types",
        metavar="TYPE,...",
        help="keep these layer kinds float: npuc's kinds, not ONNX op names "
        "(conv2d, add, sigmoid, ...; relax for an operator npuc does not model)",
    )
    group.add_argument(
        "--trim-infinity",
        action="store_true",
        default=None,
        help="leave +-inf and sentinel values (|x| >= 1e30) out of the statistics",
    )


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip()) if text else ()


def op_kind(name: str) -> str:
    """A user-facing operator name (``Conv``, ``conv2d``) -> npuc's layer kind."""
    return OP_TYPE_ALIASES.get(name.lower().replace("_", ""), name)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise InvalidInputError(f"{path}: not valid TOML ({err})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"cannot read {path}: {err}") from None


def read_layer_config(path: Path) -> dict[str, dict[str, Any]]:
    """Per-layer overrides from a template JSON (``display`` blocks are ignored)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"--layer-config {path}: not readable JSON ({err})") from None
    layers = data.get("layers", data) if isinstance(data, dict) else None
    if not isinstance(layers, dict):
        raise InvalidInputError(f"--layer-config {path}: expected an object of layers")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in layers.items():
        if not isinstance(entry, dict):
            raise InvalidInputError(f"--layer-config {path}: layer {name!r} is not an object")
        out[name] = {k: v for k, v in entry.items() if k != "display"}
    return out


def preprocess_from_args(args: argparse.Namespace) -> Any:
    """The ``[preprocess]`` table of ``--config`` as an ``ImagePreprocess`` (None if absent).

    Image folders given to ``--calib`` need it (resize, crop, mean/std, layout).
    """
    if not args.config:
        return None
    from npuc.midend.quantize.calib_data import load_preprocess

    table = _read_toml(common.existing_file(args.config, "--config file")).get("preprocess")
    if table is not None and not isinstance(table, dict):
        raise InvalidInputError(f"{args.config}: [preprocess] must be a table")
    return load_preprocess(table)


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~npuc.midend.quantize.config.QuantConfig` the flags describe."""
    from npuc.midend.quantize.config import (
        LayerQuantConfig,
        QuantConfig,
        apply_overrides,
        preset,
    )

    layer_fields: dict[str, Any] = {}
    model_fields: dict[str, Any] = {}
    toml_layers: dict[str, dict[str, Any]] = {}
    if args.config:
        path = common.existing_file(args.config, "--config file")
        table = dict(_read_toml(path).get("quantize", {}))
        toml_layers = dict(table.pop("layers", {}))
        if "quantizer" in table:
            layer_fields.update(preset(str(table.pop("quantizer"))))
        if "activation_bits" in table:
            layer_fields["q_bits_activation"] = table.pop("activation_bits")
        for key in list(table):
            if key in _TOML_MODEL_KEYS:
                model_fields[key] = table.pop(key)
        layer_fields.update(table)
    if args.quantizer:
        layer_fields.update(preset(args.quantizer))
    flag_fields = {
        "q_bits_activation": args.activation_bits,
        "q_unsigned_activation": args.unsigned_activations,
        "q_strategy_activation": args.q_strategy_activation,
        "q_strategy_weight": args.q_strategy_weight,
        "histc_bins": args.histc_bins,
    }
    layer_fields.update({k: v for k, v in flag_fields.items() if v is not None})
    default = apply_overrides(LayerQuantConfig(), layer_fields, "quantization options")
    if args.optimization:
        names = {n.lower() for n in args.optimization}
        unknown = names - {"bias_correction", "none"}
        if unknown:
            raise InvalidInputError(
                f"--optimization {', '.join(sorted(unknown))}: not available",
                hint="available: bias_correction, none (CLE and AdaRound come later)",
            )
        model_fields["bias_correction"] = "bias_correction" in names and "none" not in names
    if args.trim_infinity:
        model_fields["trim_infinity"] = True
    layers = dict(toml_layers)
    if args.layer_config:
        layers.update(read_layer_config(common.existing_file(args.layer_config, "--layer-config")))
    for name, entry in layers.items():
        apply_overrides(default, entry, f"layer {name!r}")
    float_layers = _csv(args.float_layers) or tuple(model_fields.pop("float_layers", ()))
    float_ops = _csv(args.float_op_types) or tuple(model_fields.pop("float_op_types", ()))
    model_fields.pop("float_layers", None)
    model_fields.pop("float_op_types", None)
    try:
        config = QuantConfig(default=default, layers=layers, **model_fields)
    except TypeError as err:
        raise InvalidInputError(f"quantization options: {err}") from None
    return replace(
        config, float_layers=float_layers, float_op_types=tuple(op_kind(k) for k in float_ops)
    )


def list_fields() -> str:
    """Every field with its meaning and default, for ``--list-fields``."""
    from npuc.midend.quantize.config import (
        LAYER_FIELDS,
        MODEL_FIELDS,
        LayerQuantConfig,
        QuantConfig,
    )

    layer_default = LayerQuantConfig()
    model_default = QuantConfig()
    lines = ["per-layer fields (--layer-config, [quantize] in --config):"]
    for name, meaning in LAYER_FIELDS.items():
        lines.append(f"  {name:28s} {meaning} (default: {getattr(layer_default, name)})")
    lines.append("whole-model fields ([quantize] in --config):")
    for name, meaning in MODEL_FIELDS.items():
        lines.append(f"  {name:28s} {meaning} (default: {getattr(model_default, name)})")
    return "\n".join(lines)
