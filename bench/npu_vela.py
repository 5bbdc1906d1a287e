"""TensorFlow side of bench/npu.py: Keras model -> int8 and float TFLite (runs in bench/.venv-vela).

Usage: ``python npu_vela.py NETWORK CALIB.npy OUT_DIR [--weights none|imagenet]``

``NETWORK`` is ``resnet50`` or ``mobilenetv2`` (Keras applications, 224x224x3,
NHWC, batch 1). ``CALIB.npy`` holds ``(N, 224, 224, 3)`` float32 samples that are
already preprocessed for that network (bench/npu.py makes them from the bundled
photos). Writes into ``OUT_DIR``:

- ``NETWORK_int8.tflite``: full-integer model (TFLITE_BUILTINS_INT8, int8 input and
  output, per-channel int8 weights), calibrated on the N samples; Vela's input;
- ``NETWORK_float.tflite``: the same weights in float32; npuc's input (npuc
  quantizes with its own calibration on the same samples);
- ``NETWORK_convert.json``: seconds spent per step and the weight source.

``--weights none`` is random initialisation (Keras' own initializers, seed 0):
the layer shapes, MACs and cycle counts are those of the real network, but
weight values (and so Vela's weight compression) are not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

NETWORKS = ("resnet50", "mobilenetv2")


def keras_model(network: str, weights: str | None):  # type: ignore[no-untyped-def]
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    shape = (224, 224, 3)
    if network == "resnet50":
        return tf.keras.applications.ResNet50(weights=weights, input_shape=shape)
    if network == "mobilenetv2":
        return tf.keras.applications.MobileNetV2(weights=weights, input_shape=shape)
    raise SystemExit(f"unknown network {network!r}; choose one of {', '.join(NETWORKS)}")


def convert(model, calib: np.ndarray, *, int8: bool) -> bytes:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    # A batch-1 input: the converter then writes static 1x224x224x3 shapes (a
    # concrete-function export leaves READ_VARIABLE ops the calibrator rejects).
    x = tf.keras.Input(shape=calib.shape[1:], batch_size=1)
    fixed = tf.keras.Model(x, model(x, training=False))
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    if int8:

        def representative():  # type: ignore[no-untyped-def]
            for sample in calib:
                yield [sample[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network", choices=NETWORKS)
    parser.add_argument("calib", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--weights", choices=("none", "imagenet"), default="none")
    args = parser.parse_args(argv)
    calib = np.load(args.calib).astype(np.float32)
    if calib.ndim != 4 or calib.shape[1:] != (224, 224, 3):
        print(
            f"{args.calib}: expected (N, 224, 224, 3) samples, got {calib.shape}", file=sys.stderr
        )
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = keras_model(args.network, None if args.weights == "none" else args.weights)
    t1 = time.perf_counter()
    float_bytes = convert(model, calib, int8=False)
    t2 = time.perf_counter()
    int8_bytes = convert(model, calib, int8=True)
    t3 = time.perf_counter()
    (args.out_dir / f"{args.network}_float.tflite").write_bytes(float_bytes)
    (args.out_dir / f"{args.network}_int8.tflite").write_bytes(int8_bytes)
    info = {
        "network": args.network,
        "weights": args.weights,
        "calib_samples": int(calib.shape[0]),
        "params": int(model.count_params()),
        "seconds": {"keras": t1 - t0, "float": t2 - t1, "int8": t3 - t2},
    }
    (args.out_dir / f"{args.network}_convert.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
