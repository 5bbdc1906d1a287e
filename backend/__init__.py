"""Backends: turn an optimised Relax module into something that runs.

* :mod:`npuc.backend.cpu` — the host CPU through TVM's LLVM codegen: a native
  shared library plus a JSON sidecar describing its interface.
* :mod:`npuc.backend.npu` — the modeled NPU (arrives in a later release).
"""
