"""The accuracy report's files and terminal summary: JSON, one HTML page, the ten worst layers.

:func:`write_report` writes ``report.json`` (:func:`report_to_json`; read
back with :func:`report_from_json`) and ``report.html`` (one self-contained
page, :mod:`.accuracy_html`) into a directory; :func:`print_summary` prints
the whole-model metrics, the ten worst integer layers by isolated SQNR,
the flagged layers and a warning when calibration was random.

JSON layout (``format`` = ``"npuc-accuracy-report"``, ``version`` = 1)::

    {"samples", "layer_samples", "random_calibration", "calibration",
     "model_metrics": {metric: {"quantized": x, "float"?: y}},
     "weight_warnings": [str], "overflow": [layer], "options": {...},
     "flagged": [layer],
     "layers": [{"name", "kind", "run_on", "reason", "inputs", "scheme",
                 "errors": {column: {"cosine", "sqnr_db", "max_abs_error"}},
                 "flag"}]}

Non-finite numbers (an exact layer's SQNR is ``inf``) are written as the
strings ``"inf"``, ``"-inf"``, ``"nan"`` so the file is strict JSON.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from npuc.core.errors import InvalidInputError

from .analysis import AccuracyReport, LayerReport

FORMAT = "npuc-accuracy-report"
VERSION = 1


def _num(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars, tuples and non-finite floats made strict-JSON."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
        if not isinstance(value, (int, float)):
            return str(value)
    if isinstance(value, float):
        return _num(value)
    return str(value)


def _errors_from(errors: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    return {c: {k: float(v) for k, v in m.items()} for c, m in errors.items()}


def report_to_json(report: AccuracyReport) -> dict[str, Any]:
    """The report as a strict-JSON dict (module docstring)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "samples": report.samples,
        "layer_samples": report.layer_samples,
        "random_calibration": report.random_calibration,
        "calibration": _jsonable(report.calibration),
        "model_metrics": _jsonable(report.model_metrics),
        "weight_warnings": list(report.weight_warnings),
        "overflow": list(report.overflow),
        "options": _jsonable(report.options),
        "flagged": [row.name for row in report.flagged()],
        "layers": [
            {
                "name": row.name,
                "kind": row.kind,
                "run_on": row.run_on,
                "reason": row.reason,
                "inputs": list(row.inputs),
                "scheme": _jsonable(row.scheme),
                "errors": _jsonable(row.errors),
                "flag": row.flag,
                "source": list(row.source),
            }
            for row in report.layers
        ],
    }


def report_from_json(data: Mapping[str, Any], source: str = "report") -> AccuracyReport:
    """An :class:`~.analysis.AccuracyReport` from :func:`report_to_json`'s dict.

    Raises
    ------
    InvalidInputError
        Not an npuc accuracy report, another version, or a missing field
        (``source`` names the file in the message).
    """
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise InvalidInputError(
            f"{source}: not an npuc accuracy report (format {FORMAT!r} version {VERSION})"
        )
    try:
        layers = tuple(
            LayerReport(
                name=row["name"],
                kind=row["kind"],
                run_on=row["run_on"],
                reason=row["reason"],
                inputs=tuple(row["inputs"]),
                scheme=dict(row["scheme"]),
                errors=_errors_from(row["errors"]),
                flag=row["flag"],
                source=tuple(row.get("source", ())),
            )
            for row in data["layers"]
        )
        return AccuracyReport(
            samples=int(data["samples"]),
            layer_samples=int(data["layer_samples"]),
            layers=layers,
            model_metrics={
                k: {n: float(v) for n, v in m.items()} for k, m in data["model_metrics"].items()
            },
            calibration=dict(data["calibration"]),
            weight_warnings=tuple(data["weight_warnings"]),
            overflow=tuple(data["overflow"]),
            options=dict(data["options"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidInputError(f"{source}: malformed accuracy report ({err!r})") from err


def read_report(path: str | Path) -> AccuracyReport:
    """Read ``report.json`` written by :func:`write_report`.

    Raises
    ------
    InvalidInputError
        The file is missing, not JSON, or not an accuracy report.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"cannot read accuracy report {str(path)!r}: {err}") from err
    return report_from_json(data, str(path))


def write_report(report: AccuracyReport, directory: str | Path) -> dict[str, Path]:
    """Write ``report.json`` and ``report.html`` into ``directory`` (created if needed).

    Returns ``{"json": path, "html": path}``.

    Raises
    ------
    InvalidInputError
        The directory cannot be created or written.
    """
    from .accuracy_html import render_html

    out = Path(directory)
    paths = {"json": out / "report.json", "html": out / "report.html"}
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths["json"].write_text(json.dumps(report_to_json(report), indent=1) + "\n")
        paths["html"].write_text(render_html(report), encoding="utf-8")
    except OSError as err:
        raise InvalidInputError(
            f"cannot write the accuracy report to {str(out)!r}: {err.strerror or err}",
            hint="pass a writable directory to --report",
        ) from err
    return paths


def _fmt(x: float, digits: int = 2) -> str:
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "exact" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def print_summary(report: AccuracyReport, *, count: int = 10, file: Any = None) -> None:
    """Print the terminal summary (module docstring) to ``file`` (stdout by default)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, highlight=False, width=140 if file is not None else None)
    if report.random_calibration:
        console.print(
            "[bold red]warning:[/] calibrated on random data: these numbers do not "
            "describe real inputs"
        )
    console.print(
        f"accuracy on the integer executor, {report.samples} sample(s) "
        f"({report.layer_samples} per layer): " + "; ".join(report.metric_lines())
    )
    table = Table(title=f"the {count} worst integer layers (by isolated SQNR)")
    # SQNR columns in dB: accumulated, isolated, weights only, activations only,
    # and the isolated integer result against fake-quant.
    rows = report.worst(count)
    named = any(row.source for row in rows)  # the source model's node names (ONNX)
    headers = ("layer", *(("source node",) if named else ()), "kind", "acc cos", "acc dB",
               "iso dB", "W dB", "A dB", "FQ/int", "flag")  # fmt: skip
    for header in headers:
        text = header in ("layer", "source node", "kind", "flag")
        table.add_column(header, justify="left" if text else "right", no_wrap=text)
    for row in rows:
        table.add_row(
            row.name,
            *((", ".join(row.source) or "-",) if named else ()),
            row.kind,
            _fmt(row.metric("accumulated", "cosine"), 4),
            _fmt(row.metric("accumulated", "sqnr_db")),
            _fmt(row.metric("isolated", "sqnr_db")),
            _fmt(row.metric("weights_only", "sqnr_db")),
            _fmt(row.metric("activations_only", "sqnr_db")),
            _fmt(row.metric("fake_vs_integer_isolated", "sqnr_db")),
            "yes" if row.flag else "",
        )
    console.print(table)
    flagged = report.flagged()
    if flagged:
        console.print(f"{len(flagged)} layer(s) flagged for a sudden drop:")
        for row in flagged:
            source = f" ({', '.join(row.source)})" if row.source else ""
            console.print(f"  {row.name}{source}: {row.flag}")
    if report.weight_warnings:
        console.print(f"{len(report.weight_warnings)} weight-outlier warning(s) (see the report)")
    if report.overflow:
        console.print(f"[bold red]accumulator overflow[/] in: {', '.join(report.overflow)}")


def summary_text(report: AccuracyReport, *, count: int = 10) -> str:
    """:func:`print_summary` as a string (no colours)."""
    buffer = io.StringIO()
    print_summary(report, count=count, file=buffer)
    return buffer.getvalue()
