"""Per-layer accuracy analysis on a tiny generated model: exact properties of the columns."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from npuc.core.errors import InvalidInputError
from npuc.midend.quantize.analysis import (
    FLOAT_SQNR_DB,
    AccuracyReport,
    AnalysisOptions,
    LayerReport,
    analyze,
)
from npuc.midend.quantize.analysis_dump import DUMP_FILES, dump_tensors
from npuc.midend.quantize.fakequant_exec import FakeQuantExecutor
from npuc.midend.quantize.int_exec import IntegerExecutor
from tests.midend.quantize.tiny_model import samples, tiny_graph, tiny_quantized


def plugin_metric(f: np.ndarray, q: np.ndarray, labels: np.ndarray | None) -> dict[str, float]:
    """A custom metric for the ``module:function`` plugin test: the worst output cosine."""
    rows = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(f, q, strict=True)]
    return {"quantized": min(rows), "samples": float(len(rows))}


@pytest.fixture(scope="module")
def report8() -> AccuracyReport:
    _, fx = tiny_graph()
    options = AnalysisOptions(
        metrics=("top1_agreement", "top1_accuracy", "output_cosine",
                 "tests.midend.quantize.test_analysis:plugin_metric"),
    )  # fmt: skip
    labels = np.zeros(4, np.int64)
    return analyze(tiny_quantized(8), samples(4, seed=2), options=options, labels=labels,
                   float_executor=fx)  # fmt: skip


def _row(report: AccuracyReport, name: str) -> LayerReport:
    return next(r for r in report.layers if r.name == name)


def test_every_layer_and_input_has_a_row(report8: AccuracyReport) -> None:
    graph, _ = tiny_graph()
    assert [r.name for r in report8.layers] == ["x"] + [n.name for n in graph.nodes]
    assert report8.samples == 4 and report8.layer_samples == 4


def test_first_layer_isolated_equals_accumulated(report8: AccuracyReport) -> None:
    first = _row(report8, "conv2d_0")
    assert first.errors["isolated"] == first.errors["accumulated"]
    assert first.metric("accumulated", "sqnr_db") < _row(report8, "x").metric(
        "accumulated", "sqnr_db"
    )


def test_pass_through_layers_are_exact(report8: AccuracyReport) -> None:
    # A reshape's integer output is its input's: the same accumulated error.
    reshape, pool = _row(report8, "reshape_0"), _row(report8, "global_avg_pool_0")
    for metric in ("cosine", "sqnr_db", "max_abs_error"):
        assert reshape.metric("accumulated", metric) == pool.metric("accumulated", metric)
    # Fake-quant and integer agree exactly on data movement fed the same inputs.
    for name in ("reshape_0", "max_pool2d_0"):
        alone = _row(report8, name).errors["fake_vs_integer_isolated"]
        assert alone["cosine"] == 1.0 and alone["max_abs_error"] == 0.0
        assert alone["sqnr_db"] == math.inf


def test_weight_and_activation_columns(report8: AccuracyReport) -> None:
    x = _row(report8, "x")
    assert x.errors["weights_only"]["sqnr_db"] == math.inf  # inputs are not weights
    assert x.errors["activations_only"] == x.errors["accumulated"]
    # A reshape adds no error of its own in any column.
    reshape, pool = _row(report8, "reshape_0"), _row(report8, "global_avg_pool_0")
    for column in ("weights_only", "activations_only", "fake_quant"):
        assert reshape.errors[column] == pool.errors[column]
    conv = _row(report8, "conv2d_0")
    assert conv.metric("weights_only", "sqnr_db") < math.inf
    assert conv.metric("fake_quant", "sqnr_db") < conv.metric("weights_only", "sqnr_db")


def test_fewer_bits_lower_sqnr(report8: AccuracyReport) -> None:
    _, fx = tiny_graph()
    report16 = analyze(tiny_quantized(16), samples(4, seed=2), float_executor=fx)
    for name in ("conv2d_0", "add_0", "dense_0"):
        for column in ("accumulated", "isolated", "activations_only"):
            assert _row(report16, name).metric(column, "sqnr_db") > _row(report8, name).metric(
                column, "sqnr_db"
            ), (name, column)
    assert _row(report16, "dense_0").metric("accumulated", "cosine") > 0.999


def test_model_metrics_and_plugin(report8: AccuracyReport) -> None:
    metrics = report8.model_metrics
    assert 0.0 <= metrics["top1_agreement"]["quantized"] <= 1.0
    assert set(metrics["top1_accuracy"]) == {"float", "quantized"}
    plugin = metrics["tests.midend.quantize.test_analysis:plugin_metric"]
    assert plugin["samples"] == 4.0
    assert plugin["quantized"] <= metrics["output_cosine"]["quantized"] + 1e-12
    assert metrics["output_cosine"]["quantized"] == pytest.approx(
        _row(report8, "dense_0").metric("accumulated", "cosine"), abs=1e-12
    )


def test_fake_quant_switches() -> None:
    model = tiny_quantized(8)
    _, fx = tiny_graph()
    feeds = next(samples(1, seed=3))
    floats = fx.run(feeds)
    weights = FakeQuantExecutor(model, fx, weights=True, activations=False).run(feeds)
    np.testing.assert_array_equal(weights["x"], floats["x"])
    assert not np.array_equal(weights["conv2d_0"], floats["conv2d_0"])
    acts = FakeQuantExecutor(model, fx, weights=False, activations=True).run(feeds)
    q = model.tensors["x"]
    np.testing.assert_array_equal(acts["x"], q.dequantize(q.quantize(floats["x"])).astype("f4"))
    ints = IntegerExecutor(model, fx).run(feeds)
    full = FakeQuantExecutor(model, fx).run(feeds)
    np.testing.assert_array_equal(full["x"], ints["x"].dequantize())
    with pytest.raises(InvalidInputError, match="float executor"):
        FakeQuantExecutor(model, fx, weights=False, activations=False)


def test_bad_requests_are_clear_errors() -> None:
    model = tiny_quantized(8)
    with pytest.raises(InvalidInputError, match="no samples"):
        analyze(model, [])
    with pytest.raises(InvalidInputError, match="unknown metric 'top1'"):
        analyze(model, samples(1, 0), options=AnalysisOptions(metrics=("top1",), fake_quant=False))
    with pytest.raises(InvalidInputError, match="needs labels"):
        analyze(model, samples(1, 0), options=AnalysisOptions(metrics=("top5_accuracy",)))
    with pytest.raises(InvalidInputError, match="no_such_module"):
        analyze(model, samples(1, 0), options=AnalysisOptions(metrics=("no_such_module:f",)))


def test_dump_writes_every_tensor(tmp_path: Path) -> None:
    model = tiny_quantized(8)
    graph, fx = tiny_graph()
    feeds = next(samples(1, seed=4))
    paths = dump_tensors(model, feeds, tmp_path / "dump", float_executor=fx)
    assert sorted(p.name for p in paths) == sorted(DUMP_FILES)
    names = {"x"} | {n.name for n in graph.nodes}
    ints = IntegerExecutor(model, fx).run(feeds)
    with (
        np.load(tmp_path / "dump" / "integer.npz") as deq,
        np.load(tmp_path / "dump" / "integer_stored.npz") as stored,
        np.load(tmp_path / "dump" / "float.npz") as floats,
    ):
        assert set(deq.files) == names == set(floats.files)
        assert set(stored.files) == set(model.tensors) & names
        np.testing.assert_array_equal(floats["dense_0"], fx.run(feeds)["dense_0"])
        np.testing.assert_array_equal(stored["conv2d_0"], ints["conv2d_0"].values.astype("i1"))
        np.testing.assert_array_equal(deq["conv2d_0"], ints["conv2d_0"].dequantize())


def test_flags_follow_the_thresholds(report8: AccuracyReport) -> None:
    graph, fx = tiny_graph()
    acc = {r.name: r.errors["accumulated"] for r in report8.layers}
    for node in graph.nodes:
        before = min(min(FLOAT_SQNR_DB, acc[n]["sqnr_db"]) for n in node.inputs)
        after = min(FLOAT_SQNR_DB, acc[node.name]["sqnr_db"])
        cos_drop = min(acc[n]["cosine"] for n in node.inputs) - acc[node.name]["cosine"]
        expected = before - after >= 6.0 or cos_drop >= 0.02
        assert bool(_row(report8, node.name).flag) == expected, node.name
    quiet = AnalysisOptions(fake_quant=False, flag_sqnr_drop_db=1000.0, flag_cosine_drop=2.0)
    report = analyze(tiny_quantized(8), samples(2, seed=2), options=quiet, float_executor=fx)
    assert report.flagged() == []
    assert "weights_only" not in _row(report, "conv2d_0").errors
    eager = AnalysisOptions(fake_quant=False, flag_sqnr_drop_db=1e-6)
    report = analyze(tiny_quantized(8), samples(2, seed=2), options=eager, float_executor=fx)
    assert "conv2d_0" in {r.name for r in report.flagged()}


def test_batched_equals_one_at_a_time() -> None:
    _, fx = tiny_graph()
    model = tiny_quantized(8)
    reports = [
        analyze(model, samples(5, seed=6), options=AnalysisOptions(batch_size=b, layer_samples=3),
                float_executor=fx)
        for b in (1, 2)
    ]  # fmt: skip
    one, batched = reports
    assert (one.samples, one.layer_samples) == (batched.samples, batched.layer_samples) == (5, 3)
    for name, values in one.model_metrics.items():
        assert values == pytest.approx(dict(batched.model_metrics[name]), rel=1e-9), name
    for a, b in zip(one.layers, batched.layers, strict=True):
        for column, values in a.errors.items():
            assert values == pytest.approx(dict(b.errors[column]), rel=1e-9), (a.name, column)
