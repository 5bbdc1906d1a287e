"""The onnx node-conformance harness: npuc's CPU path as an onnx ``Backend``.

One module per concern: :mod:`.backend` (the ``onnx.backend.base.Backend``
adapter), :mod:`.catalog` (onnx's node cases and the manifest),
:mod:`.constant_inputs` (inputs compiled as constants), :mod:`.runner` (one
case), :mod:`.parallel` (many cases in worker processes), :mod:`.selection`
(claimed cases, the default-tier subset) and :mod:`.expectations` (expected
failures). ``tests/conformance`` runs it under pytest;
``tools/conformance_report.py`` runs every claimed case and writes
docs/conformance.md. The data (``manifest.json``, ``expected_failures.toml``)
stays with the tests in ``tests/conformance/``.
"""
