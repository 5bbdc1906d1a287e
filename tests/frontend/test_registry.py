"""The operator registry is consistent with TVM's converter, with ONNX, and with the docs."""

from __future__ import annotations

import onnx
import pytest

from npuc.frontend.onnx.registry import OpRule
from npuc.frontend.onnx.rules import RULES, RULES_BY_OP


def test_every_claimed_op_has_a_tvm_converter() -> None:
    """...or is rewritten into claimed operators before conversion (LSTM, GRU: unrolled)."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    from npuc.frontend.fixups.unroll_recurrent import RECURRENT_OPS

    convert_map = _get_convert_map()
    missing = sorted(
        r.op_type for r in RULES if r.op_type not in convert_map and r.op_type not in RECURRENT_OPS
    )
    assert missing == []


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.op_type)
def test_claimed_opsets_exist_in_onnx(rule: OpRule) -> None:
    """The op exists in the default domain at the start of its claimed range."""
    schema = onnx.defs.get_schema(rule.op_type, rule.since_opset, "")
    assert schema.since_version <= rule.since_opset
    assert rule.until_opset <= onnx.defs.onnx_opset_version()


def test_one_rule_per_op_and_rule_texts() -> None:
    assert len(RULES_BY_OP) == len(RULES)
    for rule in RULES:
        assert rule.rule_text().endswith(".") or rule.rule_text().endswith(")")


def test_supported_ops_doc_is_generated_from_the_registry() -> None:
    from tools.gen_supported_ops import DOC_PATH, render

    assert DOC_PATH.read_text(encoding="utf-8") == render(), (
        "docs/supported_ops.md is stale: run python tools/gen_supported_ops.py"
    )
