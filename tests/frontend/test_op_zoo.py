"""Every operator npuc claims, on small graphs, against onnxruntime.

Each case imports a tiny ONNX graph with :func:`npuc.frontend.load`, compiles
and runs it on the CPU, and compares every output with onnxruntime at
rtol=1e-4, atol=1e-5 (fp32; the tolerance is stated per case in
``tests/frontend/onnx_graphs.Case``).
"""

from __future__ import annotations

import pytest

from npuc.frontend.onnx.rules import RULES
from tests.frontend import zoo_nn, zoo_seq, zoo_tensor
from tests.frontend.onnx_graphs import Case, check_against_onnxruntime

ALL_CASES = [*zoo_nn.CASES, *zoo_tensor.CASES, *zoo_seq.CASES]


@pytest.mark.parametrize("case", ALL_CASES)
def test_operator_matches_onnxruntime(case: Case) -> None:
    check_against_onnxruntime(case)


def test_every_claimed_operator_is_in_the_zoo() -> None:
    tested = {node.op_type for p in ALL_CASES for node in p.values[0].model.graph.node}
    untested = sorted(
        r.op_type for r in RULES if r.op_type not in tested and r.op_type != "Constant"
    )
    assert untested == [], f"operators claimed without a zoo case: {untested}"
