"""What every importer returns: the Relax module and the model's interface.

Kept apart from :mod:`npuc.frontend.dispatch` (which imports the importers)
so that the importers can name the type without importing the dispatcher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from npuc.core.model_info import ModelInfo

if TYPE_CHECKING:
    import tvm

InputShapes = Mapping[str, Sequence[int]]
"""Shapes for inputs with symbolic dimensions, by input name: ``{"images": (1, 3, 640, 640)}``."""


class ImportedModel(NamedTuple):
    """A model in npuc's IR: the Relax module and its interface.

    ``mod["main"]`` takes the inputs in ``info.inputs`` order, with static shapes.
    """

    mod: tvm.IRModule
    info: ModelInfo
