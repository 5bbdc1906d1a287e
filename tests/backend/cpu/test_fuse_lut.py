"""An 8-bit table lookup fused into the kernel producing its input (backend/cpu/fuse_lut.py) is
bit-exact with the integer executor, and declines where it must.

Chains conv -> LUT, depthwise -> LUT, add -> LUT (int8 and uint8) are fused (the adds'
only with AVX-512 VBMI: their kernels store scalars, which AVX2 leaves to the lookup
kernel); a producer with a second consumer and a lookup changing the storage type are
not. Each chain is its own input-to-output path of one quantized model (one compilation per target),
checked on AVX-512, AVX2 and (slow) generic x86-64 code.
"""

from __future__ import annotations

import ctypes
import mmap
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import relax, tirx
from tvm.script import tirx as T

from npuc.backend.cpu.build import compile_module
from npuc.backend.cpu.fuse_lut import fuse_lookup, is_lookup, lookup_bytes
from npuc.backend.cpu.lowering import fusion_passes, schedule_passes
from npuc.backend.cpu.qlower import lower_model
from npuc.core.target import CpuTarget, host_target
from npuc.midend.quantize.config import LayerQuantConfig, QuantConfig
from npuc.midend.quantize.graph import Graph, Node, TensorType
from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor
from npuc.midend.quantize.qmodel import QLayer, QuantizedModel
from npuc.midend.quantize.qparams import QParams
from tools.real_models import NUDENET_YOLOV8N, ORIENTATION, RealModel

from .qlower.harness import PLACEHOLDER, ints, node, qparams
from .qlower.test_conv import _out_stage
from .qlower.test_models import quantize

AVX2_FEATURES = ("avx", "avx2", "f16c", "fma", "sse4.1", "sse4.2")
AVX512 = (*AVX2_FEATURES, "avx512bw", "avx512f", "avx512vnni", "avx512vl", "avx512vbmi")
TARGETS = {
    "avx512": ("icelake-server", AVX512),
    "avx2": ("haswell", AVX2_FEATURES),
    "generic": ("x86-64", ("sse2",)),
}


def _target(kind: str) -> CpuTarget:
    cpu, features = TARGETS[kind]
    if kind == "avx512" and not {"avx512vnni", "avx512vbmi"} <= set(host_target().features):
        pytest.skip("this machine lacks AVX-512 VNNI or VBMI")
    return CpuTarget(cpu_name=cpu, features=tuple(sorted(features)), num_cores=2)


def _lut(name: str, src: str, out: QParams, rng: np.random.Generator) -> tuple[Node, dict, QParams]:
    return node(name, "unary", (src,), func="hardswish"), {"lut": ints(rng, "int16", (256,))}, out


def _chains(rng: np.random.Generator) -> tuple[list[tuple[Node, dict, QParams]], dict, list[str]]:
    """Layers ``(node, params, out QParams)``, inputs ``{name: (ints, QParams)}``, outputs."""
    layers: list[tuple[Node, dict, QParams]] = []
    inputs: dict[str, tuple[np.ndarray, QParams]] = {}
    outputs: list[str] = []
    for i, (kind, dtype) in enumerate(
        [("conv", "int8"), ("conv", "uint8"), ("dw", "int8"), ("add", "int8"), ("add", "uint8")]
    ):
        xq, yq = qparams(rng, dtype), qparams(rng, dtype)
        c, h, w = 4, 9, 37
        inputs[f"x{i}"] = (ints(rng, dtype, (1, c, h, w)), xq)
        if kind == "add":
            inputs[f"b{i}"] = (ints(rng, dtype, (1, c, h, w)), qparams(rng, dtype))
            params: dict[str, Any] = {
                "ifm_multiplier": int(rng.integers(0, 32768)),
                "ifm2_multiplier": int(rng.integers(0, 32768)),
                "ofm_multiplier": int(rng.integers(0, 32768)),
                "post_shift": int(rng.integers(10, 24)),
                "act_min": int(np.iinfo(dtype).min),
                "act_max": int(np.iinfo(dtype).max),
            }
            producer = node(f"p{i}", "add", (f"x{i}", f"b{i}"))
        else:
            groups = c if kind == "dw" else 1
            params = {
                "weights": ints(rng, "int8", (c, c // groups, 3, 3)),
                **_out_stage(rng, c, xq, yq, taps=9 * c // groups, extreme=False),
            }
            producer = node(f"p{i}", "conv2d", (f"x{i}",), strides=[1, 1],
                            padding=[1, 1, 1, 1], dilation=[1, 1], groups=groups)  # fmt: skip
        layers += [(producer, params, yq), _lut(f"lut{i}", f"p{i}", qparams(rng, dtype), rng)]
        outputs.append(f"lut{i}")
    # Declined: the conv's output is also a model output; a lookup int8 -> uint8.
    xq, yq = qparams(rng, "int8"), qparams(rng, "int8")
    inputs["x9"] = (ints(rng, "int8", (1, 4, 9, 37)), xq)
    conv = node("p9", "conv2d", ("x9",), strides=[1, 1], padding=[1, 1, 1, 1],
                dilation=[1, 1], groups=1)  # fmt: skip
    conv_params = {
        "weights": ints(rng, "int8", (4, 4, 3, 3)),
        **_out_stage(rng, 4, xq, yq, 36, False),
    }
    layers += [(conv, conv_params, yq), _lut("lut9", "p9", qparams(rng, "int8"), rng)]
    layers.append(_lut("lut10", "lut9", qparams(rng, "uint8"), rng))
    outputs += ["p9", "lut9", "lut10"]
    return layers, inputs, outputs


def _model(
    layers: list[tuple[Node, dict, QParams]], inputs: dict, outputs: list[str]
) -> QuantizedModel:
    tensors = {name: q for name, (_, q) in inputs.items()}
    tensors.update({n.name: q for n, _, q in layers})
    qlayers = {
        n.name: QLayer(name=n.name, kind=n.op, run_on="npu", reason="",
                       config=LayerQuantConfig(), params=p)
        for n, p, _ in layers
    }  # fmt: skip
    graph = Graph(
        inputs=tuple(
            (name, TensorType(shape=v.shape, dtype="float32")) for name, (v, _) in inputs.items()
        ),
        nodes=tuple(n for n, _, _ in layers),
        outputs=tuple(outputs),
        relax_module=tvm.IRModule(),
    )
    return QuantizedModel(graph=graph, tensors=tensors, layers=qlayers, config=QuantConfig())


def _shaped(
    layers: list[tuple[Node, dict, QParams]], inputs: dict, outputs: list[str]
) -> QuantizedModel:
    """The model with every node's output shape taken from a first executor run."""
    feeds = {n: v for n, (v, _) in inputs.items()}
    env = IntegerExecutor(_model(layers, inputs, outputs)).run(feeds, raw_inputs=True)
    shaped = [
        (replace(n, out=TensorType(shape=env[n.name].values.shape, dtype="float32"))
         if n.out == PLACEHOLDER else n, p, q)
        for n, p, q in layers
    ]  # fmt: skip
    return _model(shaped, inputs, outputs)


def _fused(lowered: tvm.IRModule, target: CpuTarget) -> tvm.IRModule:
    """``lowered`` (:func:`lower_model`'s module) after scheduling and :class:`FuseLookups`."""
    passes = fusion_passes(target) + schedule_passes(target)
    with target.to_tvm():
        return tvm.transform.Sequential(passes)(lowered)


@pytest.mark.parametrize(
    "kind",
    [
        "avx512",
        "avx2",  # vpgatherdd
        pytest.param("generic", marks=pytest.mark.slow),
    ],
)
def test_fused_lookups_are_bit_exact(kind: str) -> None:
    target = _target(kind)
    layers, inputs, outputs = _chains(np.random.default_rng(40))
    qm = _shaped(layers, inputs, outputs)
    lowered = lower_model(qm, raw_inputs=True)  # lowered once: inspected, then compiled
    fused = _fused(lowered, target)
    lookups = [gv.name_hint for gv, f in fused.functions.items() if is_lookup(f)]
    names = {gv.name_hint for gv in fused.functions} - set(lookups)
    made = sorted(n for n in names if n.endswith("_lut"))
    if kind == "avx512":  # lut9 (its input is also an output) and lut10 (int8 -> uint8) stay
        assert len(made) == 5 and len(lookups) == 2, (made, lookups)
    elif kind == "avx2":  # ... and the adds' lookups (their kernels store scalars)
        assert len(made) == 3 and len(lookups) == 3, (made, lookups)
        assert all("conv" in name or "depthwise" in name for name in made), made
    else:  # neither vpermi2b nor vpgatherdd: nothing fused
        assert not made and lookups, (made, lookups)
    feeds = {n: v for n, (v, _) in inputs.items()}
    want = IntegerExecutor(qm).run(feeds, raw_inputs=True)
    vm = relax.VirtualMachine(compile_module(lowered, target), tvm.cpu())
    got = vm["main"](*[tvm.runtime.tensor(feeds[n]) for n, _ in qm.graph.inputs])
    for i, name in enumerate(outputs):
        expected = want[name]
        assert isinstance(expected, IntTensor)
        have = got[i].numpy()
        assert have.dtype == np.dtype(qm.tensors[name].dtype), name
        np.testing.assert_array_equal(
            have.astype(np.int64), expected.values, strict=True, err_msg=name
        )


def _kernel(kind: str) -> tirx.PrimFunc:
    @T.prim_func(private=True, s_tir=True)
    def read_back(X: T.Buffer((64,), "int8"), Y: T.Buffer((64,), "int8")) -> None:
        for i in range(4):
            Y[T.Ramp(i * 16, 1, 16)] = X[T.Ramp(i * 16, 1, 16)]
        for i in range(64):
            Y[i] = X[i] + Y[i]

    @T.prim_func(private=True, s_tir=True)
    def narrow(X: T.Buffer((64,), "int8"), Y: T.Buffer((64,), "int8")) -> None:
        for i in range(8):
            Y[T.Ramp(i * 8, 1, 8)] = X[T.Ramp(i * 8, 1, 8)]

    @T.prim_func(private=True, s_tir=True)
    def stores(X: T.Buffer((64,), "uint8"), Y: T.Buffer((64,), "uint8")) -> None:
        for i in range(2):
            Y[T.Ramp(i * 16, 1, 16)] = X[T.Ramp(i * 16, 1, 16)]
        Y[T.Ramp(32, 1, 32)] = X[T.Ramp(32, 1, 32)]
        for i in range(60, 64):
            Y[i] = X[i]

    return {"read_back": read_back, "narrow": narrow, "stores": stores}[kind]


def test_rewrites_scalar_and_vector_stores_and_declines_a_read_back() -> None:
    assert fuse_lookup(_kernel("read_back")) is None
    assert fuse_lookup(_kernel("narrow")) is None, "8-lane stores stay with the lookup kernel"
    fused = fuse_lookup(_kernel("stores"))
    assert fused is not None
    assert len(fused.params) == 3
    assert fused.script().count("vpermi2var") == 4, fused.script()
    target = _target("avx512")
    lib = tvm.compile(
        tvm.IRModule({"main": fused.with_attr("global_symbol", "main")}), target.to_tvm()
    )
    rng = np.random.default_rng(41)
    x = ints(rng, "uint8", (64,))
    table = ints(rng, "uint8", (256,))
    y = tvm.runtime.tensor(np.zeros(64, np.uint8))
    tbl = lookup_bytes(table.astype(np.int32))
    lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(tbl), y)
    np.testing.assert_array_equal(y.numpy(), table[x], strict=True)


def _gather_kernel() -> tirx.PrimFunc:
    """Vector stores of 8, 32, 16, 4 and 64 lanes and scalar ones, covering ``Y`` once."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(X: T.Buffer((160,), "int8"), Y: T.Buffer((160,), "int8")) -> None:
        for i in range(4):
            Y[T.Ramp(i * 8, 1, 8)] = X[T.Ramp(i * 8, 1, 8)]
        Y[T.Ramp(32, 1, 32)] = X[T.Ramp(32, 1, 32)]
        Y[T.Ramp(64, 1, 16)] = X[T.Ramp(64, 1, 16)]
        Y[T.Ramp(80, 1, 4)] = X[T.Ramp(80, 1, 4)]
        Y[T.Ramp(84, 1, 64)] = X[T.Ramp(84, 1, 64)]
        for j in range(148, 160):
            Y[j] = X[j]

    return kernel


def _scalar_kernel() -> tirx.PrimFunc:
    @T.prim_func(private=True, s_tir=True)
    def kernel(X: T.Buffer((64,), "int8"), Y: T.Buffer((64,), "int8")) -> None:
        for i in range(64):
            Y[i] = X[i]

    return kernel


def test_avx2_gathers_every_vector_width_bit_exact() -> None:
    """AVX2 (no VBMI) looks vectors up with 4-byte ``vpgatherdd`` at byte offsets: every
    entry, 255 included, for 4- to 64-lane stores, with the table right before an
    unreadable page (so its padding is what the last gathers read)."""
    assert fuse_lookup(_gather_kernel(), "vbmi") is None, "vpermi2b takes 16-64 lanes only"
    assert fuse_lookup(_kernel("read_back"), "avx2") is None
    assert fuse_lookup(_scalar_kernel(), "avx2") is None, "scalar stores keep the lookup kernel"
    assert fuse_lookup(_scalar_kernel(), "vbmi") is not None
    fused = fuse_lookup(_gather_kernel(), "avx2")
    assert fused is not None
    script = fused.script()  # the 8-lane store's loop body once, then 32, 16 and 64 lanes
    assert script.count("gather.d.d.256") == 1 + 4 + 2 + 8, script
    assert script.count('gather.d.d"') == 1, script  # the 4-lane store: a 128-bit gather
    target = _target("avx2")
    lib = tvm.compile(
        tvm.IRModule({"main": fused.with_attr("global_symbol", "main")}), target.to_tvm()
    )
    table = ints(np.random.default_rng(42), "int8", (256,))
    tbl = lookup_bytes(table)
    # The table ends where an unreadable page starts: a gather reading past the
    # padding faults (the 4-byte gather at entry 255 reads TBL[255..258]).
    page = mmap.PAGESIZE
    guarded = mmap.mmap(-1, 2 * page)
    start = ctypes.addressof(ctypes.c_char.from_buffer(guarded))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mprotect(ctypes.c_void_p(start + page), page, 0) == 0  # PROT_NONE
    at_end = np.frombuffer(guarded, np.int8, count=tbl.size, offset=page - tbl.size)
    at_end[:] = tbl
    tbl_tensor = tvm_ffi.from_dlpack(at_end, require_alignment=0)  # no copy
    assert np.from_dlpack(tbl_tensor).ctypes.data == start + page - tbl.size
    x = np.arange(-128, 32, dtype=np.int8)  # 160 values: every byte except 32..127
    for shift in (0, 96):  # ... and then those: all 256 entries looked up
        xs = (x.astype(np.int64) + shift).astype(np.int8)
        y = tvm.runtime.tensor(np.zeros(160, np.int8))
        lib["main"](tvm.runtime.tensor(xs), tbl_tensor, y)
        np.testing.assert_array_equal(y.numpy(), table[xs.view(np.uint8)], strict=True)
    del at_end, tbl_tensor


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "size"), [(ORIENTATION, 224), (NUDENET_YOLOV8N, 320)], ids=["orientation", "yolov8n"]
)
def test_real_models_with_fused_lookups_are_bit_exact(model: RealModel, size: int) -> None:
    """Only the graph outputs are returned, so every lookup whose producer has no other
    consumer is fused (MobileNetV3's hardswish/hardsigmoid, YOLOv8's SiLU)."""
    try:
        path = model.path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    qm, feeds = quantize(path, QuantConfig(), {model.input_name: (1, 3, size, size)})
    target = host_target()
    lowered = lower_model(qm)
    fused = _fused(lowered, target)
    assert any(gv.name_hint.endswith("_lut") for gv in fused.functions)
    inputs = [n for n, _ in qm.graph.inputs]
    vm = relax.VirtualMachine(compile_module(lowered, target), tvm.cpu())
    for feed in feeds:
        env = IntegerExecutor(qm).run(feed)
        got = vm["main"](*[tvm.runtime.tensor(feed[n]) for n in inputs])
        for i, out in enumerate(qm.graph.outputs):
            want = env[out]
            want = want.values.astype(want.qparams.dtype) if isinstance(want, IntTensor) else want
            np.testing.assert_array_equal(got[i].numpy(), want, strict=True, err_msg=out)
