"""onnx's node conformance cases through npuc's CPU path (frontend, midend, backend, runtime).

Each case compiles its model with :class:`tools.conformance.backend.NpucCpuBackend`
and compares every output with onnx's expected output: same count, shape and
dtype, and ``np.testing.assert_allclose`` with onnx's runner tolerances (the
case's rtol 1e-3 / atol 1e-7). Cases listed in expected_failures.toml must
fail exactly as listed (they are reported as xfail); a listed case that passes
fails the test, so the list only shrinks.

The default tier runs :func:`tools.conformance.selection.default_subset`; the
``slow`` tier runs every claimed case (``tools/conformance_report.py`` runs
the same set in parallel and writes docs/conformance.md).
"""

from __future__ import annotations

import pytest

from tools.conformance.backend import NpucCpuBackend
from tools.conformance.catalog import CaseRecord, build_manifest, load_manifest
from tools.conformance.expectations import judge, load_expected_failures
from tools.conformance.runner import run_case
from tools.conformance.selection import claimed_cases, claimed_ops, default_subset

MANIFEST = load_manifest()
EXPECTED = load_expected_failures()
CLAIMED = claimed_cases(MANIFEST, claimed_ops())
DEFAULT = default_subset(CLAIMED, EXPECTED)

# Lower bounds that catch an empty or collapsed selection (a renamed registry, a
# manifest for another onnx). Seen with onnx 1.23.2 and npuc's 48 claimed operators:
# 461 claimed cases, 121 in the default tier.
MIN_CLAIMED_CASES = 300
MIN_DEFAULT_CASES = 80


def _check(record: CaseRecord) -> None:
    listed = EXPECTED.get(record.name)
    try:
        run_case(record, NpucCpuBackend)
    except Exception as exc:
        verdict = judge(record.name, exc, listed)
        if verdict.status == "xfail":
            pytest.xfail(verdict.message)
        raise AssertionError(verdict.message) from exc
    verdict = judge(record.name, None, listed)
    assert verdict.status == "passed", verdict.message


def test_selection_sizes() -> None:
    """Guard against collecting (nearly) nothing."""
    assert len(MANIFEST) >= 1800, f"manifest lists {len(MANIFEST)} cases"
    assert len(CLAIMED) >= MIN_CLAIMED_CASES, f"{len(CLAIMED)} claimed cases"
    assert len(DEFAULT) >= MIN_DEFAULT_CASES, f"{len(DEFAULT)} default-tier cases"
    assert {r.op for r in DEFAULT} == {r.op for r in CLAIMED}, "an op has no default case"


def test_expected_failures_are_claimed_cases() -> None:
    """Every listed case exists and is claimed (a stale entry must be removed)."""
    claimed = {r.name for r in CLAIMED}
    stale = sorted(set(EXPECTED) - claimed)
    assert not stale, f"expected_failures.toml lists unclaimed or unknown cases: {stale}"


@pytest.mark.parametrize("record", DEFAULT, ids=lambda r: r.name)
def test_node_case(record: CaseRecord) -> None:
    _check(record)


@pytest.mark.slow
@pytest.mark.parametrize("record", [r for r in CLAIMED if r not in DEFAULT], ids=lambda r: r.name)
def test_node_case_full(record: CaseRecord) -> None:
    _check(record)


@pytest.mark.slow
def test_manifest_matches_onnx() -> None:
    """The checked-in manifest is exactly what the installed onnx defines."""
    import multiprocessing

    # build_manifest needs a process that has not imported onnx's case modules.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        fresh = pool.apply(build_manifest)
    assert fresh == MANIFEST, "regenerate: python tools/conformance_report.py --update-manifest"
