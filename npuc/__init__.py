"""npuc: a compiler toolchain for a modeled neural processing unit.

Stages, in the order data flows (each a subpackage):
``npuc.frontend`` (importers to TVM Relax) -> ``npuc.midend`` (passes)
-> ``npuc.backend`` (CPU via LLVM, NPU instructions) -> ``npuc.npu_sim`` /
``npuc.runtime``, all on the small shared core ``npuc.core`` (errors, model
description, targets, artifact format, hardware config, ISA, integer
reference). ``npuc.cli`` and ``npuc.driver`` sit on top. docs/architecture.md
shows the layers; pyproject.toml's import contracts enforce them.
"""

from npuc.core.version import __version__

__all__ = ["__version__"]
