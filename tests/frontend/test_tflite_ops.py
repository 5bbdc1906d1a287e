"""Single-operator TFLite models built in memory, checked against TFLite's interpreter.

Each test writes a tiny flatbuffer with :class:`TFLiteGraph` (the ``tflite``
package's generated builders; no TensorFlow needed), imports it with
``load_tflite``, runs it on the CPU and compares with ``ai_edge_litert``.
They cover the operators whose TVM 0.27 conversion npuc replaces:
EXPAND_DIMS, DEQUANTIZE after DENSIFY (sparse fp16 weights) and PRELU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
import tflite
from tflite.BuiltinOperator import BuiltinOperator
from tflite.TensorType import TensorType

from npuc.frontend.tflite import load_tflite
from tests.tooling.cpu import run_relax_on_cpu
from tests.tooling.tflite_fb import finish_model, ints, offsets

_NP_TYPES = {
    "float32": TensorType.FLOAT32,
    "float16": TensorType.FLOAT16,
    "int32": TensorType.INT32,
    "int8": TensorType.INT8,
    "uint8": TensorType.UINT8,
    "int16": TensorType.INT16,
}


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    buffer: int
    quant: tuple[float, int] | None
    sparse_csr: tuple[np.ndarray, np.ndarray] | None


@dataclass
class TFLiteGraph:
    """A one-subgraph TFLite model under construction (test helper).

    ``tensor()`` adds an activation (``data=None``) or a constant; ``op()``
    adds a builtin (by ``BuiltinOperator`` name) or ``CUSTOM:<code>``;
    ``save()`` writes the flatbuffer with the given graph inputs/outputs.
    """

    tensors: list[_Tensor] = field(default_factory=list)
    buffers: list[bytes] = field(default_factory=lambda: [b""])
    ops: list[tuple[str, list[int], list[int]]] = field(default_factory=list)

    def tensor(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: str = "float32",
        data: np.ndarray | None = None,
        quant: tuple[float, int] | None = None,
    ) -> int:
        buffer = 0
        if data is not None:
            self.buffers.append(np.ascontiguousarray(data, dtype=dtype).tobytes())
            buffer = len(self.buffers) - 1
        self.tensors.append(_Tensor(name, shape, dtype, buffer, quant, None))
        return len(self.tensors) - 1

    def sparse(self, name: str, dense: np.ndarray, quant: tuple[float, int] | None = None) -> int:
        """A 2-D constant stored CSR along its last axis (what DENSIFY reads)."""
        rows, cols = np.nonzero(dense)
        segments = np.searchsorted(rows, np.arange(dense.shape[0] + 1)).astype(np.int32)
        self.buffers.append(dense[rows, cols].tobytes())
        dtype = str(dense.dtype)
        t = _Tensor(name, dense.shape, dtype, len(self.buffers) - 1, quant, None)
        t.sparse_csr = (segments, cols.astype(np.int32))
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code: str, inputs: list[int], outputs: list[int]) -> None:
        self.ops.append((code, inputs, outputs))

    def save(self, path: Path, inputs: list[int], outputs: list[int]) -> Path:
        b = flatbuffers.Builder(1024)
        codes = sorted({code for code, _, _ in self.ops})
        code_offs = [_operator_code(b, code) for code in codes]
        tensor_offs = [_tensor(b, t) for t in self.tensors]
        op_offs = []
        for code, ins, outs in self.ops:
            in_vec, out_vec = ints(b, ins), ints(b, outs)
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, codes.index(code))
            tflite.OperatorAddInputs(b, in_vec)
            tflite.OperatorAddOutputs(b, out_vec)
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


def _operator_code(b: flatbuffers.Builder, code: str) -> int:
    custom = b.CreateString(code.split(":", 1)[1]) if code.startswith("CUSTOM:") else None
    builtin = BuiltinOperator.CUSTOM if custom is not None else getattr(BuiltinOperator, code)
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(builtin, 127))
    tflite.OperatorCodeAddBuiltinCode(b, builtin)
    tflite.OperatorCodeAddVersion(b, 1)
    if custom is not None:
        tflite.OperatorCodeAddCustomCode(b, custom)
    return tflite.OperatorCodeEnd(b)


def _tensor(b: flatbuffers.Builder, t: _Tensor) -> int:
    name, shape = b.CreateString(t.name), ints(b, list(t.shape))
    quant = sparsity = None
    if t.quant is not None:
        scale = b.CreateNumpyVector(np.asarray([t.quant[0]], np.float32))
        zero = b.CreateNumpyVector(np.asarray([t.quant[1]], np.int64))
        tflite.QuantizationParametersStart(b)
        tflite.QuantizationParametersAddScale(b, scale)
        tflite.QuantizationParametersAddZeroPoint(b, zero)
        quant = tflite.QuantizationParametersEnd(b)
    if t.sparse_csr is not None:
        sparsity = _csr_sparsity(b, t.shape[0], *t.sparse_csr)
    tflite.TensorStart(b)
    tflite.TensorAddShape(b, shape)
    tflite.TensorAddType(b, _NP_TYPES[t.dtype])
    tflite.TensorAddBuffer(b, t.buffer)
    tflite.TensorAddName(b, name)
    if quant is not None:
        tflite.TensorAddQuantization(b, quant)
    if sparsity is not None:
        tflite.TensorAddSparsity(b, sparsity)
    return tflite.TensorEnd(b)


def _csr_sparsity(b: flatbuffers.Builder, rows: int, segments: np.ndarray, cols: np.ndarray) -> int:
    from tflite.SparseIndexVector import SparseIndexVector

    def int32_vector(values: np.ndarray) -> int:
        vec = b.CreateNumpyVector(values)
        tflite.Int32VectorStart(b)
        tflite.Int32VectorAddValues(b, vec)
        return tflite.Int32VectorEnd(b)

    seg, idx = int32_vector(segments), int32_vector(cols)
    tflite.DimensionMetadataStart(b)
    tflite.DimensionMetadataAddFormat(b, 0)  # DENSE
    tflite.DimensionMetadataAddDenseSize(b, rows)
    dense_dim = tflite.DimensionMetadataEnd(b)
    tflite.DimensionMetadataStart(b)
    tflite.DimensionMetadataAddFormat(b, 1)  # SPARSE_CSR
    tflite.DimensionMetadataAddArraySegmentsType(b, SparseIndexVector.Int32Vector)
    tflite.DimensionMetadataAddArraySegments(b, seg)
    tflite.DimensionMetadataAddArrayIndicesType(b, SparseIndexVector.Int32Vector)
    tflite.DimensionMetadataAddArrayIndices(b, idx)
    csr_dim = tflite.DimensionMetadataEnd(b)
    order, dims = ints(b, [0, 1]), offsets(b, [dense_dim, csr_dim])
    tflite.SparsityParametersStart(b)
    tflite.SparsityParametersAddTraversalOrder(b, order)
    tflite.SparsityParametersAddDimMetadata(b, dims)
    return tflite.SparsityParametersEnd(b)


def run_litert(path: Path, feeds: list[np.ndarray]) -> list[np.ndarray]:
    """TFLite's own interpreter (ai-edge-litert) as the reference."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    for detail, value in zip(interp.get_input_details(), feeds, strict=True):
        interp.set_tensor(detail["index"], value)
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]


def check_against_litert(path: Path, feeds: list[np.ndarray]) -> list[np.ndarray]:
    """Import, run on the CPU and compare every output with litert (fp32, elementwise ops)."""
    mod, info = load_tflite(path)
    assert info.layout == "NHWC" and info.source_format == "tflite"
    ours = run_relax_on_cpu(mod, {t.name: x for t, x in zip(info.inputs, feeds, strict=True)})
    refs = run_litert(path, feeds)
    assert len(ours) == len(refs)
    for got, want, out in zip(ours, refs, info.outputs, strict=True):
        assert got.shape == want.shape == out.shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    return ours


@pytest.mark.parametrize(("axis", "out_shape"), [(1, (2, 1, 3)), (-1, (2, 3, 1)), (0, (1, 2, 3))])
def test_expand_dims(tmp_path: Path, axis: int, out_shape: tuple[int, ...]) -> None:
    g = TFLiteGraph()
    x = g.tensor("x", (2, 3))
    ax = g.tensor("axis", (1,), "int32", np.array([axis]))
    y = g.tensor("y", out_shape)
    g.op("EXPAND_DIMS", [x, ax], [y])
    path = g.save(tmp_path / "expand_dims.tflite", [x], [y])
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    check_against_litert(path, [data])


@pytest.mark.parametrize(
    ("dtype", "quant"), [("float16", None), ("int8", (0.05, 3))], ids=["fp16", "int8"]
)
def test_densify_then_dequantize(
    tmp_path: Path, dtype: str, quant: tuple[float, int] | None
) -> None:
    rng = np.random.default_rng(1)
    dense = (rng.standard_normal((4, 6)) * (1 if quant is None else 40)).astype(dtype)
    dense[rng.random((4, 6)) < 0.6] = 0
    dense[2] = 0  # an all-zero row: an empty CSR segment
    g = TFLiteGraph()
    x = g.tensor("x", (4, 6))
    w_sparse = g.sparse("w_sparse", dense, quant)
    w_dense = g.tensor("w_dense", (4, 6), dtype, quant=quant)
    w = g.tensor("w", (4, 6))
    y = g.tensor("y", (4, 6))
    g.op("DENSIFY", [w_sparse], [w_dense])
    g.op("DEQUANTIZE", [w_dense], [w])
    g.op("ADD", [x, w], [y])
    path = g.save(tmp_path / "densify.tflite", [x], [y])
    (got,) = check_against_litert(path, [np.zeros((4, 6), np.float32)])
    scale, zero = quant or (1.0, 0)
    want = (dense.astype(np.float32) - zero) * np.float32(scale)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("alpha_shape", [(1, 1, 3), (3,), (4, 5, 3)])
def test_prelu(tmp_path: Path, alpha_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(2)
    alpha = rng.uniform(0.05, 0.5, alpha_shape).astype(np.float32)
    g = TFLiteGraph()
    x = g.tensor("x", (1, 4, 5, 3))
    a = g.tensor("alpha", alpha_shape, data=alpha)
    y = g.tensor("y", (1, 4, 5, 3))
    g.op("PRELU", [x, a], [y])
    path = g.save(tmp_path / "prelu.tflite", [x], [y])
    check_against_litert(path, [rng.standard_normal((1, 4, 5, 3)).astype(np.float32)])
    # Per-channel alpha stays a C-vector on nn.prelu (TVM 0.27 broadcasts it to
    # the activation's size); any other alpha shape goes through where().
    script = load_tflite(path).mod.script()
    per_channel = alpha_shape != (4, 5, 3)
    assert ("R.nn.prelu" in script) == per_channel
    assert ("R.where" in script) != per_channel
    assert "R.shape([1, 4, 5, 3])" not in script  # no activation-sized alpha
