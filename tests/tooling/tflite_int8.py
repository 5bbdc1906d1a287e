"""Small full-int8 TFLite models built in memory (no TensorFlow), as TFLite's converter writes them.

:class:`Int8Graph` writes a flatbuffer with the ``tflite`` package's builders:
int8 activations with one scale and zero point each, int8 weights with
symmetric per-channel scales (axis 0 for CONV_2D/FULLY_CONNECTED, axis 3 for
DEPTHWISE_CONV_2D; or one scale with ``per_axis=False``), int32 biases with
scale ``s_in * s_w``, fused activations in the options. Output scales are
chosen from the expected spread of the sums (3 standard deviations of random
int8 data fill the range) so that the outputs use the int8 range without
saturating everywhere. :func:`run_litert` runs a file with TFLite's reference
interpreter (``ai_edge_litert``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import tflite
from tflite.ActivationFunctionType import ActivationFunctionType
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.TensorType import TensorType

from tests.tooling.tflite_fb import finish_model, ints

_TYPES = {
    "float32": TensorType.FLOAT32,
    "int32": TensorType.INT32,
    "int8": TensorType.INT8,
    "int16": TensorType.INT16,
    "uint8": TensorType.UINT8,
}
ACT = {
    "none": ActivationFunctionType.NONE,
    "relu": ActivationFunctionType.RELU,
    "relu6": ActivationFunctionType.RELU6,
}


@dataclass(frozen=True)
class Q:
    """A tensor's index and quantization (per-tensor activations)."""

    index: int
    scale: float
    zp: int


@dataclass
class Int8Graph:
    """A one-subgraph full-int8 model under construction (module docstring)."""

    seed: int = 0
    tensors: list[dict[str, Any]] = field(default_factory=list)
    buffers: list[bytes] = field(default_factory=lambda: [b""])
    ops: list[tuple[str, list[int], list[int], Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def tensor(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: str = "int8",
        *,
        data: np.ndarray | None = None,
        scale: Any = None,
        zp: Any = 0,
        axis: int = 0,
    ) -> int:
        buffer = 0
        if data is not None:
            self.buffers.append(np.ascontiguousarray(data, dtype=dtype).tobytes())
            buffer = len(self.buffers) - 1
        quant = None
        if scale is not None:
            s = np.atleast_1d(np.asarray(scale, np.float32))
            quant = (s, np.broadcast_to(np.atleast_1d(np.asarray(zp, np.int64)), s.shape), axis)
        self.tensors.append(
            {"name": name, "shape": shape, "dtype": dtype, "buffer": buffer, "quant": quant}
        )
        return len(self.tensors) - 1

    def act(
        self, name: str, shape: tuple[int, ...], scale: float, zp: int, dtype: str = "int8"
    ) -> Q:
        return Q(self.tensor(name, shape, dtype, scale=scale, zp=zp), float(np.float32(scale)), zp)

    def edge(self, code: str, name: str, x: int, shape: tuple[int, ...], out: Q | None) -> int:
        """QUANTIZE (to ``out``'s parameters) or DEQUANTIZE (``out`` None: float32) of ``x``."""
        y = out.index if out is not None else self.tensor(name, shape, "float32")
        self.ops.append((code, [x], [y], None))
        return y

    def _out_q(self, sigma: float, act: str) -> tuple[float, int]:
        return (3 * sigma / 127, 0) if act == "none" else (6 * sigma / 255, -128)

    def conv(
        self,
        name: str,
        x: Q,
        shape: tuple[int, ...],
        cout: int,
        k: int,
        *,
        stride: int = 1,
        act: str = "relu",
        depthwise: bool = False,
        per_axis: bool = True,
        padding: str = "SAME",
        bias_max: int = 3000,
    ) -> tuple[Q, tuple[int, ...]]:
        """CONV_2D (OHWI) or DEPTHWISE_CONV_2D (1HWC, cout = cin) on NHWC ``x``."""
        n, h, w, cin = shape
        wshape = (1, k, k, cin) if depthwise else (cout, k, k, cin)
        w_int = self.rng.integers(-127, 128, wshape, dtype=np.int64)
        ch = cin if depthwise else cout
        s_w = (self.rng.uniform(0.5, 1.5, ch) * 0.01) if per_axis else np.array([0.01])
        s_w = s_w.astype(np.float32)
        fan = k * k * (1 if depthwise else cin)
        sigma = float(np.sqrt(fan) * 74 * 73 * x.scale * float(np.mean(s_w)))
        bias_scale = (np.float32(x.scale) * s_w).astype(np.float32)
        bias = self.rng.integers(-bias_max, bias_max, ch).astype(np.int32)
        wt = self.tensor(
            f"{name}/weights",
            wshape,
            data=w_int.astype(np.int8),
            scale=s_w,
            zp=0,
            axis=3 if depthwise else 0,
        )
        bt = self.tensor(f"{name}/bias", (ch,), "int32", data=bias, scale=bias_scale, zp=0)
        pad = k // 2 if padding == "SAME" else 0
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        out_shape = (n, oh, ow, ch)
        y = self.act(name, out_shape, *self._out_q(sigma, act))
        opts = ("DEPTHWISE" if depthwise else "CONV", padding, stride, act)
        self.ops.append(
            ("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x.index, wt, bt], [y.index], opts)
        )
        return y, out_shape

    def add(self, name: str, a: Q, b: Q, shape: tuple[int, ...], act: str = "none") -> Q:
        sigma = float(np.hypot(a.scale, b.scale)) * 74
        y = self.act(name, shape, *self._out_q(sigma, act))
        self.ops.append(("ADD", [a.index, b.index], [y.index], ("ADD", act)))
        return y

    def avgpool(self, name: str, x: Q, shape: tuple[int, ...], k: int) -> tuple[Q, tuple[int, ...]]:
        out_shape = (shape[0], shape[1] // k, shape[2] // k, shape[3])
        y = self.act(name, out_shape, x.scale, x.zp)  # TFLite keeps the input's parameters
        self.ops.append(("AVERAGE_POOL_2D", [x.index], [y.index], ("POOL", k)))
        return y, out_shape

    def fully_connected(self, name: str, x: Q, k: int, n: int, act: str = "none") -> Q:
        w_int = self.rng.integers(-127, 128, (n, k), dtype=np.int64)
        s_w = (self.rng.uniform(0.5, 1.5, n) * 0.01).astype(np.float32)
        wt = self.tensor(f"{name}/weights", (n, k), data=w_int.astype(np.int8), scale=s_w)
        bias = self.rng.integers(-3000, 3000, n).astype(np.int32)
        bt = self.tensor(
            f"{name}/bias",
            (n,),
            "int32",
            data=bias,
            scale=(np.float32(x.scale) * s_w).astype(np.float32),
        )
        sigma = float(np.sqrt(k) * 74 * 73 * x.scale * float(np.mean(s_w)))
        y = self.act(name, (1, n), *self._out_q(sigma, act))
        self.ops.append(("FULLY_CONNECTED", [x.index, wt, bt], [y.index], ("FC", act)))
        return y

    def reshape(self, name: str, x: Q, shape: tuple[int, ...]) -> Q:
        y = self.act(name, shape, x.scale, x.zp)
        new = self.tensor(f"{name}/shape", (len(shape),), "int32", data=np.asarray(shape, np.int32))
        self.ops.append(("RESHAPE", [x.index, new], [y.index], None))
        return y

    def pad(self, name: str, x: Q, shape: tuple[int, ...], p: int) -> tuple[Q, tuple[int, ...]]:
        """Zero-point padding of ``p`` rows and columns on each side (Keras ZeroPadding2D)."""
        out_shape = (shape[0], shape[1] + 2 * p, shape[2] + 2 * p, shape[3])
        y = self.act(name, out_shape, x.scale, x.zp)
        pads = np.asarray([[0, 0], [p, p], [p, p], [0, 0]], np.int32)
        pt = self.tensor(f"{name}/paddings", (4, 2), "int32", data=pads)
        self.ops.append(("PAD", [x.index, pt], [y.index], None))
        return y, out_shape

    def save(self, path: Path, inputs: list[int], outputs: list[int]) -> Path:
        b = flatbuffers.Builder(4096)
        codes = sorted({op[0] for op in self.ops})
        code_offs = [_opcode(b, c) for c in codes]
        tensor_offs = [_tensor(b, t) for t in self.tensors]
        op_offs = []
        for code, ins, outs, opts in self.ops:
            kind, table = _options(b, opts)
            in_vec, out_vec = ints(b, ins), ints(b, outs)
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, codes.index(code))
            tflite.OperatorAddInputs(b, in_vec)
            tflite.OperatorAddOutputs(b, out_vec)
            if table is not None:
                tflite.OperatorAddBuiltinOptionsType(b, kind)
                tflite.OperatorAddBuiltinOptions(b, table)
            op_offs.append(tflite.OperatorEnd(b))
        return finish_model(
            b,
            code_offs=code_offs,
            tensor_offs=tensor_offs,
            op_offs=op_offs,
            inputs=inputs,
            outputs=outputs,
            buffers=self.buffers,
            path=path,
        )


_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "RESHAPE": 1}


def _opcode(b: flatbuffers.Builder, code: str) -> int:
    builtin = getattr(BuiltinOperator, code)
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(builtin, 127))
    tflite.OperatorCodeAddBuiltinCode(b, builtin)
    tflite.OperatorCodeAddVersion(b, _VERSIONS.get(code, 2))
    return tflite.OperatorCodeEnd(b)


def _tensor(b: flatbuffers.Builder, t: dict[str, Any]) -> int:
    name, shape = b.CreateString(t["name"]), ints(b, list(t["shape"]))
    quant = None
    if t["quant"] is not None:
        scale, zp, axis = t["quant"]
        s_vec, z_vec = b.CreateNumpyVector(scale), b.CreateNumpyVector(np.asarray(zp, np.int64))
        tflite.QuantizationParametersStart(b)
        tflite.QuantizationParametersAddScale(b, s_vec)
        tflite.QuantizationParametersAddZeroPoint(b, z_vec)
        tflite.QuantizationParametersAddQuantizedDimension(b, axis)
        quant = tflite.QuantizationParametersEnd(b)
    tflite.TensorStart(b)
    tflite.TensorAddShape(b, shape)
    tflite.TensorAddType(b, _TYPES[t["dtype"]])
    tflite.TensorAddBuffer(b, t["buffer"])
    tflite.TensorAddName(b, name)
    if quant is not None:
        tflite.TensorAddQuantization(b, quant)
    return tflite.TensorEnd(b)


def _options(b: flatbuffers.Builder, opts: Any) -> tuple[int, int | None]:
    if opts is None:
        return 0, None
    kind = opts[0]
    if kind in ("CONV", "DEPTHWISE"):
        _, padding, stride, act = opts
        pre = "DepthwiseConv2DOptions" if kind == "DEPTHWISE" else "Conv2DOptions"
        getattr(tflite, f"{pre}Start")(b)
        getattr(tflite, f"{pre}AddPadding")(b, 0 if padding == "SAME" else 1)
        getattr(tflite, f"{pre}AddStrideW")(b, stride)
        getattr(tflite, f"{pre}AddStrideH")(b, stride)
        getattr(tflite, f"{pre}AddDilationWFactor")(b, 1)
        getattr(tflite, f"{pre}AddDilationHFactor")(b, 1)
        getattr(tflite, f"{pre}AddFusedActivationFunction")(b, ACT[act])
        if kind == "DEPTHWISE":
            tflite.DepthwiseConv2DOptionsAddDepthMultiplier(b, 1)
        return getattr(BuiltinOptions, pre), getattr(tflite, f"{pre}End")(b)
    if kind == "ADD":
        tflite.AddOptionsStart(b)
        tflite.AddOptionsAddFusedActivationFunction(b, ACT[opts[1]])
        return BuiltinOptions.AddOptions, tflite.AddOptionsEnd(b)
    if kind == "FC":
        tflite.FullyConnectedOptionsStart(b)
        tflite.FullyConnectedOptionsAddFusedActivationFunction(b, ACT[opts[1]])
        return BuiltinOptions.FullyConnectedOptions, tflite.FullyConnectedOptionsEnd(b)
    k = opts[1]
    tflite.Pool2DOptionsStart(b)
    tflite.Pool2DOptionsAddPadding(b, 1)  # VALID
    for add in (
        tflite.Pool2DOptionsAddStrideW,
        tflite.Pool2DOptionsAddStrideH,
        tflite.Pool2DOptionsAddFilterWidth,
        tflite.Pool2DOptionsAddFilterHeight,
    ):
        add(b, k)
    return BuiltinOptions.Pool2DOptions, tflite.Pool2DOptionsEnd(b)


def run_litert(path: Path, feed: np.ndarray) -> np.ndarray:
    """The int8 output of TFLite's interpreter for one int8 input."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], feed)
    interp.invoke()
    return np.asarray(interp.get_tensor(interp.get_output_details()[0]["index"]))


KINDS = ("conv_relu", "depthwise", "residual_add", "pool_fc", "per_tensor", "big_bias", "pad_conv")
IN_SCALE, IN_ZP = 0.02, -3


def int8_model(path: Path, kind: str, seed: int = 0) -> Path:
    """One of :data:`KINDS` as a full-int8 file at ``path`` (input ``x``: (1, 16, 16, 8) int8).

    ``conv_relu``: 3x3 conv with fused ReLU; ``depthwise``: 1x1 conv (ReLU6), 3x3
    depthwise stride 2 (ReLU6), 1x1 conv; ``residual_add``: two 3x3 convs and an
    ADD of their outputs; ``pool_fc``: conv, 2x2 average pool, reshape, fully
    connected; ``per_tensor``: ``depthwise`` with one weight scale per tensor;
    ``big_bias``: ``conv_relu`` with int32 biases up to 200000 (beyond 16 bits);
    ``pad_conv``: PAD then a VALID stride-2 conv (the midend folds the pad).
    """
    g = Int8Graph(seed=seed)
    shape: tuple[int, ...] = (1, 16, 16, 8)
    x = g.act("x", shape, IN_SCALE, IN_ZP)
    if kind == "conv_relu":
        y, _ = g.conv("conv", x, shape, 16, 3)
    elif kind == "pad_conv":
        p, s = g.pad("pad", x, shape, 1)
        y, _ = g.conv("conv", p, s, 16, 3, stride=2, padding="VALID")
    elif kind == "big_bias":
        y, _ = g.conv("conv", x, shape, 16, 3, bias_max=200_000)
    elif kind in ("depthwise", "per_tensor"):
        per = kind == "depthwise"
        a, s = g.conv("expand", x, shape, 16, 1, act="relu6", per_axis=per)
        d, s = g.conv("dw", a, s, 16, 3, stride=2, act="relu6", depthwise=True, per_axis=per)
        y, _ = g.conv("project", d, s, 8, 1, act="none", per_axis=per)
    elif kind == "residual_add":
        a, s = g.conv("c1", x, shape, 8, 3)
        b, s = g.conv("c2", a, s, 8, 3, act="none")
        y = g.add("add", a, b, s)
    elif kind == "pool_fc":
        a, s = g.conv("c1", x, shape, 8, 3)
        p, s = g.avgpool("pool", a, s, 2)
        flat = g.reshape("flatten", p, (1, int(np.prod(s))))
        y = g.fully_connected("fc", flat, int(np.prod(s)), 10)
    else:
        raise ValueError(kind)
    return g.save(path, [x.index], [y.index])


def edge_model(path: Path, kind: str, seed: int = 0) -> Path:
    """``float_io``: float32 ``x`` -> QUANTIZE -> 3x3 conv (ReLU) -> DEQUANTIZE -> float32;
    ``uint8_io``: uint8 ``x`` (zero point 125) -> QUANTIZE to int8 -> 3x3 conv -> QUANTIZE to
    uint8 (TFLite's converter with uint8 inference types writes these requantize ops)."""
    g = Int8Graph(seed=seed)
    shape = (1, 16, 16, 8)
    if kind == "float_io":
        x = g.tensor("x", shape, "float32")
        q = g.act("x_int8", shape, IN_SCALE, IN_ZP)
        g.edge("QUANTIZE", "", x, shape, q)
        y, s = g.conv("conv", q, shape, 16, 3)
        out = g.edge("DEQUANTIZE", "y", y.index, s, None)
    else:
        x = g.tensor("x", shape, "uint8", scale=IN_SCALE, zp=IN_ZP + 128)
        q = g.act("x_int8", shape, IN_SCALE, IN_ZP)
        g.edge("QUANTIZE", "", x, shape, q)
        y, s = g.conv("conv", q, shape, 16, 3)
        u = g.act("y", s, y.scale, y.zp + 128, "uint8")
        out = g.edge("QUANTIZE", "", y.index, s, u)
    return g.save(path, [x], [out])


def int8_inputs(count: int, seed: int = 1) -> list[np.ndarray]:
    """Random int8 inputs for :func:`int8_model`."""
    rng = np.random.default_rng(seed)
    return [
        rng.integers(-128, 128, (1, 16, 16, 8), dtype=np.int64).astype(np.int8)
        for _ in range(count)
    ]
