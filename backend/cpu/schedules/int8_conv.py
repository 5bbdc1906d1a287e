"""Schedule rule: the integer convolution kernels of :mod:`npuc.backend.cpu.qlower.int8_conv`
get the target's exact int8 dot products.

Requires: a PrimFunc tagged with :data:`~.int8_kernel.SPEC_ATTR` (made by
:func:`~.int8_kernel.make_kernel` or, for one-row dense layers,
:func:`~.int8_matvec.make_matvec`; any other function is left to the next
rule). Guarantees: the same function (same parameters, same results bit for
bit) rebuilt for the target: on AMX tiles (:mod:`.int8_amx`) where the target has
``amx-tile`` and ``amx-int8`` and the layer fits them, else with :func:`dot_kind`
of the target: AVX-512 VNNI where the target has ``avx512vnni`` (and
``avx512bw``), AVX-VNNI where it has ``avxvnni``, ``vpmaddwd`` on AVX2, the
generic vector form otherwise. The kernel is chosen from the
:class:`~npuc.core.target.CpuTarget`, never from the build machine.
"""

from __future__ import annotations

from tvm import tirx

from npuc.backend.cpu.schedules.int8_amx import amx_eligible, has_amx, make_amx_kernel
from npuc.backend.cpu.schedules.int8_kernel import (
    AVX2,
    AVXVNNI,
    GENERIC,
    SPEC_ATTR,
    VNNI512,
    ConvKernelSpec,
    DotKind,
    make_kernel,
)
from npuc.backend.cpu.schedules.int8_matvec import make_matvec
from npuc.core.target import CpuTarget


def dot_kind(target: CpuTarget) -> DotKind:
    """The int8 dot product ``target`` runs fastest, exactly (see the module docstring)."""
    if target.has_avx512_vnni and "avx512bw" in target.features:
        return VNNI512
    if target.has_avx_vnni:
        return AVXVNNI
    if "avx2" in target.features:
        return AVX2
    return GENERIC


class Int8ConvRule:
    """Rebuild tagged integer convolution kernels for the target (module docstring)."""

    name = "int8_conv"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The kernel with ``target``'s dot products; None for any other function."""
        attrs = func.attrs
        if attrs is None or SPEC_ATTR not in attrs:
            return None
        spec = ConvKernelSpec.from_attr(attrs[SPEC_ATTR])
        if has_amx(target) and amx_eligible(spec):
            kernel = make_amx_kernel(spec)
        else:
            kernel = (make_matvec if spec.matvec else make_kernel)(spec, dot_kind(target))
        for key, value in attrs.items():
            kernel = kernel.with_attr(key, value)
        return kernel
