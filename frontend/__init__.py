"""Model importers: ONNX, TFLite and PyTorch exported programs -> TVM Relax.

The one entry point is :func:`load`; it picks the importer from the file's
content and extension and returns an :class:`ImportedModel` holding the Relax
module and the model's interface (:class:`npuc.core.model_info.ModelInfo`). The
frontend does no optimisation: it only fixes input shapes, cleans the graph
up so TVM's importers accept it, checks support and converts.
"""

from __future__ import annotations

from npuc.frontend.dispatch import detect_format, load
from npuc.frontend.imported import ImportedModel

__all__ = ["ImportedModel", "detect_format", "load"]
