"""Show that onnxruntime's U8S8 ``QLinearConv`` saturates on AVX2 (bench/cpu.py's int8 reference).

``bench/cpu.py`` compares npuc's exact int8 library with onnxruntime's QDQ model
in U8S8 form (uint8 activations, int8 weights), onnxruntime's recommended x86
type. Without VNNI, onnxruntime's MLAS computes U8S8 products with
``vpmaddubsw`` (Intel SDM, PMADDUBSW: two u8 x s8 products added with int16
*saturation*): the pair sum ``255 * 127 + 255 * 127 = 64770`` becomes 32767.
This script runs one ``QLinearConv`` built to hit that case (8 input channels
of 255, every weight 127, scales 1, output scale 2000: the exact output is
``round(8 * 255 * 127 / 2000) = 130``) twice, in child processes: as the host
is, and with CPUID masked to an AVX2-only CPU (``cpuid_mask.py``, the mask of
``bench/cpu.py --isa avx2``). npuc's int8 kernels are exact on every target
(docs/cpu_backend.md, section 8).

Measured on this project's AVX-512 VNNI host (onnxruntime 1.32.0): 130 unmasked,
66 masked.

Usage: ``.venv/bin/python bench/ort_u8s8_saturation.py [--json]``; exit status 0
when it ran (whatever it found), 2 when the mask is unavailable.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from cpuid_mask import build_mask, unavailable_reason  # noqa: E402

CHANNELS = 8
OUTPUT_SCALE = 2000.0


def exact_output() -> int:
    """The exact ``QLinearConv`` output of :func:`run_once`'s layer (round half to even)."""
    return int(np.round(CHANNELS * 255 * 127 / OUTPUT_SCALE))


def run_once() -> int:
    """Run the one-node model in this process; return its first output value (uint8)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value: np.ndarray) -> object:
        return numpy_helper.from_array(value, name)

    inits = [
        const("xs", np.array(1.0, np.float32)),
        const("xz", np.array(0, np.uint8)),
        const("w", np.full((1, CHANNELS, 1, 1), 127, np.int8)),
        const("ws", np.array(1.0, np.float32)),
        const("wz", np.array(0, np.int8)),
        const("ys", np.array(OUTPUT_SCALE, np.float32)),
        const("yz", np.array(0, np.uint8)),
    ]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    shape = [1, CHANNELS, 4, 4]
    graph = helper.make_graph(
        [node],
        "u8s8_saturation",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, shape)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 1, 4, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    y = session.run(None, {"x": np.full(shape, 255, np.uint8)})[0]
    return int(y.ravel()[0])


def _child(masked: bool, mask: Path | None) -> int:
    env = dict(os.environ)
    if masked and mask is not None:
        env["LD_PRELOAD"] = str(mask)
    out = subprocess.run(
        [sys.executable, __file__, "--child"], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(run_once())
        return 0
    reason = unavailable_reason()
    if reason is not None:
        print(f"CPUID mask unavailable: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        mask = build_mask(Path(folder))
        result = {
            "exact": exact_output(),
            "host": _child(False, None),
            "avx2_masked": _child(True, mask),
        }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"exact {result['exact']}; onnxruntime as the host is: {result['host']}; "
            f"with CPUID masked to AVX2: {result['avx2_masked']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
