"""Error statistics of one tensor over samples, and whole-model metrics with plugins.

Per tensor (:class:`ErrorStats`), comparing a reference ``r`` (the float
model's tensor) with a candidate ``c`` (the integer result dequantized, or a
fake-quant tensor) over N samples:

- ``cosine``: mean over samples of ``<r, c> / (|r| |c|)`` (1.0 when both are
  zero, 0.0 when only one is);
- ``sqnr_db``: ``10 log10(sum r^2 / sum (r - c)^2)`` pooled over all
  samples and elements (``inf`` when ``c == r`` exactly, ``-inf`` when ``r``
  is zero everywhere and ``c`` is not);
- ``max_abs_error``: ``max |r - c|`` over all samples, in the tensor's units.

Whole-model metrics (:func:`model_metric`) compare the first graph output of
the float model with the quantized one over all samples:
``top<k>_agreement`` (the quantized top-1 class is among the float top-k;
``top1_agreement`` is the usual "top-1 agreement"), ``top<k>_accuracy``
(needs labels; reports float and quantized), ``output_cosine``,
``output_sqnr`` and ``module:function`` plugins.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuc.core.errors import InvalidInputError

#: A plugin metric: ``fn(float_outputs, quantized_outputs, labels) -> float | dict``.
#: Outputs are ``(N, ...)`` float arrays of the first graph output, the samples'
#: batch axes joined (N rows for N samples of batch 1); ``labels`` is an int
#: array ``(N,)`` or ``None``.
MetricFn = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], Any]

BUILTIN_METRICS = ("top1_agreement", "top5_agreement", "top1_accuracy", "output_cosine")


@dataclass(slots=True)
class ErrorStats:
    """Running error statistics of one tensor (module docstring); call :meth:`add` per sample."""

    samples: int = 0
    cosine_sum: float = 0.0
    signal: float = 0.0
    noise: float = 0.0
    max_abs_error: float = 0.0

    def add(self, reference: np.ndarray, candidate: np.ndarray, samples: int = 1) -> None:
        """Accumulate ``samples`` samples stacked along axis 0 (one sample by default).

        Both arrays have the same shape (any dtype); with ``samples > 1`` their
        first axis is split into that many equal rows, one per sample.
        """
        if np.shape(reference) != np.shape(candidate):
            raise ValueError(f"shapes differ: {np.shape(reference)} vs {np.shape(candidate)}")
        r = np.asarray(reference, np.float64).reshape(samples, -1)
        c = np.asarray(candidate, np.float64).reshape(samples, -1)
        err = r - c
        # Row-wise sums without BLAS (its threads spin on a loaded machine).
        rr, cc, rc = (np.einsum("ij,ij->i", a, b) for a, b in ((r, r), (c, c), (r, c)))
        self.samples += samples
        self.cosine_sum += sum(_cosine(*row) for row in zip(rr, cc, rc, strict=True))
        self.signal += float(rr.sum())
        self.noise += float(np.einsum("ij,ij->", err, err))
        if err.size:
            self.max_abs_error = max(self.max_abs_error, float(np.max(np.abs(err))))

    @property
    def cosine(self) -> float:
        return self.cosine_sum / self.samples if self.samples else float("nan")

    @property
    def sqnr_db(self) -> float:
        return sqnr_db(self.signal, self.noise)

    def to_json(self) -> dict[str, float]:
        return {
            "cosine": self.cosine,
            "sqnr_db": self.sqnr_db,
            "max_abs_error": self.max_abs_error,
        }


def cosine(r: np.ndarray, c: np.ndarray) -> float:
    """Cosine similarity of two flat float64 arrays (1.0 if both are zero, 0.0 if one is)."""
    return _cosine(float(np.dot(r, r)), float(np.dot(c, c)), float(np.dot(r, c)))


def _cosine(rr: float, cc: float, rc: float) -> float:
    """Cosine from the sums of squares and the dot product."""
    if rr == 0.0 or cc == 0.0:
        return 1.0 if rr == cc else 0.0
    return float(np.clip(rc / math.sqrt(rr * cc), -1.0, 1.0))


def sqnr_db(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)``; ``inf`` without noise, ``-inf`` without signal."""
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _rows(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64).reshape(x.shape[0], -1)


def topk_agreement(f: np.ndarray, q: np.ndarray, k: int) -> float:
    """Fraction of samples whose quantized top-1 class is among the float top-k."""
    top_q = _rows(q).argmax(axis=1)
    top_f = np.argsort(-_rows(f), axis=1, kind="stable")[:, :k]
    return float(np.mean([t in row for t, row in zip(top_q, top_f, strict=True)]))


def topk_accuracy(x: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of samples whose label is among the top-k classes of ``x``."""
    top = np.argsort(-_rows(x), axis=1, kind="stable")[:, :k]
    return float(np.mean([int(lab) in row for lab, row in zip(labels, top, strict=True)]))


def load_plugin(spec: str) -> MetricFn:
    """The function named by ``module:function``.

    Raises
    ------
    InvalidInputError
        The module cannot be imported or has no such callable.
    """
    module_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise InvalidInputError(
            f"metric plugin {spec!r}: cannot import module {module_name!r}: {err}",
            hint="the module must be importable (on PYTHONPATH or installed)",
        ) from err
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise InvalidInputError(
            f"metric plugin {spec!r}: module {module_name!r} has no function {func_name!r}"
        )
    return fn


def model_metric(
    name: str, f: np.ndarray, q: np.ndarray, labels: np.ndarray | None
) -> dict[str, float]:
    """One whole-model metric (module docstring) as ``{"quantized": x}`` (+ ``"float"``).

    ``f``, ``q``: ``(N, ...)`` float and quantized first outputs.

    Raises
    ------
    InvalidInputError
        Unknown metric, a label metric without labels, or a plugin returning
        something other than a number or a mapping of numbers.
    """
    match = re.fullmatch(r"top(\d+)_(agreement|accuracy)", name)
    if match:
        k = int(match.group(1))
        if match.group(2) == "agreement":
            return {"quantized": topk_agreement(f, q, k)}
        if labels is None:
            raise InvalidInputError(
                f"metric {name!r} needs labels", hint="pass labels, or use top1_agreement"
            )
        if len(labels) != len(f):
            raise InvalidInputError(f"metric {name!r}: {len(labels)} labels for {len(f)} samples")
        return {"float": topk_accuracy(f, labels, k), "quantized": topk_accuracy(q, labels, k)}
    if name == "output_cosine":
        pairs = zip(_rows(f), _rows(q), strict=True)
        return {"quantized": float(np.mean([cosine(a, b) for a, b in pairs]))}
    if name == "output_sqnr":
        return {"quantized": sqnr_db(float(np.sum(_rows(f) ** 2)), float(np.sum((f - q) ** 2)))}
    if ":" in name:
        value = load_plugin(name)(f, q, labels)
        return _plugin_result(name, value)
    raise InvalidInputError(
        f"unknown metric {name!r}",
        hint="use top<k>_agreement, top<k>_accuracy, output_cosine, output_sqnr or module:function",
    )


def _plugin_result(name: str, value: Any) -> dict[str, float]:
    items = dict(value) if isinstance(value, Mapping) else {"quantized": value}
    try:
        return {str(k): float(v) for k, v in items.items()}
    except (TypeError, ValueError) as err:
        raise InvalidInputError(
            f"metric plugin {name!r} returned {value!r}",
            hint="return a number or a mapping of names to numbers",
        ) from err


def model_metrics(
    names: Sequence[str], f: np.ndarray, q: np.ndarray, labels: np.ndarray | None
) -> dict[str, dict[str, float]]:
    """Every metric in ``names`` (see :func:`model_metric`), by name."""
    return {name: model_metric(name, f, q, labels) for name in names}
