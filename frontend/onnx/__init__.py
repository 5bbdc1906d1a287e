"""ONNX importer: an ONNX file or ModelProto -> Relax IRModule + ModelInfo.

The steps, one module each, in order:

1. :mod:`.read`     read and check the file (external data included);
2. :mod:`.shapes`   fix every input shape (``--input-shape`` for symbolic dims);
3. :mod:`.cleanup`  shape inference and constant folding, then the model
                    fix-ups of :mod:`npuc.frontend.fixups`;
4. :mod:`.support`  check every node against :mod:`.rules`, report all failures;
5. :mod:`.convert`  ``from_onnx``, Relax fix-ups, well-formedness check.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from npuc.frontend.imported import ImportedModel, InputShapes

if TYPE_CHECKING:
    import onnx

    from npuc.frontend.onnx.input_values import InputValues


def load_onnx(
    source: str | os.PathLike[str] | onnx.ModelProto,
    input_shapes: InputShapes | None = None,
    input_values: InputValues | None = None,
) -> ImportedModel:
    """Import an ONNX model; see :func:`npuc.frontend.load` for parameters and errors."""
    from npuc.frontend.onnx.convert import model_info, to_relax
    from npuc.frontend.onnx.prepare import prepare_onnx
    from npuc.frontend.onnx.support import check_supported

    prepared = prepare_onnx(source, input_shapes, input_values)
    check_supported(prepared.model, prepared.source_path)
    mod = to_relax(prepared.model, prepared.shapes, prepared.opset, prepared.source_path)
    info = model_info(
        mod,
        prepared.inputs,
        source_path=prepared.source_path,
        source_sha256=prepared.source_sha256,
        opset=prepared.opset,
        output_names=[o.name for o in prepared.model.graph.output],
    )
    return ImportedModel(mod, info, prepared.source_quant, prepared.source_graph)
