"""Save and load a :class:`~.qmodel.QuantizedModel` as one ``.npuq`` file (no pickle).

Format (a zip archive, entries in a fixed order with fixed timestamps, so the
same model gives the same bytes):

- ``manifest.json``: format version, the config, every tensor's quantization
  parameters, every layer's placement, reason, config and scalar parameters,
  the calibration metadata, and the layer names and kinds for checking;
- ``relax.json``: the float Relax module the layer graph is extracted from
  (``tvm.ir.save_json``), its tensor constants replaced by placeholders
  (:mod:`.relax_constants`); loading binds them back, re-extracts the graph
  and checks that it has the same layers;
- ``relax/<i>.npy``: the module's tensor constants, stored (not deflated:
  float weights barely compress), listed with shape and dtype in the manifest's
  ``relax_constants`` and checked against it and the placeholders on loading;
- ``arrays/<layer>/<param>.npy``: array parameters (int8 weights, b16,
  multipliers, tables), read with ``allow_pickle=False``.

JSON and the small layer arrays are deflated at level 1; layer arrays of 64 KiB
or more (int8 weights, which do not compress) are stored. Version 1 files (the
constants inside ``relax.json``) are refused with a hint to rebuild them.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import tvm

from npuc.core.errors import InvalidInputError
from npuc.core.fileio import atomic_path

from .config import LayerQuantConfig, QuantConfig
from .extract import extract_graph
from .qmodel import QLayer, QuantizedModel
from .qparams import QParams
from .relax_constants import bind_constants, split_constants

FORMAT = "npuc-quantized"
VERSION = 2  # 2: Relax constants as relax/<i>.npy members
_ZIP_LEVEL = 1
#: Layer arrays from this size on are stored, not deflated: they are int8
#: weights, which level 1 leaves at ratio 1.00 (ResNet-50: 25.5 MB, 0.9 CPU s).
_STORE_FROM_BYTES = 64 * 1024
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _config_json(config: QuantConfig) -> dict[str, Any]:
    data = {f.name: getattr(config, f.name) for f in fields(config)}
    data["default"] = config.default.to_json()
    data["layers"] = {k: dict(v) for k, v in config.layers.items()}
    data["float_layers"] = list(config.float_layers)
    data["float_op_types"] = list(config.float_op_types)
    return data


def config_from_json(data: Mapping[str, Any]) -> QuantConfig:
    """The :class:`~.config.QuantConfig` written by :func:`save_quantized`."""
    values = dict(data)
    values["default"] = LayerQuantConfig(**values["default"])
    values["float_layers"] = tuple(values.get("float_layers", ()))
    values["float_op_types"] = tuple(values.get("float_op_types", ()))
    return QuantConfig(**values)


def _scalar(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, tuple):
        return [_scalar(v) for v in value]
    if isinstance(value, list):
        return [_scalar(v) for v in value]
    return value


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def to_bytes(model: QuantizedModel) -> bytes:
    """The ``.npuq`` bytes of ``model`` (module docstring)."""
    module, constants = split_constants(model.graph.relax_module)
    arrays: dict[str, np.ndarray] = {}
    layers: dict[str, Any] = {}
    for name, layer in model.layers.items():
        scalars: dict[str, Any] = {}
        refs: dict[str, str] = {}
        for key, value in layer.params.items():
            if isinstance(value, np.ndarray):
                path = f"arrays/{name}/{key}.npy"
                arrays[path] = value
                refs[key] = path
            else:
                scalars[key] = _scalar(value)
        layers[name] = {
            "kind": layer.kind,
            "run_on": layer.run_on,
            "reason": layer.reason,
            "config": layer.config.to_json(),
            "params": scalars,
            "arrays": refs,
            "display": {k: _scalar(v) for k, v in layer.display.items()},
        }
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "config": _config_json(model.config),
        "tensors": {
            n: {"scale": q.scale, "zero_point": q.zero_point, "dtype": q.dtype}
            for n, q in model.tensors.items()
        },
        "layers": layers,
        "graph": [[n.name, n.op] for n in model.graph.nodes],
        "outputs": list(model.graph.outputs),
        "calibration": {k: _scalar(v) for k, v in model.calibration.items()},
        "ranges": {k: list(v) for k, v in model.ranges.items()},
        "relax_constants": [
            {"member": _constant_member(i), "shape": list(a.shape), "dtype": str(a.dtype)}
            for i, a in enumerate(constants)
        ],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:

        def put(name: str, data: bytes, compress: bool = True) -> None:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            archive.writestr(info, data, compresslevel=_ZIP_LEVEL if compress else None)

        put("manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
        put("relax.json", tvm.ir.save_json(module).encode())
        for path in sorted(arrays):
            put(path, _npy(arrays[path]), compress=arrays[path].nbytes < _STORE_FROM_BYTES)
        for i, array in enumerate(constants):
            put(_constant_member(i), _npy(array), compress=False)
    return buffer.getvalue()


def _constant_member(index: int) -> str:
    return f"relax/{index}.npy"


def _read_module(archive: zipfile.ZipFile, manifest: Mapping[str, Any], where: str) -> tvm.IRModule:
    """The stored Relax module with its constants bound back, each checked."""
    entries = manifest["relax_constants"]
    names = set(archive.namelist())

    def read(index: int, shape: tuple[int, ...] | None, dtype: str | None) -> np.ndarray:
        entry = entries[index]
        member = str(entry["member"])
        hint = "the file is damaged; rebuild it (npuc quantize / npuc build)"
        if member not in names:
            raise InvalidInputError(f"{where}: member {member} is missing", hint=hint)
        try:
            array = np.load(io.BytesIO(archive.read(member)), allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise InvalidInputError(f"{where}: member {member}: not a valid .npy ({err})") from None
        want = (tuple(entry["shape"]), str(entry["dtype"]))
        typed = (want[0] if shape is None else shape, want[1] if dtype is None else dtype)
        for expected in (want, typed):
            if (array.shape, str(array.dtype)) != expected:
                raise InvalidInputError(
                    f"{where}: member {member} holds shape {array.shape} dtype {array.dtype};"
                    f" the model expects shape {expected[0]} dtype {expected[1]}",
                    hint=hint,
                )
        return array

    module = tvm.ir.load_json(archive.read("relax.json").decode())
    try:
        return bind_constants(module, len(entries), read)
    except InvalidInputError as err:
        if str(err).startswith(where):
            raise
        raise InvalidInputError(
            f"{where}: {err}", hint="the file is damaged; rebuild it (npuc quantize / npuc build)"
        ) from None


def save_quantized(model: QuantizedModel, path: str | Path) -> None:
    """Write ``model`` to ``path`` atomically (a temporary file renamed into place)."""
    data = to_bytes(model)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def from_bytes(data: bytes, where: str = "quantized model") -> QuantizedModel:
    """Read ``.npuq`` bytes; ``where`` names the file in errors.

    Raises
    ------
    InvalidInputError
        Not an npuc quantized model, another format version, a missing entry,
        or a graph that no longer matches the stored layers.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        manifest = json.loads(archive.read("manifest.json"))
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise InvalidInputError(
                f"{where}: format {manifest.get('format')!r} version {manifest.get('version')!r};"
                f" this npuc reads npuc quantized models of format version {VERSION}",
                hint="rebuild it with this npuc: re-create the .npuq with `npuc quantize`"
                " (a .npuc with `npuc build`)",
            )
        module = _read_module(archive, manifest, where)
        graph = extract_graph(module)
        if [[n.name, n.op] for n in graph.nodes] != manifest["graph"]:
            raise InvalidInputError(
                f"{where}: its layers do not match its stored model (written by another version?)",
                hint="re-create it with `npuc quantize`",
            )
        tensors = {
            n: QParams(float(t["scale"]), int(t["zero_point"]), str(t["dtype"]))
            for n, t in manifest["tensors"].items()
        }
        layers = {}
        for name, entry in manifest["layers"].items():
            params: dict[str, Any] = dict(entry["params"])
            for key, path in entry["arrays"].items():
                params[key] = np.load(io.BytesIO(archive.read(path)), allow_pickle=False)
            if "input_requant" in params:
                params["input_requant"] = [tuple(p) for p in params["input_requant"]]
            layers[name] = QLayer(
                name=name,
                kind=entry["kind"],
                run_on=entry["run_on"],
                reason=entry["reason"],
                config=LayerQuantConfig(**entry["config"]),
                params=params,
                display=entry.get("display", {}),
            )
    except (
        KeyError,
        ValueError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        TypeError,
    ) as err:
        raise InvalidInputError(
            f"{where}: not a readable npuc quantized model ({type(err).__name__}: {err})"[:300],
            hint="re-create it with `npuc quantize`",
        ) from None
    return QuantizedModel(
        graph=graph,
        tensors=tensors,
        layers=layers,
        config=config_from_json(manifest["config"]),
        calibration=manifest.get("calibration", {}),
        ranges={k: (float(v[0]), float(v[1])) for k, v in manifest.get("ranges", {}).items()},
    )


def load_quantized(path: str | Path) -> QuantizedModel:
    """Read a ``.npuq`` file written by :func:`save_quantized`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InvalidInputError(f"cannot read {path}: {err.strerror}") from None
    return from_bytes(data, str(path))
