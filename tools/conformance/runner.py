"""Run one conformance case through a backend and compare with onnx's expected outputs.

The comparison is onnx's own backend-test rule (``onnx.backend.test.runner``):
same number of outputs, same shapes, same dtypes, and
``np.testing.assert_allclose`` with the case's ``rtol``/``atol`` (1e-3 / 1e-7
for every node case of onnx 1.23), NaNs equal to NaNs; string outputs must be
equal. :func:`run_case` raises ``AssertionError`` on a mismatch and lets every
other exception (unsupported operator, compile error) through unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend

from tools.conformance.backend import as_array
from tools.conformance.catalog import CaseRecord, load_case
from tools.conformance.constant_inputs import inputs_to_freeze


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseTiming:
    """Where one case's time went, in wall-clock seconds."""

    load_s: float
    stages_s: dict[str, float]
    total_s: float


def assert_outputs_match(
    expected: Sequence[Any], actual: Sequence[Any], *, rtol: float, atol: float
) -> None:
    """onnx's backend-test comparison of ``actual`` against ``expected``."""
    _require(
        len(actual) == len(expected),
        f"backend returned {len(actual)} outputs, the case expects {len(expected)}",
    )
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if isinstance(want, (list, tuple)):
            _require(isinstance(got, (list, tuple)), f"output {index}: expected a sequence")
            assert_outputs_match(want, got, rtol=rtol, atol=atol)
            continue
        want = np.asarray(want)
        got = np.asarray(got)
        _require(
            got.shape == want.shape, f"output {index}: shape {got.shape}, expected {want.shape}"
        )
        if want.dtype == object:
            np.testing.assert_array_equal(got, want, err_msg=f"output {index}")
            continue
        _require(
            got.dtype == want.dtype, f"output {index}: dtype {got.dtype}, expected {want.dtype}"
        )
        # onnx's runner tolerances; equal_nan is on as in np.testing's default.
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"output {index}")


def _require(ok: bool, message: str) -> None:
    # Not ``assert``: the comparison must hold under ``python -O`` too.
    if not ok:
        raise AssertionError(message)


def graph_input_names(model: onnx.ModelProto) -> list[str]:
    """Graph inputs that are not initializers, in order."""
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def open_input_shapes(
    model: onnx.ModelProto, values: Mapping[str, Any], skip: Collection[str]
) -> dict[str, tuple[int, ...]]:
    """Shapes of the fed values for inputs whose declared shape is not static.

    A user would give these with ``--input-shape``; inputs with a fixed shape
    are left to the model.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for value_info in model.graph.input:
        name = value_info.name
        if name in skip or name not in values:
            continue
        ttype = value_info.type.tensor_type
        dims = ttype.shape.dim if ttype.HasField("shape") else None
        if dims is None or not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
            fed = values[name]
            if isinstance(fed, (np.ndarray, np.generic, onnx.TensorProto)):
                shapes[name] = tuple(as_array(name, fed).shape)
    return shapes


def run_case(record: CaseRecord, backend: type[Backend]) -> CaseTiming:
    """Prepare ``record``'s model with ``backend``, run every data set, compare.

    Raises
    ------
    AssertionError
        An output differs from onnx's expected output (count, shape, dtype or value).
    """
    start_s = time.monotonic()
    case = load_case(record)
    load_s = time.monotonic() - start_s
    first_inputs = dict(zip(graph_input_names(case.model), case.data_sets[0][0], strict=False))
    constants = {name: first_inputs[name] for name in inputs_to_freeze(case.model)}
    rep = backend.prepare(
        case.model,
        "CPU",
        constants=constants,
        input_shapes=open_input_shapes(case.model, first_inputs, skip=constants),
    )
    for inputs, expected in case.data_sets:
        outputs = rep.run(inputs)
        want = [as_array(f"expected {i}", v) for i, v in enumerate(expected)]
        assert_outputs_match(want, outputs, rtol=case.rtol, atol=case.atol)
    times = getattr(rep, "times", None)
    stages = dict(times.seconds) if times is not None else {}
    return CaseTiming(load_s=load_s, stages_s=stages, total_s=time.monotonic() - start_s)
