"""Build small convolution graphs and compile them with and without a schedule rule.

The schedule tests compare a rule's kernel with the unscheduled loop nest of
the same fused module (same math, different loop order), on an AVX2 target
and, where this machine runs it, an AVX-512 one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import tvm
from tvm import relax, tirx

from npuc.backend.cpu.lowering import fusion_passes, lower_passes
from npuc.backend.cpu.prepack_weights import PrepackWeights
from npuc.backend.cpu.schedules import ScheduleRule
from npuc.core.target import CpuTarget, host_target

#: AVX2 and FMA, no AVX-512, as on AMD Zen 3; compiled for Haswell: LLVM's znver3 code may use
#: AMD-only SSE4a instructions (insertq) that fault on Intel hosts, Haswell code runs on both.
AVX2 = CpuTarget(cpu_name="haswell", features=("avx", "avx2", "fma"), num_cores=2)


def targets() -> list[CpuTarget]:
    """AVX2 always; the host too when it has AVX-512 (its code only runs there)."""
    host = host_target(num_cores=2)
    return [AVX2, host] if host.has_avx512 else [AVX2]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvCase:
    """One conv2d (+ epilogue) graph: NCHW input, OIHW weight."""

    channels: int
    filters: int
    size: tuple[int, int]
    kernel: tuple[int, int] = (3, 3)
    stride: int = 1
    padding: int | tuple[int, int, int, int] = 0
    """Rows and columns of zeros on every side, or (top, left, bottom, right)."""
    dilation: int = 1
    groups: int = 1
    epilogue: str = "bias_relu"  # "none", "bias_relu", "clip", "residual", "silu"

    def __str__(self) -> str:
        pad = "-".join(map(str, self.padding)) if isinstance(self.padding, tuple) else self.padding
        return (
            f"c{self.channels}k{self.filters}_{self.size[0]}x{self.size[1]}_"
            f"k{self.kernel[0]}x{self.kernel[1]}_s{self.stride}p{pad}"
            f"d{self.dilation}g{self.groups}_{self.epilogue}"
        )

    def module(self, seed: int = 0) -> tvm.IRModule:
        rng = np.random.default_rng(seed)
        shape = (1, self.channels, *self.size)
        weight = rng.standard_normal(
            (self.filters, self.channels // self.groups, *self.kernel)
        ).astype(np.float32)
        bias = rng.standard_normal((1, self.filters, 1, 1)).astype(np.float32)
        x = relax.Var("x", relax.TensorType(shape, "float32"))
        params = [x]
        bb = relax.BlockBuilder()
        residual = None
        if self.epilogue == "residual":
            out_shape = self.out_shape()
            residual = relax.Var("r", relax.TensorType(out_shape, "float32"))
            params.append(residual)
        with bb.function("main", params):
            with bb.dataflow():
                y = bb.emit(
                    relax.op.nn.conv2d(
                        x,
                        relax.const(weight),
                        strides=self.stride,
                        padding=self.padding,
                        dilation=self.dilation,
                        groups=self.groups,
                    )
                )
                if self.epilogue != "none":
                    y = bb.emit(relax.op.add(y, relax.const(bias)))
                if self.epilogue == "bias_relu":
                    y = bb.emit(relax.op.nn.relu(y))
                elif self.epilogue == "clip":
                    y = bb.emit(relax.op.clip(y, 0.0, 6.0))
                elif self.epilogue == "silu":  # two readers of the conv result
                    y = bb.emit(relax.op.multiply(y, relax.op.sigmoid(y)))
                elif residual is not None:
                    y = bb.emit(relax.op.nn.relu(relax.op.add(y, residual)))
                out = bb.emit_output(y)
            bb.emit_func_output(out)
        return bb.get()

    def out_shape(self) -> tuple[int, int, int, int]:
        pad = self.padding if isinstance(self.padding, tuple) else (self.padding,) * 4
        dims = []
        for axis, (size, kernel) in enumerate(zip(self.size, self.kernel, strict=True)):
            span = self.dilation * (kernel - 1) + 1
            dims.append((size + pad[axis] + pad[axis + 2] - span) // self.stride + 1)
        return (1, self.filters, dims[0], dims[1])

    def inputs(self, seed: int = 1) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        arrays = [rng.standard_normal((1, self.channels, *self.size)).astype(np.float32)]
        if self.epilogue == "residual":
            arrays.append(rng.standard_normal(self.out_shape()).astype(np.float32))
        return arrays


def schedule_with(
    mod: tvm.IRModule, target: CpuTarget, rule: ScheduleRule | None
) -> tuple[tvm.IRModule, list[str]]:
    """Fuse ``mod``; apply ``rule`` to every PrimFunc it accepts; return it and their names."""
    mod = tvm.transform.Sequential(fusion_passes(target))(mod)
    applied = []
    if rule is not None:
        for gvar, func in list(mod.functions.items()):
            if isinstance(func, tirx.PrimFunc):
                scheduled = rule.apply(func, target)
                if scheduled is not None:
                    mod[gvar] = scheduled
                    applied.append(gvar.name_hint)
        mod = PrepackWeights()(mod)
    return mod, applied


def run(mod: tvm.IRModule, target: CpuTarget, inputs: list[np.ndarray]) -> np.ndarray:
    """Lower and compile a fused module for ``target`` and run ``main`` on ``inputs``."""
    mod = tvm.transform.Sequential(lower_passes())(mod)
    executable = tvm.compile(mod, target.to_tvm())
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(a) for a in inputs]).numpy()


class RuleCase(Protocol):
    """A test graph: its Relax module and its inputs."""

    def module(self) -> tvm.IRModule: ...

    def inputs(self) -> list[np.ndarray]: ...


def check_rule_matches_unscheduled(case: RuleCase, target: CpuTarget, rule: ScheduleRule) -> None:
    """``rule`` applies to ``case``'s one kernel, packs its weights at compile time, and gives
    the unscheduled loop nest's result (rtol/atol 1e-5: float sums in another order)."""
    module = case.module()
    want = run(schedule_with(module, target, None)[0], target, case.inputs())
    scheduled, applied = schedule_with(module, target, rule)
    assert len(applied) == 1, f"{rule.name} did not apply to {case}"
    names = [gvar.name_hint for gvar in scheduled.functions]
    assert not any("weight_prepack" in name for name in names), "packing left for run time"
    got = run(scheduled, target, case.inputs())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
