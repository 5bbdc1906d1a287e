"""The ``--hw PATH.toml`` / ``--hw-preset NAME`` options shared by asm, sim and build commands."""

from __future__ import annotations

import argparse

from npuc.core.hw.config import DEFAULT_PRESET, PRESETS, HwConfig, load_hw_config, preset


def add_hw_options(parser: argparse.ArgumentParser) -> None:
    """Add mutually exclusive ``--hw`` and ``--hw-preset`` to ``parser``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--hw",
        metavar="PATH.toml",
        help="hardware config: TOML overriding fields of npu-m (or of `preset = ...` in the file)",
    )
    group.add_argument(
        "--hw-preset",
        choices=sorted(PRESETS),
        default=None,
        help=f"hardware preset (default {DEFAULT_PRESET})",
    )


def resolve_hw(args: argparse.Namespace) -> HwConfig:
    """The HwConfig selected by the options added with :func:`add_hw_options`."""
    if getattr(args, "hw", None):
        return load_hw_config(args.hw)
    return preset(getattr(args, "hw_preset", None) or DEFAULT_PRESET)
