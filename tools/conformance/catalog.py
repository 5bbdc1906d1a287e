"""Index of the onnx wheel's node conformance cases, and lazy loading of one case.

``onnx.backend.test.case.node.collect_testcases`` builds every case by
running every export function of every op module, which takes 25-35 s on this
machine (the 3-D pooling references dominate). So that collecting the tests
costs nothing, the names are read from ``manifest.json`` beside this file: one
record per case with the onnx module that defines it and the ops its graph
uses. A case's model and data are built only when a test needs them, by
importing just its module (each export function reseeds numpy, so a module
imported alone builds exactly the data of a full collection).

Guarantees:
- :func:`load_manifest` refuses a manifest written for another onnx version
  (regenerate it with ``tools/conformance_report.py --update-manifest``).
- :func:`build_manifest` and :func:`load_case` read the same onnx modules, and
  the slow tier checks the manifest against a full collection.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "tests" / "conformance" / "manifest.json"
_NODE_PACKAGE = "onnx.backend.test.case.node"
_EXPANDED_SUFFIX = re.compile(r"_expanded(_ver\d+)?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseRecord:
    """One conformance case as the manifest lists it.

    ``ops`` are the operator names its graph uses (subgraphs included), written
    ``Op`` for the default ONNX domain and ``domain:Op`` otherwise; ``op`` is
    the operator the case tests (for an ``_expanded`` case, the op whose
    function body its graph holds).
    """

    name: str
    module: str
    op: str
    ops: tuple[str, ...]

    @property
    def expanded(self) -> bool:
        return _EXPANDED_SUFFIX.search(self.name) is not None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "module": self.module, "op": self.op, "ops": list(self.ops)}


def graph_ops(graph: onnx.GraphProto) -> set[str]:
    """Operator names used by ``graph`` and all its subgraphs."""
    ops: set[str] = set()
    for node in graph.node:
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        ops.add(f"{domain}:{node.op_type}" if domain else node.op_type)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                ops |= graph_ops(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    ops |= graph_ops(sub)
    return ops


def _node_modules() -> list[str]:
    package = importlib.import_module(_NODE_PACKAGE)
    names: list[str] = []
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{_NODE_PACKAGE}."):
        if not info.ispkg:
            names.append(info.name)
    return sorted(names)


def _registered_cases() -> list[Any]:
    from onnx.backend.test.case import node

    return node._NodeTestCases  # the list ``expect`` appends to


def _import_quietly(module: str) -> None:
    # The export functions compute their expected outputs with numpy and warn
    # on the overflows and divisions by zero some cases test on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importlib.import_module(module)


def build_manifest() -> list[CaseRecord]:
    """Import every onnx node-test module and index the cases each defines."""
    cases = _registered_cases()
    if cases:
        raise RuntimeError("build_manifest needs a process that has not imported onnx's node cases")
    records: list[CaseRecord] = []
    for module in _node_modules():
        start = len(cases)
        _import_quietly(module)
        new_cases = cases[start:]
        base_ops = {
            c.name: c.model.graph.node[0].op_type
            for c in new_cases
            if not _EXPANDED_SUFFIX.search(c.name) and len(c.model.graph.node) >= 1
        }
        for case in new_cases:
            base = _EXPANDED_SUFFIX.sub("", case.name)
            first = case.model.graph.node[0].op_type if case.model.graph.node else "?"
            records.append(
                CaseRecord(
                    name=case.name,
                    module=module.removeprefix(f"{_NODE_PACKAGE}."),
                    op=base_ops.get(base, first),
                    ops=tuple(sorted(graph_ops(case.model.graph))),
                )
            )
    return records


def write_manifest(records: list[CaseRecord], path: Path = MANIFEST_PATH) -> None:
    """Write ``records`` as the manifest for the installed onnx version."""
    from npuc.core.fileio import write_text_atomic

    # One case a line, so that a new onnx version reads as a short diff.
    rows = ",\n".join(json.dumps(r.to_json()) for r in records)
    head = json.dumps(onnx.__version__)
    write_text_atomic(path, f'{{"onnx_version": {head}, "cases": [\n{rows}\n]}}\n')


def load_manifest(path: Path = MANIFEST_PATH) -> list[CaseRecord]:
    """Read the manifest; raise if it was written for another onnx version."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data["onnx_version"] != onnx.__version__:
        raise RuntimeError(
            f"{path} lists the cases of onnx {data['onnx_version']}, installed is "
            f"{onnx.__version__}: run `python tools/conformance_report.py --update-manifest`"
        )
    return [
        CaseRecord(name=c["name"], module=c["module"], op=c["op"], ops=tuple(c["ops"]))
        for c in data["cases"]
    ]


def load_case(record: CaseRecord) -> Any:
    """Build the onnx ``TestCase`` (model, inputs, expected outputs) of ``record``."""
    _import_quietly(f"{_NODE_PACKAGE}.{record.module}")
    for case in _registered_cases():
        if case.name == record.name:
            return case
    raise LookupError(f"onnx module {record.module} defines no case {record.name}")
