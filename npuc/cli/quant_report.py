"""The accuracy report of ``npuc quantize --report DIR`` (and ``--dump DIR``).

Numbers come from the integer executor against the float layer graph
(:func:`npuc.midend.quantize.analysis.analyze`); the report is JSON plus one
self-contained HTML page (:mod:`npuc.midend.quantize.accuracy_report`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def evaluation_samples(
    source: str, inputs: Sequence[Any], *, preprocess: Any = None, limit: int | None = None
) -> list[dict[str, np.ndarray]]:
    """Up to ``limit`` evaluation samples from ``source`` (``--eval``, ``npuc eval --data``).

    Loaded like calibration data; every error says "evaluation" and names the
    file and sample.

    Raises
    ------
    InvalidInputError
        Unreadable data, a sample that does not fit the model, or NaN/inf in a sample.
    """
    from npuc.core.errors import InvalidInputError
    from npuc.midend.quantize.calib_data import load_calibration
    from npuc.midend.quantize.calib_set import finite_samples

    try:
        data = load_calibration(source, inputs, preprocess=preprocess, limit=limit)
        return finite_samples(data, limit=limit, role="evaluation")
    except InvalidInputError as err:
        relabel = lambda text: text.replace("calibration ", "evaluation ")  # noqa: E731
        raise InvalidInputError(relabel(err.message), hint=err.hint and relabel(err.hint)) from None


def write_quant_report(
    model: Any,
    samples: Iterable[Mapping[str, np.ndarray]],
    directory: Path,
    *,
    metrics: Sequence[str] = (),
    limit: int = 32,
    disjoint: bool,
    show_progress: bool = False,
    sources: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Analyse ``model`` on up to ``limit`` samples and write the report; returns (lines, data).

    ``disjoint`` says whether the samples are separate from the calibration
    samples; the terminal lines say so when they are not. ``sources``: layer ->
    the source model's node names, shown beside npuc's layer names.
    """
    from dataclasses import replace

    from npuc.midend.quantize.accuracy_report import summary_text, write_report
    from npuc.midend.quantize.analysis import AnalysisOptions, analyze

    chosen = list(itertools.islice(samples, limit))
    options = AnalysisOptions(metrics=tuple(metrics)) if metrics else AnalysisOptions()
    report = analyze(model, chosen, options=options, total=len(chosen), show_progress=show_progress)
    if sources:
        named = tuple(
            replace(row, source=tuple(sources.get(row.name, ()))) for row in report.layers
        )
        report = replace(report, layers=named)
    paths = write_report(report, directory)
    lines = [
        f"  accuracy report: {paths['html']} ({report.samples} samples"
        + ("" if disjoint else ", the calibration samples: pass --eval for disjoint data")
        + ")"
    ]
    lines += ["  " + line for line in summary_text(report).splitlines() if line.strip()]
    data = {
        "html": str(paths["html"]),
        "json": str(paths["json"]),
        "samples": report.samples,
        "disjoint_from_calibration": disjoint,
        "model_metrics": {k: dict(v) for k, v in report.model_metrics.items()},
        "flagged": [layer.name for layer in report.flagged()],
    }
    return lines, data


def write_dump(model: Any, sample: Mapping[str, np.ndarray], directory: Path) -> list[str]:
    """``--dump DIR``: every layer's float, fake-quant and integer tensors for one sample."""
    from npuc.midend.quantize.analysis_dump import dump_tensors

    paths = dump_tensors(model, sample, directory)
    return [f"  dump: {len(paths)} file(s) in {directory}"]
