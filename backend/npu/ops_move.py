"""Data-movement NPU ops (part of the seam, re-exported by :mod:`npuc.backend.npu.ops`).

Requires / guarantees: as for :mod:`npuc.backend.npu.ops`; data movement
copies bytes, so input and output must be quantized alike (UnsupportedError
otherwise, with the hint to insert an NpuRequant).
"""

from __future__ import annotations

from dataclasses import dataclass

from npuc.backend.npu.tensor import NpuTensor, fail, same_quant
from npuc.core.errors import UnsupportedError


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuConcat:
    """Concatenation along ``axis`` (1 = h, 2 = w, 3 = c) by DMA; all quantized alike."""

    name: str
    ifms: tuple[NpuTensor, ...]
    ofm: NpuTensor
    axis: int

    def validate(self) -> None:
        """Raise naming the op: shapes agree off the axis, sizes add up, same quantization."""
        if self.axis not in (1, 2, 3) or not self.ifms:
            raise fail(self.name, f"axis {self.axis} must be 1, 2 or 3 with at least one ifm")
        total = 0
        for t in self.ifms:
            same_quant(self.name, t, self.ofm)
            off = [d for i, d in enumerate(t.shape) if i != self.axis]
            if off != [d for i, d in enumerate(self.ofm.shape) if i != self.axis]:
                raise fail(self.name, f"{t.name} {t.shape} does not match ofm {self.ofm.shape}")
            total += t.shape[self.axis]
        if total != self.ofm.shape[self.axis]:
            raise fail(self.name, f"sizes along axis {self.axis} add to {total}")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuSlice:
    """``ofm = ifm[:, h0:h0+oh, w0:w0+ow, c0:c0+oc]`` by DMA; ``begin = (0, h0, w0, c0)``."""

    name: str
    ifm: NpuTensor
    ofm: NpuTensor
    begin: tuple[int, int, int, int]

    def validate(self) -> None:
        """Raise naming the op if the box leaves the input or the quantization differs."""
        same_quant(self.name, self.ifm, self.ofm)
        if any(
            b < 0 or b + o > i
            for b, o, i in zip(self.begin, self.ofm.shape, self.ifm.shape, strict=True)
        ):
            raise fail(self.name, f"slice {self.begin} + {self.ofm.shape} leaves {self.ifm.shape}")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuReshape:
    """Same bytes under a new shape (a DMA copy between DRAM tensors)."""

    name: str
    ifm: NpuTensor
    ofm: NpuTensor

    def validate(self) -> None:
        """Raise naming the op if the element count or quantization differs."""
        same_quant(self.name, self.ifm, self.ofm)
        if self.ifm.elements != self.ofm.elements:
            raise fail(self.name, f"{self.ifm.shape} -> {self.ofm.shape} change the size")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuPad:
    """Spatial zero padding by DMA: the border holds ``ofm.zero_point`` (quantized zero).

    ``padding`` is ``(top, left, bottom, right)``; channels are not padded.
    """

    name: str
    ifm: NpuTensor
    ofm: NpuTensor
    padding: tuple[int, int, int, int]

    def validate(self) -> None:
        """Raise naming the op if the shapes do not match the padding or quantization differs."""
        same_quant(self.name, self.ifm, self.ofm)
        t, left, b, r = self.padding
        _, h, w, c = self.ifm.shape
        if min(self.padding) < 0 or self.ofm.shape != (1, h + t + b, w + left + r, c):
            raise fail(
                self.name, f"{self.ifm.shape} padded by {self.padding} is not {self.ofm.shape}"
            )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuResize:
    """Nearest-neighbour upsampling by integer factors: ``ofm[y, x] = ifm[y // fh, x // fw]``.

    Other scales and bilinear resize are not supported yet (UnsupportedError).
    """

    name: str
    ifm: NpuTensor
    ofm: NpuTensor

    @property
    def factors(self) -> tuple[int, int]:
        return self.ofm.shape[1] // self.ifm.shape[1], self.ofm.shape[2] // self.ifm.shape[2]

    def validate(self) -> None:
        """Raise naming the op unless the output is an integer multiple of the input."""
        same_quant(self.name, self.ifm, self.ofm)
        (_, h, w, c), (_, oh, ow, oc) = self.ifm.shape, self.ofm.shape
        if oh % h or ow % w or oc != c:
            raise UnsupportedError(
                f"NPU op {self.name!r}: nearest resize {self.ifm.shape} -> {self.ofm.shape} is"
                " not an integer upsampling; the NPU lowering supports integer factors only"
            )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuTranspose:
    """Permutation of the h, w, c axes by strided DMA: ``perm`` as numpy's, with ``perm[0] = 0``."""

    name: str
    ifm: NpuTensor
    ofm: NpuTensor
    perm: tuple[int, int, int, int]

    def validate(self) -> None:
        """Raise naming the op if ``perm`` is no permutation keeping N first or shapes differ."""
        same_quant(self.name, self.ifm, self.ofm)
        if sorted(self.perm) != [0, 1, 2, 3] or self.perm[0] != 0:
            raise fail(self.name, f"perm {self.perm} must permute (1, 2, 3) after 0")
        if tuple(self.ifm.shape[p] for p in self.perm) != self.ofm.shape:
            raise fail(
                self.name, f"{self.ifm.shape} permuted by {self.perm} is not {self.ofm.shape}"
            )
