"""Generate the constant data (.npy) of the example programs, deterministically.

Run ``python examples/gen_data.py``; it writes ``<example>_<what>.npy`` beside
this file. Each example's quantization is written out below (float scales ->
integer multipliers and shifts) and its per-tensor multipliers and shifts are
checked against the literal values in the matching ``.s`` file, so the files
cannot drift apart silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def multipliers(real: np.ndarray, total_shift: int) -> np.ndarray:
    """uint16 multipliers M = round(real * 2^total_shift), checked to fit 15 bits."""
    m = np.round(np.asarray(real, dtype=np.float64) * (1 << total_shift)).astype(np.int64)
    if m.min() < 1 or m.max() > 32767:
        raise ValueError(f"multipliers [{m.min()}, {m.max()}] do not fit [1, 32767]")
    return m.astype(np.uint16)


def check(value: int, expected: int, what: str) -> None:
    """Fail if a literal in a .s file no longer matches the quantization here."""
    if value != expected:
        raise ValueError(f"{what}: computed {value}, the .s file says {expected}")


def weights(rng: np.random.Generator, shape: tuple[int, ...], std: float = 40.0) -> np.ndarray:
    return np.clip(np.round(rng.normal(0.0, std, shape)), -127, 127).astype(np.int8)


def bias(rng: np.random.Generator, cout: int, acc_scale: np.ndarray, shift: int) -> np.ndarray:
    """int16 b16 with b16 << shift ~ a float bias of std 2.0 in accumulator units."""
    b = rng.normal(0.0, 2.0, cout) / acc_scale
    return np.clip(np.round(b / (1 << shift)), -32768, 32767).astype(np.int16)


def conv_relu(rng: np.random.Generator) -> dict[str, np.ndarray]:
    # x int8 s=0.05 zp=-3; w per-channel s_w in [0.004, 0.012]; y int8 s=0.25 zp=-20 (ReLU).
    s_w = rng.uniform(0.004, 0.012, 32)
    return {
        "w": weights(rng, (32, 3, 3, 16)),
        "b": bias(rng, 32, 0.05 * s_w, shift=2),  # bias_shift=2
        "m": multipliers(0.05 * s_w / 0.25, 1 + 22),  # pre_shift=1, post_shift=22
    }


def residual_add(rng: np.random.Generator) -> dict[str, np.ndarray]:
    # x int8 s=0.05; conv1 -> h1 int8 s=0.25 (ReLU); conv2 (s_w=0.008) -> h2 int8 s=0.3;
    # y = relu(h2 + x) uint8-like int8 s=0.35 zp=-128.
    s_w1 = rng.uniform(0.004, 0.012, 16)
    check(int(multipliers(np.array([0.25 * 0.008 / 0.3]), 2 + 20)[0]), 27962, "conv2 m")
    check(int(multipliers(np.array([0.3 / 0.35]), 15)[0]), 28087, "add ifm_multiplier")
    check(int(multipliers(np.array([0.05 / 0.35]), 15)[0]), 4681, "add ifm2_multiplier")
    return {
        "w1": weights(rng, (16, 3, 3, 16)),
        "b1": bias(rng, 16, 0.05 * s_w1, shift=0),
        "m1": multipliers(0.05 * s_w1 / 0.25, 2 + 20),
        "w2": weights(rng, (16, 3, 3, 16)),
        "b2": bias(rng, 16, np.full(16, 0.25 * 0.008), shift=1),
    }


def depthwise(rng: np.random.Generator) -> dict[str, np.ndarray]:
    # x uint8 s=0.02 zp=128; w (32,3,3,1) s_w in [0.01, 0.03]; y uint8 s=0.05 zp=0, ReLU6 0..120.
    s_w = rng.uniform(0.01, 0.03, 32)
    return {
        "w": weights(rng, (32, 3, 3, 1)),
        "b": bias(rng, 32, 0.02 * s_w, shift=0),
        "m": multipliers(0.02 * s_w / 0.05, 21),  # pre_shift=0, post_shift=21
    }


def lut_sigmoid(rng: np.random.Generator) -> dict[str, np.ndarray]:
    # Path 1: FC int8 (s=0.05) -> int16 s=8/32768 (m=26844, post_shift=15), then an int16 LUT
    #   with k=8 (257 entries) of sigmoid to int16 s=1/32767.
    # Path 2: FC with per-channel M -> requant int8 s=1/16 -> fused int8 LUT (256 entries)
    #   of sigmoid to int8 s=1/256 zp=-128.
    s16 = 8.0 / 32768
    assert int(multipliers(np.array([0.05 * 0.004 / s16]), 15)[0]) == 26844
    k = 8
    xs = (-32768 + (np.arange((1 << k) + 1) << (16 - k))).astype(np.float64) * s16
    t16 = np.clip(np.round(32767 / (1 + np.exp(-xs))), -32768, 32767).astype(np.int16)
    x8 = np.arange(-128, 128, dtype=np.float64) / 16
    t8 = np.clip(np.round(256 / (1 + np.exp(-x8))) - 128, -128, 127).astype(np.int8)
    s_w2 = rng.uniform(0.003, 0.005, 32)
    return {
        "w1": weights(rng, (32, 64)),
        "b1": bias(rng, 32, np.full(32, 0.05 * 0.004), shift=0),
        "t16": t16,
        "w2": weights(rng, (32, 64)),
        "m2": multipliers(0.05 * s_w2 * 16, 22),
        "t8": t8,
    }


def main() -> None:
    for seed, fn in enumerate((conv_relu, residual_add, depthwise, lut_sigmoid)):
        rng = np.random.default_rng(1000 + seed)
        for what, arr in fn(rng).items():
            np.save(HERE / f"{fn.__name__}_{what}.npy", arr)
    print(f"wrote example data to {HERE}")


if __name__ == "__main__":
    main()
