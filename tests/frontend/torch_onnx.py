"""torch.onnx.export (the legacy TorchScript exporter, as most published models were made)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any

import onnx


def export_onnx(
    module: Any, args: tuple[Any, ...], *, opset: int = 17, names: Sequence[str] | None = None
) -> onnx.ModelProto:
    """``module`` (put in eval mode) exported with ``dynamo=False`` to an in-memory model."""
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy exporter warns that it is legacy, and about its own internals.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*with a batch_size other than 1.*")
        torch.onnx.export(
            module.eval(),
            args,
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=list(names) if names else None,
        )
    return onnx.load_from_string(buf.getvalue())
