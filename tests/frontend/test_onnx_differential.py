"""Differential test: random small ONNX graphs, npuc's CPU path against onnxruntime.

The generator (:mod:`tests.frontend.onnx_random_graphs`) draws graphs over
the operators and attribute combinations npuc claims; every case must
either match onnxruntime (same shapes; rtol 1e-4, atol 1e-4 on float32
values) or be refused by a support rule that names the node and the
reason. A model onnxruntime refuses must be refused by npuc too. The
default tier runs 30 derandomized cases; the slow tier 600.
``tools/differential_report.py`` runs the long one and records the counts in
docs/conformance.md.
"""

from __future__ import annotations

import pytest

from tests.frontend.onnx_random_graphs import run_differential

SHORT_EXAMPLES = 30
LONG_EXAMPLES = 600


def test_random_graphs_match_onnxruntime_or_are_declined() -> None:
    stats = run_differential(SHORT_EXAMPLES)
    assert stats.examples >= SHORT_EXAMPLES // 2, stats
    assert stats.outcomes.get("match", 0) > 0, stats


@pytest.mark.slow
def test_random_graphs_long_run() -> None:
    stats = run_differential(LONG_EXAMPLES)
    assert stats.examples >= LONG_EXAMPLES // 2, stats
    assert stats.outcomes.get("match", 0) > stats.outcomes.get("declined", 0), stats
