"""What every importer returns: the Relax module and the model's interface.

Kept apart from :mod:`npuc.frontend.dispatch` (which imports the importers)
so that the importers can name the type without importing the dispatcher.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from npuc.core.model_info import ModelInfo

if TYPE_CHECKING:
    import tvm

    from npuc.frontend.source_quant import SourceGraph, SourceQuant

InputShapes = Mapping[str, Sequence[int]]
"""Shapes for inputs with symbolic dimensions, by input name: ``{"images": (1, 3, 640, 640)}``."""


@dataclass(frozen=True, slots=True)
class ImportedModel:
    """A model in npuc's IR: the Relax module and its interface.

    ``mod["main"]`` takes the inputs in ``info.inputs`` order, with static shapes.
    ``source_quant`` is set for a pre-quantized model (a QDQ ONNX file or a
    full-int8 TFLite file): its own scales and zero points by source tensor name
    (:mod:`npuc.frontend.source_quant`). ``source_graph`` is the node structure of
    any ONNX model and of a full-int8 TFLite model by their own names (None
    otherwise), so tools can show users their model's names
    (:mod:`npuc.midend.quantize.source_names`).
    Unpacks as ``mod, info = load(...)``.
    """

    mod: tvm.IRModule
    info: ModelInfo
    source_quant: SourceQuant | None = None
    source_graph: SourceGraph | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.mod, self.info))
