"""An ``onnx.backend.base.Backend`` that runs models through npuc's CPU path.

``prepare`` does exactly what ``npuc build`` does for the CPU, in memory:
``npuc.frontend.load`` (import, shape fixing, support check) ->
``npuc.midend.pipeline.optimize`` ->
``npuc.backend.cpu.build.compile_module`` for the host target; the returned
:class:`NpucCpuRep` runs the executable through ``npuc.runtime``. Nothing is
patched or skipped for the tests: an operator npuc does not claim raises
:class:`npuc.core.errors.UnsupportedError` from ``prepare``.

``run`` takes the inputs in the order of the graph's (non-initializer) inputs,
as onnx's backend test runner passes them, and returns the outputs in the
order of the graph's outputs.

One extension of the backend API: ``prepare(model, constants={name: value})``
compiles those graph inputs as initializers (npuc compiles static shapes, so
a Reshape's ``shape`` must be known when compiling; see
:mod:`tools.conformance.constant_inputs`). ``run`` still takes every input and
checks that the values fed for those inputs are the compiled ones.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep

if TYPE_CHECKING:
    from npuc.runtime import CompiledModel


@dataclass
class StageTimes:
    """Wall-clock seconds spent per stage of one ``prepare`` + ``run``."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, start_s: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.monotonic() - start_s


class NpucCpuRep(BackendRep):
    """A model compiled for the host CPU, ready to run repeatedly."""

    def __init__(
        self,
        runner: CompiledModel,
        input_names: Sequence[str],
        output_names: Sequence[str],
        constants: Mapping[str, np.ndarray],
        times: StageTimes,
    ) -> None:
        self._runner = runner
        self.constants = dict(constants)
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self.times = times

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Run on ``inputs`` (a sequence in graph-input order, or a name -> array map)."""
        feeds = self._feeds(inputs)
        for name, value in self.constants.items():
            fed = feeds.pop(name, value)
            if not np.array_equal(fed, value):
                raise ValueError(f"input {name!r} was compiled as a constant; fed another value")
        start_s = time.monotonic()
        results = self._runner.run(feeds)
        self.times.add("run", start_s)
        missing = [n for n in self.output_names if n not in results]
        if missing:
            raise KeyError(f"npuc runtime returned no value for outputs {missing}")
        return tuple(np.asarray(results[n]) for n in self.output_names)

    def _feeds(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            return {k: as_array(k, v) for k, v in inputs.items()}
        values = list(inputs)
        if len(values) != len(self.input_names):
            raise ValueError(
                f"model takes {len(self.input_names)} inputs {self.input_names}, "
                f"got {len(values)} values"
            )
        return {
            name: as_array(name, value)
            for name, value in zip(self.input_names, values, strict=True)
        }


def as_array(name: str, value: Any) -> np.ndarray:
    """A case's tensor value as numpy (float8/int4 cases give ``TensorProto``)."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, np.generic):
        return np.asarray(value)
    if not isinstance(value, np.ndarray):
        # Sequence and optional inputs: npuc's runtime takes tensors only.
        from npuc.core.errors import UnsupportedError

        raise UnsupportedError(
            f"input {name!r} is a {type(value).__name__}, not a tensor",
            hint="npuc compiles models whose inputs are tensors",
        )
    return value


class NpucCpuBackend(Backend):
    """onnx backend API over npuc's frontend, CPU midend, CPU backend and runtime."""

    @classmethod
    def prepare(
        cls,
        model: onnx.ModelProto,
        device: str = "CPU",
        *,
        constants: Mapping[str, np.ndarray] | None = None,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> NpucCpuRep:
        """Import, optimise and compile ``model`` for the host CPU.

        ``constants`` names graph inputs to compile as initializers, with their
        values; ``input_shapes`` fixes symbolic input shapes (``--input-shape``).
        """
        if not cls.supports_device(device):
            raise ValueError(f"npuc's CPU backend runs on CPU, not {device!r}")
        from npuc.backend.cpu.build import compile_module
        from npuc.core.target import host_target
        from npuc.frontend import load
        from npuc.midend.pipeline import optimize
        from npuc.runtime import from_executable

        constants = {k: as_array(k, v) for k, v in (constants or {}).items()}
        inits = {t.name for t in model.graph.initializer}
        input_names = [i.name for i in model.graph.input if i.name not in inits]
        output_names = [o.name for o in model.graph.output]
        times = StageTimes()
        start_s = time.monotonic()
        imported = load(with_initializers(model, constants), input_shapes=input_shapes)
        times.add("import", start_s)
        start_s = time.monotonic()
        mod = optimize(imported.mod)
        times.add("optimize", start_s)
        start_s = time.monotonic()
        executable = compile_module(mod, host_target())
        runner = from_executable(executable, imported.info)
        times.add("compile", start_s)
        return NpucCpuRep(runner, input_names, output_names, constants, times)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"


def with_initializers(
    model: onnx.ModelProto, constants: Mapping[str, np.ndarray]
) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs named in ``constants`` are initializers."""
    if not constants:
        return model
    unknown = set(constants) - {i.name for i in model.graph.input}
    if unknown:
        raise ValueError(f"constants name no graph input: {sorted(unknown)}")
    frozen = onnx.ModelProto()
    frozen.CopyFrom(model)
    kept = [i for i in frozen.graph.input if i.name not in constants]
    del frozen.graph.input[:]
    frozen.graph.input.extend(kept)
    for name, value in constants.items():
        frozen.graph.initializer.append(numpy_helper.from_array(value, name))
    return frozen
