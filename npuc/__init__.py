"""npuc: a compiler toolchain for a modeled neural processing unit.

Stages, in the order data flows (each a subpackage):
``npuc.frontend`` (importers to TVM Relax) -> ``npuc.midend`` (passes)
-> ``npuc.backend`` (CPU via LLVM, NPU instructions) -> ``npuc.npu_sim`` /
``npuc.runtime``. The modules directly in ``npuc`` form the small shared core
(errors, model description, hardware config, ISA) that every stage may use.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("npuc")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
