"""A lazily loaded set of calibration samples, checked against the model's inputs.

A :class:`CalibrationSet` holds one :class:`SampleRef` per sample, not the
data: iterating loads one origin (file, image, plugin item) at a time, cuts
the sample out of it, checks it and yields it. Subsets (:meth:`take`,
:meth:`split`) share the references, so calibration and evaluation sets stay
disjoint without loading anything twice.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.core.model_info import TensorInfo

from .observers import SENTINEL_ABS

#: How a sample is cut from its origin's array: the whole array, ``a[i:i+1]``
#: along the model's batch axis, or ``a[i]`` of an extra leading axis.
SliceMode = str
WHOLE, BATCH, STACKED = "whole", "batch", "stacked"


class CalibrationDataWarning(UserWarning):
    """Calibration data that makes a poor model: constant inputs, trimmed infinities."""


@dataclass(frozen=True, slots=True)
class SampleRef:
    """Where one sample comes from.

    ``origin`` names it in messages (a file path, ``random``, ``mod:fn``
    item k); ``index`` is the sample's position within the origin; ``load``
    returns the origin's arrays by input name (called once per origin while
    iterating: consecutive references with the same ``key`` share one load);
    ``mode`` says how to cut the sample out (``whole``/``batch``/``stacked``);
    ``hint`` is what to tell the user when the sample does not fit.
    """

    origin: str
    index: int
    key: str
    load: Callable[[], Mapping[str, np.ndarray]]
    mode: SliceMode = WHOLE
    hint: str | None = None

    def where(self) -> str:
        """``file.npy sample 3`` for messages."""
        return f"{self.origin} sample {self.index}"


def shape_matches(shape: Sequence[int], expected: Sequence[int | str]) -> bool:
    """True if ``shape`` fits ``expected`` (a string dimension matches any size)."""
    return len(shape) == len(expected) and all(
        isinstance(e, str) or s == e for s, e in zip(shape, expected, strict=True)
    )


def plan_array(shape: Sequence[int], info: TensorInfo, where: str) -> tuple[SliceMode, int]:
    """How many samples an array of ``shape`` holds for input ``info``, and how to cut them.

    In this order: a model batch dimension of 1 (or symbolic) and matching
    other dimensions -> ``batch`` with ``shape[0]`` samples; exactly the
    input's shape -> ``whole``, one sample; one extra leading axis ->
    ``stacked`` with ``shape[0]`` samples.

    Raises
    ------
    InvalidInputError
        ``shape`` fits none of these (the message names ``where``).
    """
    expected = info.shape
    batch_axis = bool(expected) and (expected[0] == 1 or isinstance(expected[0], str))
    if batch_axis and len(shape) == len(expected) and shape_matches(shape[1:], expected[1:]):
        return BATCH, int(shape[0])
    if shape_matches(shape, expected):
        return WHOLE, 1
    if len(shape) == len(expected) + 1 and shape_matches(shape[1:], expected):
        return STACKED, int(shape[0])
    got = "x".join(str(d) for d in shape) if shape else "scalar"
    raise InvalidInputError(
        f"{where}: input {info.name!r} has shape {got} but the model expects "
        f"{info.shape_str()} (one sample, or N samples along the batch axis)",
        hint="check the calibration data against the model's inputs (npuc inspect)",
    )


def check_dtype(dtype: np.dtype, info: TensorInfo, where: str) -> None:
    """Raise InvalidInputError unless ``dtype`` is the input's dtype."""
    if np.dtype(dtype) != np.dtype(info.dtype):
        raise InvalidInputError(
            f"{where}: input {info.name!r} is {np.dtype(dtype)} but the model expects {info.dtype}",
            hint=f"convert it, e.g. array.astype(numpy.{info.dtype})",
        )


def check_names(names: Sequence[str], inputs: Sequence[TensorInfo], where: str) -> None:
    """Raise InvalidInputError unless ``names`` are exactly the inputs' names."""
    wanted = [t.name for t in inputs]
    unknown = [n for n in names if n not in wanted]
    if unknown:
        raise InvalidInputError(
            f"{where}: array {unknown[0]!r} is not an input of the model "
            f"(its inputs: {', '.join(wanted)})",
            hint="name each array after the model input it feeds",
        )
    missing = [n for n in wanted if n not in names]
    if missing:
        raise InvalidInputError(
            f"{where}: no array for input {missing[0]!r} (the model's inputs: {', '.join(wanted)})",
            hint="give one array per model input",
        )


def check_sample(
    sample: Mapping[str, np.ndarray],
    inputs: Sequence[TensorInfo],
    where: str,
    hint: str | None = None,
) -> None:
    """Check one sample's names, shapes and dtypes against the model's inputs exactly."""
    check_names(list(sample), inputs, where)
    for info in inputs:
        value = sample[info.name]
        if not shape_matches(value.shape, info.shape):
            got = "x".join(str(d) for d in value.shape) if value.shape else "scalar"
            raise InvalidInputError(
                f"{where}: input {info.name!r} has shape {got} but the model expects "
                f"{info.shape_str()}",
                hint=hint or "check the calibration data against the model's inputs (npuc inspect)",
            )
        check_dtype(value.dtype, info, where)


def _cut(array: np.ndarray, ref: SampleRef) -> np.ndarray:
    if ref.mode == BATCH:
        return np.array(array[ref.index : ref.index + 1])
    if ref.mode == STACKED:
        return np.array(array[ref.index])
    return np.asarray(array)


@dataclass(frozen=True)
class CalibrationSet:
    """Calibration samples, loaded on demand.

    Iterating yields one ``dict[str, np.ndarray]`` per sample: every model
    input by name, each array exactly the input's shape (batch dimension
    included as the model declares it) and dtype. ``source`` is what the user
    gave; ``is_random`` marks noise (reports flag it).

    Raises (while iterating)
    ------------------------
    InvalidInputError
        A sample that cannot be read or does not fit the model; the message
        names its file (or origin) and index.
    """

    source: str
    inputs: tuple[TensorInfo, ...]
    refs: tuple[SampleRef, ...]
    is_random: bool = False

    def __len__(self) -> int:
        return len(self.refs)

    def __repr__(self) -> str:
        noise = ", random" if self.is_random else ""
        return f"CalibrationSet({self.source!r}, {len(self.refs)} samples{noise})"

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for _, sample in self.items():
            yield sample

    def items(self) -> Iterator[tuple[SampleRef, dict[str, np.ndarray]]]:
        """Like iterating, with each sample's :class:`SampleRef` (to name it in messages)."""
        key: str | None = None
        arrays: Mapping[str, np.ndarray] = {}
        for ref in self.refs:
            if ref.key != key:
                arrays, key = {}, None  # drop the previous origin before loading the next
                arrays, key = ref.load(), ref.key
            sample = {name: _cut(value, ref) for name, value in arrays.items()}
            check_sample(sample, self.inputs, ref.where(), ref.hint)
            yield ref, sample

    def check(self) -> None:
        """Load and check every sample once (without keeping them)."""
        for _ in self:
            pass

    def take(self, indices: Sequence[int]) -> CalibrationSet:
        """The samples at ``indices`` (in that order) as a new set.

        Raises
        ------
        InvalidInputError
            An index outside ``0 .. len(self) - 1``.
        """
        n = len(self.refs)
        bad = [i for i in indices if not -n <= i < n]
        if bad:
            raise InvalidInputError(
                f"calibration data {self.source}: sample {bad[0]} is out of range "
                f"(it has {n} samples)"
            )
        return replace(self, refs=tuple(self.refs[i] for i in indices))

    def split(self, *sizes: int, seed: int | None = None) -> tuple[CalibrationSet, ...]:
        """Disjoint subsets of the given sizes, e.g. ``calib, evaluate = data.split(64, 100)``.

        Consecutive samples in order, or drawn without replacement by a
        permutation with ``seed`` when given.

        Raises
        ------
        InvalidInputError
            A negative size, or more samples asked for than the set holds.
        """
        if any(s < 0 for s in sizes):
            raise InvalidInputError(f"split sizes must be >= 0, not {sizes}")
        if sum(sizes) > len(self.refs):
            raise InvalidInputError(
                f"calibration data {self.source}: {sum(sizes)} samples asked for "
                f"({' + '.join(map(str, sizes))}) but it has {len(self.refs)}",
                hint="give more samples or ask for fewer",
            )
        order = np.arange(len(self.refs))
        if seed is not None:
            order = np.random.default_rng(seed).permutation(len(self.refs))
        bounds = np.cumsum((0, *sizes))
        return tuple(self.take([int(i) for i in order[a:b]]) for a, b in itertools.pairwise(bounds))


def nonfinite(value: np.ndarray) -> str | None:
    """What is not finite in a float array (``"2 NaN, 1 infinite"``), or None if all is."""
    if not np.issubdtype(value.dtype, np.floating):
        return None
    nan = int(np.count_nonzero(np.isnan(value)))
    inf = int(np.count_nonzero(np.isinf(value)))
    parts = [f"{nan} NaN"] * bool(nan) + [f"{inf} infinite"] * bool(inf)
    return ", ".join(parts) if parts else None


def finite_samples(
    data: CalibrationSet, *, limit: int | None = None, role: str = "evaluation"
) -> list[dict[str, np.ndarray]]:
    """The first ``limit`` samples of ``data``, refusing NaN and infinite input values.

    For evaluation data: metrics over NaN/inf inputs would be meaningless
    numbers, not errors.

    Raises
    ------
    InvalidInputError
        A sample whose float input holds NaN or +-inf; the message names the
        file (or origin), the sample index and the input.
    """
    out: list[dict[str, np.ndarray]] = []
    for ref, sample in itertools.islice(data.items(), limit):
        for name, value in sample.items():
            bad = nonfinite(value)
            if bad:
                where = ref.where().replace("calibration file", f"{role} file", 1)
                raise InvalidInputError(
                    f"{where}: input {name!r} holds {bad} value(s)",
                    hint=f"clean the {role} data; metrics over them would be meaningless"
                    + ("" if role == "evaluation" else " (or pass --eval with other samples)"),
                )
        out.append(sample)
    return out


def calibration_samples(
    data: CalibrationSet, *, limit: int | None = None, trim_infinity: bool = False
) -> list[dict[str, np.ndarray]]:
    """The first ``limit`` samples of ``data``, checked before anything runs on them.

    * NaN or +-inf in a float input: an error without ``trim_infinity``; with
      it, one :class:`CalibrationDataWarning` per input naming the samples
      (those values are left out of the statistics, and bias correction
      skips the samples);
    * a float input with one value over all samples (all zeros, say): a
      :class:`CalibrationDataWarning`, since every range computed from it
      collapses to a point.

    Raises
    ------
    InvalidInputError
        NaN/inf without ``trim_infinity``; the message names the file (or
        origin), the sample index and the input.
    """
    out: list[dict[str, np.ndarray]] = []
    trimmed: dict[str, list[str]] = {}
    spans: dict[str, tuple[float, float]] = {}
    for ref, sample in itertools.islice(data.items(), limit):
        for name, value in sample.items():
            bad = nonfinite(value)
            if bad and not trim_infinity:
                raise InvalidInputError(
                    f"{ref.where()}: input {name!r} holds {bad} value(s)",
                    hint="clean the calibration data, or pass --trim-infinity to leave "
                    "infinities and sentinels out of the statistics",
                )
            if bad:
                trimmed.setdefault(name, []).append(f"{ref.where()} ({bad})")
            if np.issubdtype(value.dtype, np.floating):
                kept = value[np.abs(value) < SENTINEL_ABS]
                if kept.size:
                    lo, hi = spans.get(name, (np.inf, -np.inf))
                    spans[name] = (min(lo, float(kept.min())), max(hi, float(kept.max())))
        out.append(sample)
    for name, found in trimmed.items():
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        warnings.warn(
            f"calibration data {data.source}: input {name!r} holds NaN or infinite values in "
            f"{len(found)} sample(s): {'; '.join(found[:3])}{more}. --trim-infinity leaves them "
            "(and what the model computes from them) out of the statistics; bias correction "
            "skips those samples",
            CalibrationDataWarning,
            stacklevel=2,
        )
    for name, (lo, hi) in spans.items():
        if lo == hi:
            warnings.warn(
                f"calibration data {data.source}: input {name!r} is constant (every value is "
                f"{lo:g} in all {len(out)} sample(s)), so every activation range computed from "
                "it collapses to a point and real inputs will saturate; calibrate on "
                "representative inputs",
                CalibrationDataWarning,
                stacklevel=2,
            )
    return out
