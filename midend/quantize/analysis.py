"""Accuracy analysis of a quantized model, layer by layer, on the integer executor.

For every layer (graph node, named as in the per-layer config) and every
graph input, :func:`analyze` measures the error against the float model
(:mod:`.analysis_metrics`: cosine, SQNR in dB, max abs error) in these
columns:

``accumulated``
    the integer executor's tensor (dequantized) vs the float executor's: the
    quantized model up to and including this layer;
``isolated``
    this layer alone: its integer form fed the float model's inputs,
    quantized with the layer's input :class:`~.qparams.QParams`, vs the float
    output (for the first layer it equals ``accumulated``);
``weights_only`` / ``activations_only``
    the fake-quant executor (:mod:`.fakequant_exec`) with only weights or
    only activations quantized vs float (AIMET's separation);
``fake_quant``
    the full fake-quant executor vs float;
``fake_vs_integer``
    the integer result vs the fake-quant one, both accumulated (where the
    float simulation drifts from the datapath);
``fake_vs_integer_isolated``
    the same for this layer alone, both fed the float model's inputs (the
    layer's own disagreement: multiplier error, LUT sampling, rounding).

A layer is *flagged* when its accumulated SQNR falls by
``flag_sqnr_drop_db`` or more below the lowest accumulated SQNR of its
inputs, or its accumulated cosine by ``flag_cosine_drop`` or more (inputs
that stay float count as :data:`FLOAT_SQNR_DB`). Whole-model metrics
(:func:`~.analysis_metrics.model_metric`) run on the integer executor over
all samples; the per-layer columns over the first ``layer_samples``.
The JSON form and the renderers are in :mod:`.accuracy_report`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.core.progress import Progress

from .analysis_metrics import ErrorStats, model_metrics
from .analysis_scheme import layer_scheme, weight_warnings
from .fakequant_exec import FakeQuantExecutor
from .float_exec import FloatExecutor
from .int_exec import IntegerExecutor
from .qmodel import QuantizedModel, layer_kind

#: SQNR (dB) that a float (unquantized) input counts as when flagging drops.
FLOAT_SQNR_DB = 100.0
#: The error columns of every layer, in report order.
COLUMNS = (
    "accumulated",
    "isolated",
    "weights_only",
    "activations_only",
    "fake_quant",
    "fake_vs_integer",
    "fake_vs_integer_isolated",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisOptions:
    """What :func:`analyze` measures.

    ``metrics``: whole-model metric names (:mod:`.analysis_metrics`);
    ``layer_samples``: the per-layer columns use the first this many samples
    (0: all); ``fake_quant``: run the three fake-quant executors;
    ``batch_size``: samples run at once when the float executor says the
    graph is ``batchable`` (else one at a time; results are the same);
    ``flag_sqnr_drop_db`` / ``flag_cosine_drop``: the sudden-drop thresholds.
    """

    metrics: tuple[str, ...] = ("top1_agreement", "top5_agreement", "output_cosine")
    layer_samples: int = 0
    fake_quant: bool = True
    batch_size: int = 8
    flag_sqnr_drop_db: float = 6.0
    flag_cosine_drop: float = 0.02

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InvalidInputError(f"batch_size = {self.batch_size} must be >= 1")
        if self.layer_samples < 0:
            raise InvalidInputError(f"layer_samples = {self.layer_samples} must be >= 0")
        if self.flag_sqnr_drop_db <= 0 or self.flag_cosine_drop <= 0:
            raise InvalidInputError("the flag thresholds must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerReport:
    """One layer's (or graph input's) row: scheme, error columns and flag.

    ``errors`` maps each of :data:`COLUMNS` that was measured to
    ``{"cosine", "sqnr_db", "max_abs_error"}``; ``scheme`` holds the chosen
    storage type, modes, strategies, scale, zero point and range;
    ``flag`` is "" or the reason the layer was flagged; ``source`` holds the
    source model's node names the layer came from (ONNX), when known.
    """

    name: str
    kind: str
    run_on: str
    reason: str
    inputs: tuple[str, ...]
    scheme: Mapping[str, Any]
    errors: Mapping[str, Mapping[str, float]]
    flag: str = ""
    source: tuple[str, ...] = ()

    def metric(self, column: str, name: str) -> float:
        """``errors[column][name]``, NaN when the column was not measured."""
        return float(self.errors.get(column, {}).get(name, math.nan))


@dataclass(frozen=True, slots=True, kw_only=True)
class AccuracyReport:
    """The result of :func:`analyze`; serialized by :mod:`.accuracy_report`."""

    samples: int
    layer_samples: int
    layers: tuple[LayerReport, ...]
    model_metrics: Mapping[str, Mapping[str, float]]
    calibration: Mapping[str, Any] = field(default_factory=dict)
    weight_warnings: tuple[str, ...] = ()
    overflow: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def random_calibration(self) -> bool:
        return bool(self.calibration.get("is_random", False))

    def flagged(self) -> list[LayerReport]:
        return [row for row in self.layers if row.flag]

    def metric_lines(self) -> list[str]:
        """One line per whole-model metric: ``name: quantized (float f), other v``."""
        lines = []
        for name, values in self.model_metrics.items():
            parts = [f"{name}: {_short(values.get('quantized', math.nan))}"]
            if "float" in values:
                parts[0] += f" (float {_short(values['float'])})"
            parts += [
                f"{k} {_short(v)}" for k, v in values.items() if k not in ("quantized", "float")
            ]
            lines.append(", ".join(parts))
        return lines

    def worst(self, count: int = 10, column: str = "isolated") -> list[LayerReport]:
        """The ``count`` integer layers with the lowest SQNR in ``column`` (ties by name)."""
        rows = [r for r in self.layers if r.run_on == "npu" and column in r.errors]
        rows.sort(key=lambda r: (_finite(r.metric(column, "sqnr_db")), r.name))
        return rows[:count]


def _join(group: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Samples of batch 1 as one batch: every input joined along axis 0."""
    return {name: np.concatenate([np.asarray(s[name]) for s in group]) for name in group[0]}


def _rows(outputs: list[np.ndarray]) -> np.ndarray:
    """Per-sample outputs joined along their batch axis (stacked when they are scalars)."""
    return np.concatenate(outputs) if outputs[0].ndim else np.stack(outputs)


def _short(x: float) -> str:
    return f"{x:.4f}" if math.isfinite(x) else str(x)


def _finite(x: float) -> float:
    return FLOAT_SQNR_DB * 10 if math.isnan(x) or x == math.inf else x


class _Collector:
    """Runs the executors over samples and accumulates every column."""

    def __init__(
        self, model: QuantizedModel, fx: FloatExecutor, ix: IntegerExecutor, fake_quant: bool
    ) -> None:
        self.model = model
        self.fx = fx
        self.ix = ix
        self.fakes: dict[str, FakeQuantExecutor] = {}
        if fake_quant:
            for column, w, a in (
                ("fake_quant", True, True),
                ("weights_only", True, False),
                ("activations_only", False, True),
            ):
                self.fakes[column] = FakeQuantExecutor(model, fx, weights=w, activations=a)
        self.names = [n for n, _ in model.graph.inputs] + [n.name for n in model.graph.nodes]
        self.stats = {c: {n: ErrorStats() for n in self.names} for c in COLUMNS}
        self.float_outputs: list[np.ndarray] = []
        self.batch = 1
        self.quant_outputs: list[np.ndarray] = []

    def _add(self, column: str, name: str, reference: Any, candidate: Any) -> None:
        """The batch of one tensor; tuple-valued (CPU multi-output) nodes are skipped."""
        if isinstance(reference, np.ndarray) and np.shape(candidate) == reference.shape:
            self.stats[column][name].add(reference, candidate, self.batch)

    def add(self, feeds: Mapping[str, np.ndarray], per_layer: bool, batch: int = 1) -> None:
        """Run one batch (``batch`` samples joined along axis 0) through every executor."""
        self.batch = batch
        graph = self.model.graph
        floats = self.fx.run(feeds)
        ints = self.ix.run(feeds)
        out = graph.outputs[0]
        self.float_outputs.append(np.asarray(floats[out], np.float32))
        self.quant_outputs.append(np.asarray(self.ix.as_float(ints[out]), np.float32))
        if not per_layer:
            return
        deq = {n: self.ix.as_float(ints[n]) for n in self.names}
        for name in self.names:
            self._add("accumulated", name, floats[name], deq[name])
        for name, _ in graph.inputs:
            self._add("isolated", name, floats[name], deq[name])
        full = self.fakes.get("fake_quant")
        for node in graph.nodes:
            alone = self.ix.as_float(self.ix.run_node(node, floats))
            self._add("isolated", node.name, floats[node.name], alone)
            if full is not None:
                fake_alone = full.run_node(node, floats)
                self._add("fake_vs_integer_isolated", node.name, fake_alone, alone)
        for column, executor in self.fakes.items():
            fake = executor.run(feeds)
            for name in self.names:
                self._add(column, name, floats[name], fake[name])
                if column == "fake_quant":
                    self._add("fake_vs_integer", name, fake[name], deq[name])


def _flags(
    model: QuantizedModel, errors: Mapping[str, Mapping[str, Mapping[str, float]]], opts: Any
) -> dict[str, str]:
    """Layer name -> reason, for sudden accumulated drops (module docstring)."""
    flags: dict[str, str] = {}
    acc = {name: cols["accumulated"] for name, cols in errors.items() if "accumulated" in cols}
    for node in model.graph.nodes:
        if node.name not in acc or not node.inputs:
            continue

        def sqnr(name: str) -> float:
            return min(FLOAT_SQNR_DB, acc[name]["sqnr_db"]) if name in acc else FLOAT_SQNR_DB

        before_db = min(sqnr(n) for n in node.inputs)
        before_cos = min(acc[n]["cosine"] if n in acc else 1.0 for n in node.inputs)
        after_db = min(FLOAT_SQNR_DB, acc[node.name]["sqnr_db"])
        after_cos = acc[node.name]["cosine"]
        reasons = []
        if before_db - after_db >= opts.flag_sqnr_drop_db:
            reasons.append(f"SQNR {before_db:.1f} -> {after_db:.1f} dB")
        if before_cos - after_cos >= opts.flag_cosine_drop:
            reasons.append(f"cosine {before_cos:.4f} -> {after_cos:.4f}")
        if reasons:
            flags[node.name] = "accumulated " + ", ".join(reasons)
    return flags


def analyze(
    model: QuantizedModel,
    samples: Iterable[Mapping[str, np.ndarray]],
    *,
    options: AnalysisOptions | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    float_executor: FloatExecutor | None = None,
    integer_executor: IntegerExecutor | None = None,
    total: int = 1,
    show_progress: bool = False,
) -> AccuracyReport:
    """Measure a quantized model against its float graph (module docstring).

    Parameters
    ----------
    model
        The quantized model.
    samples
        Evaluation samples, each ``{input name: float array of the input's
        shape}`` (keep them disjoint from the calibration samples).
    options
        What to measure; defaults to :class:`AnalysisOptions`.
    labels
        Class index per sample, for ``top<k>_accuracy`` metrics.
    float_executor, integer_executor
        Executors to reuse (compiled CPU fallbacks are cached on them).
    total, show_progress
        Progress bar length and switch.

    Raises
    ------
    InvalidInputError
        No samples, a sample with a missing input or wrong shape, an unknown
        metric or a failing plugin.
    """
    opts = options or AnalysisOptions()
    fx = float_executor or (integer_executor.float if integer_executor else None)
    fx = fx or FloatExecutor(model.graph)
    ix = integer_executor or IntegerExecutor(model, fx)
    collector = _Collector(model, fx, ix, opts.fake_quant)
    batch = opts.batch_size if getattr(fx, "batchable", False) else 1
    seen = 0
    group: list[Mapping[str, np.ndarray]] = []

    def flush() -> None:
        nonlocal seen
        if group:
            feeds = group[0] if len(group) == 1 else _join(group)
            per_layer = opts.layer_samples == 0 or seen < opts.layer_samples
            collector.add(feeds, per_layer, len(group))
            seen += len(group)
            group.clear()

    with Progress(total, "analysing", enabled=None if show_progress else False) as bar:
        for feeds in samples:
            group.append(feeds)
            if len(group) == batch or seen + len(group) == opts.layer_samples:
                flush()
            bar.step(f"sample {seen + len(group)}")
        flush()
    if seen == 0:
        raise InvalidInputError(
            "the accuracy analysis got no samples", hint="pass at least one evaluation sample"
        )
    label_array = None if labels is None else np.asarray(labels, np.int64)
    metrics = model_metrics(
        opts.metrics,
        _rows(collector.float_outputs),
        _rows(collector.quant_outputs),
        label_array,
    )
    errors = {
        name: {
            c: collector.stats[c][name].to_json()
            for c in COLUMNS
            if collector.stats[c][name].samples
        }
        for name in collector.names
    }
    flags = _flags(model, errors, opts)
    rows = [
        LayerReport(
            name=name, kind="input", run_on="input", reason="", inputs=(),
            scheme=layer_scheme(model, name), errors=errors[name],
        )
        for name, _ in model.graph.inputs
    ]  # fmt: skip
    for node in model.graph.nodes:
        layer = model.layers[node.name]
        rows.append(
            LayerReport(
                name=node.name, kind=layer_kind(node), run_on=layer.run_on, reason=layer.reason,
                inputs=tuple(node.inputs), scheme=layer_scheme(model, node.name),
                errors=errors[node.name], flag=flags.get(node.name, ""),
            )
        )  # fmt: skip
    return AccuracyReport(
        samples=seen,
        layer_samples=min(seen, opts.layer_samples or seen),
        layers=tuple(rows),
        model_metrics=metrics,
        calibration=dict(model.calibration),
        weight_warnings=tuple(weight_warnings(model)),
        overflow=tuple(sorted(ix.overflow)),
        options={
            "metrics": list(opts.metrics),
            "flag_sqnr_drop_db": opts.flag_sqnr_drop_db,
            "flag_cosine_drop": opts.flag_cosine_drop,
            "fake_quant": opts.fake_quant,
        },
    )
