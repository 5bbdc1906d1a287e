"""Hardware description of the modeled NPU (configuration, presets, TOML loading)."""
