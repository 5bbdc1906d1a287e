"""The accuracy report's JSON, HTML page and terminal summary on the tiny generated model."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from npuc.core.errors import InvalidInputError
from npuc.midend.quantize.accuracy_report import (
    read_report,
    report_from_json,
    report_to_json,
    summary_text,
    write_report,
)
from npuc.midend.quantize.analysis import AccuracyReport, AnalysisOptions, analyze
from tests.midend.quantize.tiny_model import samples, tiny_graph, tiny_quantized


class _Page(HTMLParser):
    """Collects the text, tags and image sources of a page; fails on unbalanced tables."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.images: list[str] = []
        self.depth = {"table": 0, "html": 0}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.depth:
            self.depth[tag] += 1
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        if tag in ("script", "link"):
            raise AssertionError(f"the page references <{tag}>: it must be self-contained")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.depth:
            self.depth[tag] -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _report(is_random: bool) -> AccuracyReport:
    _, fx = tiny_graph()
    return analyze(
        tiny_quantized(8, is_random),
        samples(3, seed=5),
        options=AnalysisOptions(flag_sqnr_drop_db=3.0),
        float_executor=fx,
    )


@pytest.fixture(scope="module")
def report() -> AccuracyReport:
    return _report(False)


def test_html_parses_and_names_every_layer(report: AccuracyReport, tmp_path: Path) -> None:
    paths = write_report(report, tmp_path / "rep")
    page = _Page()
    page.feed(paths["html"].read_text(encoding="utf-8"))
    page.close()
    assert page.depth == {"table": 0, "html": 0}
    text = " ".join(page.text)
    graph, _ = tiny_graph()
    for node in graph.nodes:
        assert node.name in text
    assert len(page.images) == 2 and all(
        s.startswith("data:image/png;base64,") for s in page.images
    )
    assert "RANDOM" not in text
    for row in report.flagged():
        assert row.flag in text
    for warning in report.weight_warnings:
        assert warning in text


def test_random_calibration_is_marked(tmp_path: Path) -> None:
    noisy = _report(True)
    assert noisy.random_calibration
    html = write_report(noisy, tmp_path)["html"].read_text(encoding="utf-8")
    assert "Calibrated on RANDOM data" in html
    assert "random data" in summary_text(noisy)


def test_json_round_trips(report: AccuracyReport, tmp_path: Path) -> None:
    path = write_report(report, tmp_path)["json"]
    text = path.read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    back = read_report(path)
    assert json.dumps(report_to_json(back)) == json.dumps(report_to_json(report))
    assert [r.name for r in back.worst(3)] == [r.name for r in report.worst(3)]
    assert back.flagged() == report.flagged()


def test_json_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "other.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(InvalidInputError, match=r"other\.json: not an npuc accuracy report"):
        read_report(bad)
    with pytest.raises(InvalidInputError, match="malformed"):
        report_from_json({"format": "npuc-accuracy-report", "version": 1}, "r.json")
    with pytest.raises(InvalidInputError, match="cannot read"):
        read_report(tmp_path / "missing.json")


def test_summary_lists_the_worst_layers(report: AccuracyReport) -> None:
    text = summary_text(report, count=3)
    worst = report.worst(3)
    assert len(worst) == 3
    for row in worst:
        assert row.name in text
    sqnr = [row.metric("isolated", "sqnr_db") for row in worst]
    assert sqnr == sorted(sqnr)
    assert "top1_agreement" in text
