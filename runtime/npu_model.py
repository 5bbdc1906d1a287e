"""Run a ``.npuc`` artifact: NPU partitions on the simulator, the rest on the CPU.

``npuc.runtime.load("m.npuc").run({"x": x})`` gives the model's outputs by
name, dequantized to float32 (``raw=True``: the stored integers). The artifact
(:mod:`npuc.core.npu_artifact`) holds everything needed: the quantized model,
each partition's compiled program, border tensors and constant operands, so
nothing is compiled here. Per sample each partition's border tensors are
converted to NHWC storage integers (:mod:`npuc.core.storage_layout`), simulated
(:func:`npuc.npu_sim.simulate`) and converted back; each CPU region runs from
its stored native library (:mod:`.cpu_regions`), and the layers of a region the
build could not compile (the manifest says why) run exactly as
:class:`~npuc.midend.quantize.int_exec.IntegerExecutor` runs them.

Guarantees: with a correct compiler every tensor equals the integer executor's
bit for bit; :func:`npuc.runtime.verify_stages.verify_artifact` checks it on the
artifact's golden samples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from npuc.core.errors import InvalidInputError, NpucError
from npuc.core.hw.config import HwConfig
from npuc.core.isa.program import Program
from npuc.core.npu_artifact import Artifact, _safe, npy_load, open_artifact
from npuc.core.storage_layout import from_storage, to_storage
from npuc.midend.quantize.float_exec import FloatExecutor
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.npu_sim import simulate
from npuc.runtime.cpu_regions import CpuRegionLibrary, load_regions

#: Runs NPU partition ``index`` on its storage-layout integer inputs (by name) without the
#: simulator and returns its outputs by name; the compiler's integer reference of the
#: lowered graph (``npuc run --engine ref``) is one.
ReferenceRunner = Callable[[int, Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
ENGINES = ("sim", "ref")


class MismatchError(NpucError):
    """The NPU's result differs from the integer executor's (names tensor and values)."""

    exit_code = 6


@dataclass
class PartitionRun:
    """Statistics of one partition over the samples run so far."""

    name: str
    cycles: list[int] = field(default_factory=list)
    macs: int = 0
    mac_utilisation: list[float] = field(default_factory=list)
    dram_bytes: list[int] = field(default_factory=list)
    trace: list[dict[str, Any]] = field(default_factory=list)  # last run, with trace=True


@dataclass(frozen=True)
class PartitionSpec:
    """One NPU partition as the artifact records it: layers run, border tensors, constants."""

    name: str
    layers: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    constants: Mapping[str, np.ndarray]


class NpuModel:
    """A quantized model whose NPU partitions run as compiled ``programs`` on the simulator.

    ``reference`` (optional) runs a partition without the simulator, for
    ``engine="ref"``; ``int_exec`` shares an existing integer executor of ``qm``;
    ``cpu_regions`` run their layers from compiled libraries (other CPU layers run
    on the integer executor).
    """

    def __init__(
        self,
        qm: QuantizedModel,
        hw: HwConfig,
        partitions: Sequence[PartitionSpec],
        programs: Sequence[Program],
        float_executor: FloatExecutor | None = None,
        *,
        artifact: Artifact | None = None,
        reference: ReferenceRunner | None = None,
        int_exec: IntegerExecutor | None = None,
        cpu_regions: Sequence[CpuRegionLibrary] = (),
    ) -> None:
        if len(programs) != len(partitions):
            raise InvalidInputError(
                f"{len(programs)} NPU programs for {len(partitions)} partitions of the model"
            )
        self.qm = qm
        self.hw = hw
        self.artifact = artifact  # the .npuc file it was loaded from, if any
        self.int_exec = int_exec or IntegerExecutor(qm, float_executor)
        self.reference = reference
        self.partitions = list(partitions)
        self.programs = list(programs)
        self.stats = [PartitionRun(p.name) for p in self.partitions]
        io = artifact.manifest.get("io", {}) if artifact is not None else {}
        #: ``--io-dtype`` the artifact was built with: ``float``, ``int8`` or ``uint8``.
        self.io_dtype: str = artifact.manifest.get("io_dtype", "float") if artifact else "float"
        #: Integer interface tensors: name -> (interface dtype, storage - interface offset).
        self.interface: dict[str, tuple[str, int]] = {
            name: (str(entry["interface"]["dtype"]), int(entry["interface"]["offset"]))
            for name, entry in io.items()
            if isinstance(entry, dict) and "interface" in entry
        }
        #: The source model's output names (ONNX/TFLite/PyTorch) by npuc's output tensor
        #: name, as the build recorded them; outputs without an entry keep npuc's name.
        names = artifact.manifest.get("output_names", {}) if artifact is not None else {}
        if not isinstance(names, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in names.items()
        ):
            raise InvalidInputError(
                f"{artifact.path if artifact else 'artifact'}: manifest output_names is not a "
                "mapping of tensor names",
                hint="rebuild the model with npuc build --target npu",
            )
        self.source_outputs: dict[str, str] = dict(names)
        self._first = {p.layers[0]: i for i, p in enumerate(self.partitions) if p.layers}
        self._in_part = {name for p in self.partitions for name in p.layers}
        self.cpu_regions = list(cpu_regions)
        self._first_cpu = {r.layers[0]: r for r in self.cpu_regions if r.layers}
        self._in_part |= {name for r in self.cpu_regions for name in r.layers}

    @property
    def input_names(self) -> list[str]:
        return [n for n, _ in self.qm.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        """The names :meth:`run` gives its outputs: the source model's where recorded."""
        return [self.source_outputs.get(n, n) for n in self.qm.graph.outputs]

    @property
    def input_dtypes(self) -> dict[str, str]:
        """The dtype :meth:`run` takes for each input: float32, or the integer interface's
        (``npuc build --io-dtype int8|uint8``)."""
        return {
            name: self.interface[name][0] if name in self.interface else str(ty.dtype)
            for name, ty in self.qm.graph.inputs
        }

    def interface_text(self, name: str) -> str:
        """``this model takes int8 (scale .., zero point ..; built with --io-dtype int8)``."""
        dtype, offset = self.interface[name]
        q = self.qm.tensors[name]
        return (
            f"this model takes {dtype} (scale {q.scale:.6g}, zero point "
            f"{q.zero_point - offset}; built with --io-dtype {self.io_dtype})"
        )

    def quantize_hint(self, name: str) -> str:
        """How to quantize a float array for integer-interface input ``name``."""
        dtype, offset = self.interface[name]
        q = self.qm.tensors[name]
        lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
        zp = q.zero_point - offset
        plus = f" + {zp}" if zp > 0 else f" - {-zp}" if zp < 0 else ""
        return (
            f"quantize it first: np.clip(np.round(x / {q.scale:.6g}){plus}, "
            f"{lo}, {hi}).astype(np.{dtype}), or rebuild with --io-dtype float"
        )

    def _integer_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """``inputs`` with each integer-interface input checked and made an IntTensor."""
        feeds: dict[str, Any] = dict(inputs)
        for name, (dtype, offset) in self.interface.items():
            if name not in feeds or name not in self.input_names:
                continue
            value = np.asarray(feeds[name])
            q = self.qm.tensors[name]
            if value.dtype != np.dtype(dtype):
                raise InvalidInputError(
                    f"input {name!r}: {self.interface_text(name)}, got {value.dtype}",
                    hint=self.quantize_hint(name),
                )
            feeds[name] = IntTensor(value.astype(np.int64) + offset, q)
        return feeds

    def run(
        self,
        inputs: Mapping[str, np.ndarray],
        *,
        raw: bool = False,
        engine: str = "sim",
        trace: bool = False,
    ) -> dict[str, np.ndarray]:
        """The model's outputs by name for one sample of ``inputs`` (graph layout).

        Outputs are keyed by the source model's output names (:attr:`output_names`).

        Inputs are float32, or for a model built with ``--io-dtype int8|uint8``
        the quantized integers of exactly that dtype (:attr:`input_dtypes`).
        Outputs are dequantized float32 (``--io-dtype float``) or the
        interface's integers, or with ``raw=True`` the stored integers in the
        output's storage dtype (int8/uint8/int16). Float outputs (of CPU float
        layers) are returned as they are.

        ``engine="ref"`` runs the NPU partitions on the ``reference`` runner
        instead of the simulator (same integers, no cycles); ``trace=True``
        keeps each partition's simulator trace in :attr:`stats`.

        Raises
        ------
        InvalidInputError
            An input is missing, unknown, or of the wrong shape (or, for an
            integer interface, dtype); an unknown engine, or ``"ref"`` without
            a reference runner.
        """
        env = self.run_env(self._integer_inputs(inputs), engine=engine, trace=trace)
        outputs: dict[str, np.ndarray] = {}
        for name, key in zip(self.qm.graph.outputs, self.output_names, strict=True):
            value = env[name]
            if isinstance(value, IntTensor) and raw:
                outputs[key] = value.values.astype(value.qparams.dtype)
            elif isinstance(value, IntTensor) and name in self.interface:
                dtype, offset = self.interface[name]
                outputs[key] = (value.values - offset).astype(dtype)
            elif isinstance(value, IntTensor):
                outputs[key] = np.asarray(value.dequantize(), dtype=np.float32)
            else:
                outputs[key] = np.asarray(value)
        return outputs

    def run_env(
        self, feeds: Mapping[str, np.ndarray], *, trace: bool = False, engine: str = "sim"
    ) -> dict[str, Any]:
        """Graph inputs and every CPU/partition-border tensor for one sample (as the integer
        executor's env: :class:`IntTensor` for integer tensors, float arrays otherwise).

        ``feeds`` are float arrays (quantized here as the integer executor does) or
        :class:`IntTensor` values already quantized."""
        self._check_feeds(feeds)
        if engine not in ENGINES or (engine == "ref" and self.reference is None):
            raise InvalidInputError(
                f"engine {engine!r}: "
                + ("not one of sim, ref" if engine not in ENGINES else "no reference runner"),
                hint="engine 'sim' runs the programs on the simulator; 'ref' needs the "
                "compiler (npuc run model.npuc --engine ref)",
            )
        env: dict[str, Any] = {}
        for name, ty in self.qm.graph.inputs:
            if isinstance(feeds[name], IntTensor):
                env[name] = feeds[name]
                continue
            value = np.asarray(feeds[name])
            if name in self.qm.tensors:
                q = self.qm.tensors[name]
                env[name] = IntTensor(q.quantize(value).astype(np.int64), q)
            else:
                env[name] = value.astype(ty.dtype, copy=False)
        for node in self.qm.graph.nodes:
            if node.name in self._first:
                index = self._first[node.name]
                env.update(self.run_partition(index, env, trace=trace, engine=engine))
            elif node.name in self._first_cpu:
                env.update(self._first_cpu[node.name].run(env))
            elif node.name not in self._in_part:
                env[node.name] = self.int_exec.run_node(node, env)
        return env

    def run_partition(
        self, index: int, env: Mapping[str, Any], *, trace: bool = False, engine: str = "sim"
    ) -> dict[str, IntTensor]:
        """One partition's outputs from the border tensors in ``env``: simulated (``sim``,
        statistics recorded in :attr:`stats`) or on the reference runner (``ref``)."""
        part, program = self.partitions[index], self.programs[index]
        inputs: dict[str, np.ndarray] = {}
        for t in program.inputs:
            if t.name in part.constants:
                inputs[t.name] = part.constants[t.name].astype(t.dtype)
                continue
            ints = self.int_exec.as_int(env[t.name], self.qm.tensors[t.name]).values
            inputs[t.name] = np.ascontiguousarray(to_storage(ints)).astype(t.dtype)
        if engine == "ref" and self.reference is not None:
            outputs = self.reference(index, inputs)
        else:
            result = simulate(program, inputs, self.hw, trace=trace)
            outputs = result.outputs
            st = self.stats[index]
            st.cycles.append(result.stats.total_cycles)
            st.macs = result.stats.macs
            st.mac_utilisation.append(result.stats.mac_utilisation)
            st.dram_bytes.append(result.stats.dram_read_bytes + result.stats.dram_written_bytes)
            st.trace = result.trace_events
        made: dict[str, IntTensor] = {}
        for t in program.outputs:
            shape = self.qm.graph.tensor_type(t.name).shape
            values = from_storage(np.asarray(outputs[t.name]), shape).astype(np.int64)
            made[t.name] = IntTensor(values, self.qm.tensors[t.name])
        return made

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        names = self.input_names
        missing = [n for n in names if n not in feeds]
        unknown = sorted(set(feeds) - set(names))
        if missing or unknown:
            raise InvalidInputError(
                f"inputs: missing {missing or 'none'}, unknown {unknown or 'none'}",
                hint=f"the model's inputs are {', '.join(names)}",
            )
        for name, ty in self.qm.graph.inputs:
            given = feeds[name]
            got = tuple(np.shape(given.values if isinstance(given, IntTensor) else given))
            want = tuple(int(d) for d in ty.shape)
            if got != want:
                raise InvalidInputError(f"input {name!r}: shape {got}, the model takes {want}")


def read_quantized_model(artifact: Artifact) -> QuantizedModel:
    """The artifact's stored quantized model (validated by the midend's reader)."""
    from npuc.midend.quantize.serialize import from_bytes

    return from_bytes(artifact.model_bytes(), where=f"{artifact.path} (model.npuq)")


def partition_specs(artifact: Artifact) -> list[PartitionSpec]:
    """Each NPU partition the artifact's manifest records, with its constant operands."""
    specs = []
    for p in artifact.manifest["partitions"]:
        name = p["name"]
        constants = {
            c: npy_load(artifact.read(f"npu/{name}/{_safe(c)}.npy"), c) for c in p["constants"]
        }
        specs.append(
            PartitionSpec(
                name, tuple(p["layers"]), tuple(p["inputs"]), tuple(p["outputs"]), constants
            )
        )
    return specs


def load_npuc(path: str | Path) -> NpuModel:
    """Open a ``.npuc`` file as a runnable :class:`NpuModel` (``.artifact`` holds the file).

    Raises :class:`~npuc.core.errors.InvalidInputError` for a missing, damaged
    or foreign file, an unknown format version, or programs built for other
    hardware than the recorded one.
    """
    if not Path(path).is_file():
        raise InvalidInputError(f"compiled model {path} does not exist", hint="check the path")
    artifact = open_artifact(path)
    qm = read_quantized_model(artifact)
    regions = load_regions(artifact, qm)
    return NpuModel(
        qm, artifact.hw, partition_specs(artifact), artifact.programs(), artifact=artifact,
        cpu_regions=regions,
    )  # fmt: skip


def first_difference(name: str, got: Any, expected: Any) -> None:
    """Raise :class:`MismatchError` unless ``got`` equals ``expected`` exactly."""
    a = got.values if isinstance(got, IntTensor) else np.asarray(got)
    b = expected.values if isinstance(expected, IntTensor) else np.asarray(expected)
    if a.shape != b.shape or not np.array_equal(a, b):
        if a.shape != b.shape:
            raise MismatchError(f"tensor {name!r}: shape {a.shape}, expected {b.shape}")
        where = tuple(int(i) for i in np.argwhere(a != b)[0])
        count = int((a != b).sum())
        raise MismatchError(
            f"tensor {name!r}: {count} of {a.size} values differ; first at {where}:"
            f" {a[where]} vs expected {b[where]}"
        )
