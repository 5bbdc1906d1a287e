"""PyTorch -> Relax IRModule through ``torch.export`` (NCHW).

:func:`load_torch` takes a ``torch.nn.Module`` with example inputs, an
``ExportedProgram``, or a ``.pt2`` file saved by ``torch.export.save``. It
decomposes the program to core ATen, reports every operator TVM's
``from_exported_program`` has no converter for at once
(:class:`npuc.core.errors.UnsupportedError`, node name + ATen target), then
imports it with weights bound as constants. Guarantees: ``main`` takes the
user inputs in ``forward`` order under their export names, returns one
tensor for a single output and a tuple otherwise, and ``info`` has
``layout="NCHW"``, ``source_format="torch"``. Every input shape is
static: symbolic (``torch.export.Dim``) dimensions must be fixed through
``input_shapes``. No
optimisation happens here; torch and tvm are imported lazily.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.core.fileio import sha256_file
from npuc.core.model_info import ModelInfo
from npuc.frontend.imported import ImportedModel

__all__ = ["load_torch"]


def load_torch(
    source: Any,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    example_inputs: Sequence[Any] | None = None,
) -> ImportedModel:
    """Import a PyTorch model.

    Parameters
    ----------
    source
        A ``.pt2`` path (``torch.export.save``), a ``torch.export.ExportedProgram``,
        or a ``torch.nn.Module`` (exported here in eval mode).
    input_shapes
        Static shapes by input name. For a module without ``example_inputs``
        they define float32 example inputs (names from ``forward``'s
        parameters); for an exported program they fix symbolic dimensions
        and must equal the static ones.
    example_inputs
        Positional example tensors for a module.

    Returns
    -------
    ImportedModel
        ``(mod, info)``: the Relax module and its :class:`ModelInfo`.

    Raises
    ------
    InvalidInputError
        Unreadable ``.pt2``, missing example inputs, or wrong ``input_shapes``.
    UnsupportedError
        ``torch.export`` failed, or some ATen operators cannot be imported.
    """
    try:
        import torch
    except ImportError as err:
        raise UnsupportedError(
            "importing PyTorch models needs torch, which is not installed",
            hint="pip install 'npuc[torch]'",
        ) from err
    from npuc.frontend.tflite.interface import main_inputs, main_outputs

    label, sha, program = _exported_program(source, input_shapes, example_inputs)
    try:
        with _torch_internal_warnings_ignored():
            program = program.run_decompositions()
    except Exception as err:
        raise UnsupportedError(f"{label}: torch decomposition failed: {_first_line(err)}") from err
    importer_cls = _importer_class()
    problems = _unsupported_nodes(program, importer_cls().convert_map)
    if problems:
        raise _unsupported(label, problems)
    try:
        mod = importer_cls().from_exported_program(program, False, True, False, None)
    except _NodeFailure as err:
        raise _unsupported(label, [str(err)]) from err
    mod = _fix_shapes(label, mod, input_shapes or {})
    info = ModelInfo(
        source_path=label,
        source_format="torch",
        source_sha256=sha,
        inputs=main_inputs(mod),
        outputs=main_outputs(mod, output_names(program)),
        layout="NCHW",
        extra={"torch_version": torch.__version__},
    )
    return ImportedModel(mod, info)


def output_names(program: Any) -> list[str]:
    """Stable names of an exported program's outputs, one per flattened output tensor.

    Outputs returned in a dict (or a namedtuple / dataclass) are named by their
    keys, joined with ``.`` when nested (``{"aux": (a, b)}`` gives ``aux.0``,
    ``aux.1``); outputs in plain tuples and lists are ``output_0``,
    ``output_1``, ... in flattening order. The FX node names torch picks
    (``addmm``, ``div_1``) change between torch versions and are never used.
    """
    from torch.utils import _pytree as pytree

    spec = program.call_spec.out_spec
    count = int(spec.num_leaves) if spec is not None else 0
    if spec is None or count == 0:
        return [f"output_{i}" for i in range(len(program.graph_signature.user_outputs))]
    tree = pytree.tree_unflatten(list(range(count)), spec)
    paths = [path for path, _ in pytree.tree_flatten_with_path(tree)[0]]
    if all(isinstance(k, pytree.SequenceKey) for path in paths for k in path):
        return [f"output_{i}" for i in range(count)]
    names = [".".join(_key_text(k) for k in path) or f"output_{i}" for i, path in enumerate(paths)]
    if len(set(names)) != len(names):
        return [f"output_{i}" for i in range(count)]
    return names


def _key_text(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _exported_program(
    source: Any,
    input_shapes: Mapping[str, Sequence[int]] | None,
    example_inputs: Sequence[Any] | None,
) -> tuple[str, str, Any]:
    """``(label for messages, sha256, ExportedProgram)`` for any accepted source."""
    import torch

    if isinstance(source, torch.export.ExportedProgram):
        return "<ExportedProgram>", _state_sha256(source.state_dict), source
    if isinstance(source, torch.nn.Module):
        label = f"<torch.nn.Module {type(source).__name__}>"
        args = _example_args(label, source, input_shapes, example_inputs)
        try:
            with _torch_internal_warnings_ignored():
                program = torch.export.export(source.eval(), args)
        except Exception as err:
            raise UnsupportedError(
                f"{label}: torch.export failed: {_first_line(err)}",
                hint="make forward() traceable by torch.export (no data-dependent Python control "
                "flow), or export it yourself and pass the ExportedProgram",
            ) from err
        return label, _state_sha256(source.state_dict()), program
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(f"cannot read PyTorch model {path}: no such file")
        try:
            program = torch.export.load(path)
        except Exception as err:
            raise InvalidInputError(
                f"{path}: not a torch.export archive ({_first_line(err)})",
                hint="save the model with torch.export.save(torch.export.export(model, args), "
                "'model.pt2')",
            ) from err
        return str(path), sha256_file(path), program
    raise InvalidInputError(
        f"load_torch got a {type(source).__name__}; expected a .pt2 path, an "
        "ExportedProgram or a torch.nn.Module"
    )


def _example_args(
    label: str,
    module: Any,
    input_shapes: Mapping[str, Sequence[int]] | None,
    example_inputs: Sequence[Any] | None,
) -> tuple[Any, ...]:
    import torch

    if example_inputs is not None:
        return tuple(example_inputs)
    names = [
        p.name
        for p in inspect.signature(module.forward).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not input_shapes or set(input_shapes) != set(names):
        raise InvalidInputError(
            f"{label}: exporting a module needs example inputs or a shape for each "
            f"forward() argument ({', '.join(names)})",
            hint="pass example_inputs=(tensor, ...) or input_shapes={name: shape}",
        )
    return tuple(torch.zeros(tuple(int(d) for d in input_shapes[n])) for n in names)


def _state_sha256(state: Mapping[str, Any]) -> str:
    """Digest of a state dict's names, shapes and bytes (a module has no file to hash)."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _torch_internal_warnings_ignored() -> Iterator[None]:
    """Silence torch 2.13's own deprecation notice about ``LeafSpec`` (raised inside torch)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning
        )
        yield


class _NodeFailure(Exception):
    """Converting one FX node raised; the message names the node."""


def _importer_class() -> type:
    """TVM's ``ExportedProgramImporter`` whose converters name the node that failed."""
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    class NamingImporter(ExportedProgramImporter):
        def create_convert_map(self) -> dict[str, Callable[..., Any]]:
            return {k: _guarded(k, f) for k, f in super().create_convert_map().items()}

    return NamingImporter


def _guarded(target: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(node: Any, *rest: Any) -> Any:
        try:
            return fn(node, *rest)
        except _NodeFailure:
            raise
        except Exception as err:  # TVM raises assorted types (AssertionError, TVMError, ...)
            raise _NodeFailure(f"node '{node.name}' ({target}): {_first_line(err)}") from err

    return call


def _unsupported_nodes(program: Any, convert_map: Mapping[str, Any]) -> list[str]:
    problems = []
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if name not in convert_map:
            problems.append(f"node '{node.name}' ({name}): TVM's importer has no converter")
    return problems


def _unsupported(label: str, lines: list[str]) -> UnsupportedError:
    return UnsupportedError(
        f"{label}: {len(lines)} operator(s) cannot be imported: {'; '.join(lines)}",
        hint="rewrite these parts of the model with supported operators, or export to ONNX",
        nodes=lines,
    )


def _fix_shapes(label: str, mod: Any, input_shapes: Mapping[str, Sequence[int]]) -> Any:
    """Bind symbolic input dims from ``input_shapes``; static dims must match exactly."""
    import tvm
    from tvm import relax

    params = {p.name: p for p in mod["main"].params}
    bindings: dict[Any, int] = {}
    for name, shape in input_shapes.items():
        if name not in params:
            raise InvalidInputError(
                f"{label}: input_shapes names '{name}', which is not a model input",
                hint=f"inputs are: {', '.join(params)}",
            )
        dims = list(params[name].ty.shape)
        new = [int(d) for d in shape]
        if len(new) != len(dims):
            raise InvalidInputError(f"{label}: input '{name}' has rank {len(dims)}, got {new}")
        for old, size in zip(dims, new, strict=True):
            if isinstance(old, tvm.tirx.IntImm) and int(old) != size:
                raise InvalidInputError(
                    f"{label}: input '{name}' was exported with static shape "
                    f"{[int(d) for d in dims]}, got {new}",
                    hint="export with torch.export.Dim for the dimensions that should vary",
                )
            if isinstance(old, tvm.tirx.Var):
                bindings[old] = size
    if bindings:
        mod["main"] = relax.transform.BindSymbolicVars(bindings)(mod)["main"]
    for param in mod["main"].params:
        dims = list(param.ty.shape)
        if not all(isinstance(d, tvm.tirx.IntImm) for d in dims):
            raise InvalidInputError(
                f"{label}: input '{param.name}' has symbolic shape {[str(d) for d in dims]}",
                hint=f"give a static shape for '{param.name}' in input_shapes",
            )
    return mod


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
