"""onnxruntime as the float reference, and the tolerance convention.

Float comparisons state their tolerances where they are made; the defaults
below are for fp32 graphs whose reductions TVM and onnxruntime order
differently.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5


def run_onnxruntime(
    model: onnx.ModelProto | str, feeds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run ``model`` on the CPU provider with one thread-pool default; outputs by name."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(feeds)), strict=True))
