"""Save and load a :class:`~.qmodel.QuantizedModel` as one ``.npuq`` file (no pickle).

Format (a zip archive, entries in a fixed order with fixed timestamps, so the
same model gives the same bytes):

- ``manifest.json``: format version, the config, every tensor's quantization
  parameters, every layer's placement, reason, config and scalar parameters,
  the calibration metadata, and the layer names and kinds for checking;
- ``relax.json``: the float Relax module the layer graph is extracted from
  (``tvm.ir.save_json``); loading re-extracts the graph and checks that it
  has the same layers;
- ``arrays/<layer>/<param>.npy``: array parameters (int8 weights, b16,
  multipliers, tables), read with ``allow_pickle=False``.
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

FORMAT = "npuc-quantized"
VERSION = 1
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


def to_bytes(model: QuantizedModel) -> bytes:
    """The ``.npuq`` bytes of ``model`` (module docstring)."""
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
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:

        def put(name: str, data: bytes) -> None:
            archive.writestr(zipfile.ZipInfo(name, date_time=_EPOCH), data)

        put("manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
        put("relax.json", tvm.ir.save_json(model.graph.relax_module).encode())
        for path in sorted(arrays):
            out = io.BytesIO()
            np.save(out, arrays[path], allow_pickle=False)
            put(path, out.getvalue())
    return buffer.getvalue()


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
                f"{where}: not an npuc quantized model of format version {VERSION}",
                hint="re-create it with `npuc quantize`",
            )
        module = tvm.ir.load_json(archive.read("relax.json").decode())
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
