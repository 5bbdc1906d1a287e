"""Partition a quantized model into NPU partitions and CPU layers with Relax's pattern machinery.

Requires: a :class:`~npuc.midend.quantize.qmodel.QuantizedModel` whose graph keeps
the float Relax module it was extracted from (``qm.graph.relax_module``, as
:func:`~npuc.midend.quantize.extract.extract_graph` and the ``.npuq`` reader give it).

Steps:

1. every layer's verdict from the legality checks of :mod:`.partition`
   (:func:`~.partition.placement_verdict`: ``(ok, reason)``, the reason kept for
   ``--show-cpu-ops`` and the report);
2. :class:`~.composites.AnnotateNpuComposites` on the float module: NPU composites
   (``FuseOpsByPattern``) made only for bindings of NPU-legal layers, merged into
   ``Codegen = "npuc_npu"`` regions (``MergeCompositeFunctions``, which never makes a
   cycle through the CPU code);
3. a legal layer whose bindings no pattern covers, or that falls into two regions,
   stays on the CPU with that reason (and step 2 runs again without it);
4. each region's layers in graph order, cut where a layer reads a tensor made
   outside the region after the region's first layer. ``MergeCompositeFunctions``
   may merge layers that are not consecutive in graph order (it joins a layer to
   the region of its producer, skipping CPU layers that do not lie between them);
   the runtime (:class:`npuc.runtime.npu_model.NpuModel`) runs a partition when
   its walk over the layers in graph order reaches the partition's first layer, so
   every input must be made by then. The cut keeps that true.

Guarantees: every layer in exactly one place (one partition, or the CPU with its
reason); a partition's layers in graph order; every partition's outside inputs
made before its first layer; partitions numbered by their first layer. The
result has the shape of :func:`~.partition.partition_walk`'s (the graph walk it
replaces), so lowering, the build's refused-layer loop and the runtime read it
unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

import tvm
from tvm import relax

from npuc.backend.npu.composites import AnnotateNpuComposites, LayerMap, binding_keys, npu_regions
from npuc.backend.npu.partition import (
    Partition,
    Placement,
    ResizeMap,
    Verdict,
    make_partition,
    placement_verdict,
)
from npuc.core.errors import UnsupportedError
from npuc.midend.quantize.graph import Graph
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.midend.quantize.relax_read import op_name

NOT_COVERED = "no NPU composite pattern covers its operator {op} (binding {key})"
TWO_REGIONS = "its operators fell into two NPU regions"


def npu_regions_of(
    qm: QuantizedModel, verdicts: Mapping[str, Verdict]
) -> tuple[list[list[str]], dict[str, str]]:
    """The ``npuc_npu`` regions of ``qm``'s float module as layer names (graph order), and
    the legal layers the regions do not hold whole, each with the reason.

    ``verdicts``: every layer's ``(ok, reason)``; only ``ok`` layers become composites.

    Raises
    ------
    UnsupportedError
        The quantized model keeps no float Relax module (a graph built by hand).
    """
    graph = qm.graph
    if graph.relax_module is None:
        raise UnsupportedError(
            "the quantized model keeps no float Relax module, so it cannot be partitioned",
            hint="quantize the model with npuc (extract_graph keeps the module)",
        )
    func = graph.relax_module["main"]
    keys = binding_keys(func)
    layer_of = {key: node.name for node in graph.nodes for key in node.source}
    npu = frozenset(name for name, (ok, _) in verdicts.items() if ok)
    annotate = tvm.transform.Sequential([AnnotateNpuComposites(LayerMap(keys, layer_of, npu))])
    mod = annotate(graph.relax_module)
    position = {node.name: i for i, node in enumerate(graph.nodes)}
    regions: list[list[str]] = []
    region_of: dict[str, set[int]] = {}
    covered: dict[str, set[str]] = {}
    for _, composites in npu_regions(mod):
        layers: set[str] = set()
        for attrs in composites:
            layers.update(str(attrs["npuc_layers"]).split(","))
            for key in str(attrs["npuc_bindings"]).split(","):
                covered.setdefault(layer_of[key], set()).add(key)
        for name in layers:
            region_of.setdefault(name, set()).add(len(regions))
        regions.append(sorted(layers, key=position.__getitem__))
    ops = _binding_ops(func, keys)
    problems: dict[str, str] = {}
    for node in graph.nodes:
        if node.name not in npu:
            continue
        missing = [k for k in node.source if k not in covered.get(node.name, set())]
        if missing:
            problems[node.name] = NOT_COVERED.format(op=ops.get(missing[0], "?"), key=missing[0])
        elif len(region_of.get(node.name, ())) != 1:
            problems[node.name] = TWO_REGIONS
    return regions, problems


def _binding_ops(func: relax.Function, keys: Mapping[relax.Var, str]) -> dict[str, str]:
    """Binding key -> the operator it calls (for reasons)."""
    return {
        keys[b.var]: op_name(b.value) if isinstance(b.value, relax.Call) else type(b.value).__name__
        for block in func.body.blocks
        for b in block.bindings
    }


def runnable_parts(graph: Graph, regions: list[list[str]]) -> list[list[str]]:
    """The regions cut into parts the runtime can run: it walks the layers in graph order
    and runs a partition at its first layer, so everything a part reads from outside must
    be made by then (by a CPU layer before it, or a part whose first layer is before it).

    Returns the parts ordered by first layer, each in graph order; the second of
    two parts of one region starts at the first layer that reads a tensor made later.
    """
    region_of = {name: i for i, region in enumerate(regions) for name in region}
    made: dict[str, int] = {}  # tensor -> the walk position where it becomes available
    current: dict[int, tuple[int, set[str], list[str]]] = {}
    parts: list[list[str]] = []
    for position, node in enumerate(graph.nodes):
        region = region_of.get(node.name)
        if region is None:
            made[node.name] = position
            continue
        start, inside, part = current.get(region, (-1, set(), []))
        if not part or not all(t in inside or made.get(t, -1) < start for t in node.inputs):
            start, inside, part = position, set(), []
            parts.append(part)
            current[region] = (start, inside, part)
        part.append(node.name)
        inside.add(node.name)
        made[node.name] = start
    return parts


def coalesce(graph: Graph, parts: list[list[str]]) -> list[list[str]]:
    """``parts`` (from :func:`runnable_parts`) with each joined to the one before it when it
    can run with it: everything it reads from outside both is made before that part's
    first layer.

    ``MergeCompositeFunctions`` joins a layer only to the regions of the layers it reads,
    so regions no data path connects stay apart (attention's query, key and value
    projections reading one tensor); one NPU program runs them as well, with one
    round trip to the host fewer.
    """
    position = {node.name: i for i, node in enumerate(graph.nodes)}
    inputs = {node.name: node.inputs for node in graph.nodes}
    made = dict(position)  # CPU layers where they are; a part's layers at its first layer
    for part in parts:
        made.update(dict.fromkeys(part, position[part[0]]))
    merged: list[list[str]] = []
    for part in parts:
        if merged:
            start, inside = position[merged[-1][0]], {*merged[-1], *part}
            if all(t in inside or made.get(t, -1) < start for n in part for t in inputs[n]):
                merged[-1] = sorted([*merged[-1], *part], key=position.__getitem__)
                made.update(dict.fromkeys(part, start))
                continue
        merged.append(list(part))
    return merged


def partition_relax(
    qm: QuantizedModel,
    resize_map: ResizeMap | None = None,
    exclude: Mapping[str, str] | None = None,
) -> tuple[list[Partition], list[Placement]]:
    """NPU partitions and every layer's placement (with its reason), found with
    ``FuseOpsByPattern`` and ``MergeCompositeFunctions`` (module docstring).

    Arguments as :func:`~.partition.partition_walk`: ``resize_map(node, input_shape)`` gives
    the integer executor's source index of every output element of a nearest resize;
    ``exclude`` keeps layers on the CPU with a reason (layers the code generator
    refused). Raises UnsupportedError as :func:`npu_regions_of`.
    """
    graph = qm.graph
    verdicts = {n.name: placement_verdict(n, qm, resize_map, exclude) for n in graph.nodes}
    while True:
        regions, problems = npu_regions_of(qm, verdicts)
        if not problems:
            break
        verdicts.update({name: (False, reason) for name, reason in problems.items()})
    parts = coalesce(graph, runnable_parts(graph, regions))
    nodes = {node.name: node for node in graph.nodes}
    consumers = graph.consumers()
    partitions = [
        make_partition(i, [nodes[n] for n in part], qm, consumers) for i, part in enumerate(parts)
    ]
    index = {name: p.index for p in partitions for name in p.layers}
    placements = [
        Placement(
            node.name,
            node.op,
            "npu" if node.name in index else "cpu",
            "" if node.name in index else verdicts[node.name][1],
            index.get(node.name, -1),
        )
        for node in graph.nodes
    ]
    return partitions, placements
