"""Calibration samples from Python dataset plugins, and random noise.

A plugin is ``module:function`` (imported from ``sys.path``) or the name of
an entry point in the group ``npuc.datasets`` (a package declares
``[project.entry-points."npuc.datasets"] mydata = "pkg.data:calibration"``).
The function is called with no arguments, or with the model's inputs (a
tuple of :class:`~npuc.core.model_info.TensorInfo`) if it takes one
positional parameter. It returns an iterable whose items are each a dict of
arrays by input name, a single array (single-input models), or a tuple of
arrays in input order; an item may hold one sample or a batch, cut as
``.npy`` files are (:func:`~.calib_set.plan_array`). Items are read up to
``limit`` samples and kept in memory (a plugin cannot be re-read lazily);
without a limit, more than :data:`MAX_PLUGIN_SAMPLES` is an error.

``random`` (normal noise, mean 0 and std 1), ``random:normal`` and
``random:uniform`` (``[0, 1)``) make noise of each input's shape; integer
inputs get integers in ``[0, 10]``, booleans random bits. The shapes must be
static. A :class:`RandomCalibrationWarning` says the ranges are meaningless
for deployment.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.core.model_info import TensorInfo

from .calib_set import SampleRef, check_names, plan_array

ENTRY_POINT_GROUP = "npuc.datasets"
#: Without a limit, a plugin yielding more samples than this is stopped (an
#: endless generator would otherwise fill memory).
MAX_PLUGIN_SAMPLES = 100_000
_PLUGIN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_NAME = re.compile(r"^[A-Za-z_][\w.-]*$")


class RandomCalibrationWarning(UserWarning):
    """Calibration runs on noise: fine to try the flow, wrong for deployment."""


def _entry_point(name: str) -> Any | None:
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    return found[0] if found else None


def is_plugin_name(source: str) -> bool:
    """True if ``source`` reads as ``module:function`` or names an ``npuc.datasets`` entry point."""
    return bool(_PLUGIN.match(source)) or (
        bool(_NAME.match(source)) and _entry_point(source) is not None
    )


def _resolve(source: str) -> Callable[..., Any]:
    ep = _entry_point(source) if not _PLUGIN.match(source) else None
    try:
        if ep is not None:
            fn = ep.load()
        else:
            module_name, _, attr = source.partition(":")
            fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(
            f"dataset plugin {source}: cannot be loaded ({type(exc).__name__}: {exc})",
            hint="check the module is importable (on PYTHONPATH) and defines the function",
        ) from None
    if not callable(fn):
        raise InvalidInputError(f"dataset plugin {source}: {type(fn).__name__} is not callable")
    return fn


def _call(fn: Callable[..., Any], source: str, inputs: tuple[TensorInfo, ...]) -> Iterable[Any]:
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        params = []
    try:
        result = fn(inputs) if params else fn()
        return iter(result)
    except InvalidInputError:
        raise
    except Exception as exc:  # the plugin is user code: report, do not crash
        raise InvalidInputError(
            f"dataset plugin {source} failed: {type(exc).__name__}: {exc}",
            hint="it must return an iterable of dicts (input name -> array) or arrays",
        ) from exc


def _as_mapping(item: Any, inputs: Sequence[TensorInfo], where: str) -> dict[str, np.ndarray]:
    if isinstance(item, Mapping):
        return {str(k): np.asarray(v) for k, v in item.items()}
    if isinstance(item, np.ndarray):
        if len(inputs) != 1:
            raise InvalidInputError(
                f"{where}: an array can only feed a model with one input; this one has "
                f"{len(inputs)}",
                hint="yield dicts of input name -> array",
            )
        return {inputs[0].name: item}
    if isinstance(item, tuple | list) and len(item) == len(inputs):
        return {t.name: np.asarray(v) for t, v in zip(inputs, item, strict=True)}
    raise InvalidInputError(
        f"{where}: expected a dict of arrays, an array or a tuple of {len(inputs)} arrays, "
        f"got {type(item).__name__}"
    )


def _held(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return arrays


def plugin_refs(source: str, inputs: tuple[TensorInfo, ...], limit: int | None) -> list[SampleRef]:
    """Run the plugin ``source`` and reference its samples (up to ``limit``).

    Raises
    ------
    InvalidInputError
        The plugin cannot be loaded, fails, yields something that is not a
        sample (named by item index), yields nothing, or an item does not fit
        the model.
    """
    items = _call(_resolve(source), source, inputs)
    refs: list[SampleRef] = []
    for k, item in enumerate(_guarded(items, source)):
        where = f"dataset plugin {source} item {k}"
        arrays = _as_mapping(item, inputs, where)
        check_names(list(arrays), inputs, where)
        plans = [plan_array(arrays[t.name].shape, t, where) for t in inputs]
        if len({n for _, n in plans}) != 1 or len({m for m, _ in plans}) != 1:
            raise InvalidInputError(f"{where}: the inputs hold different numbers of samples")
        mode, n = plans[0]
        load = functools.partial(_held, arrays)
        refs.extend(SampleRef(where, i, where, load, mode) for i in range(n))
        if limit is not None and len(refs) >= limit:
            return refs[:limit]
        if len(refs) > MAX_PLUGIN_SAMPLES:
            raise InvalidInputError(
                f"dataset plugin {source} yielded more than {MAX_PLUGIN_SAMPLES} samples "
                "(it may never end), and they are all kept in memory",
                hint="pass a sample limit (calibration_samples)",
            )
    if not refs:
        raise InvalidInputError(f"dataset plugin {source} yielded no samples")
    return refs


def _guarded(items: Iterable[Any], source: str) -> Iterable[Any]:
    iterator = iter(items)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # user code
            raise InvalidInputError(
                f"dataset plugin {source} failed while iterating: {type(exc).__name__}: {exc}"
            ) from exc
        yield item


def _noise(info: TensorInfo, kind: str, seed: int, index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, index])
    shape = tuple(int(d) for d in info.shape)
    dtype = np.dtype(info.dtype)
    if dtype.kind == "b":
        value = rng.integers(0, 2, shape).astype(bool)
    elif dtype.kind in "iu":
        value = rng.integers(0, 11, shape).astype(dtype)
    elif kind == "uniform":
        value = rng.random(shape).astype(dtype)
    else:
        value = rng.standard_normal(shape).astype(dtype)
    return {info.name: value}


def _noise_sample(
    inputs: tuple[TensorInfo, ...], kind: str, seed: int, index: int
) -> dict[str, np.ndarray]:
    sample: dict[str, np.ndarray] = {}
    for k, info in enumerate(inputs):
        sample.update(_noise(info, kind, seed + 7919 * k, index))
    return sample


def random_refs(
    source: str, inputs: tuple[TensorInfo, ...], *, count: int, seed: int
) -> list[SampleRef]:
    """``count`` noise samples (generated when iterated, reproducible from ``seed``).

    Warns with :class:`RandomCalibrationWarning`.

    Raises
    ------
    InvalidInputError
        An input has symbolic dimensions.
    """
    for info in inputs:
        if not info.is_static:
            raise InvalidInputError(
                f"--calib random: input {info.name!r} has symbolic dimensions "
                f"({info.shape_str()}), so noise of its shape cannot be made",
                hint="fix the shape with --input-shape NAME=1x3x224x224",
            )
    warnings.warn(
        "calibrating on random noise: activation ranges will not match real inputs, so the "
        "quantized model's accuracy means nothing for deployment (the report marks it)",
        RandomCalibrationWarning,
        stacklevel=3,
    )
    kind = source.partition(":")[2] or "normal"
    return [
        SampleRef(
            source, i, f"{source}#{i}", functools.partial(_noise_sample, inputs, kind, seed, i)
        )
        for i in range(count)
    ]
