"""The Relax pipeline that turns a midend-optimised module into VM code for the CPU.

Requires: a Relax module as ``npuc.midend.pipeline.optimize`` returns it —
target-independent graph passes done, high-level Relax operators left.

Guarantees: a module that ``relax.build`` can hand to the TIR pipeline and
the VM code generator, with static memory planning. The pass list is TVM's
CPU default (``tvm.relax.backend.cpu_generic``), written out so that every
step is visible here: legalize to TIR (:class:`.legalize_ops.LegalizeOps`),
fuse (:class:`.fuse_ops.FuseOps`), schedule, lower.

Seam for the CPU-performance work: TIR schedules (hand rules, dlight,
MetaSchedule databases) are applied where :func:`schedule_passes` sits —
after legalization and fusion, before the dataflow is lowered. They choose
their kernels from the :class:`~npuc.core.target.CpuTarget` they are
given (:mod:`.schedule_pass`: the rules of :mod:`.schedules` in order, then
the parallel-and-vectorise fallback).
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.s_tir import meta_schedule as ms

from npuc.backend.cpu.fuse_lut import FuseLookups
from npuc.backend.cpu.fuse_ops import FuseOps
from npuc.backend.cpu.legalize_ops import LegalizeOps
from npuc.backend.cpu.lift_weight_transforms import LiftWeightTransforms
from npuc.backend.cpu.prepack_weights import PrepackWeights
from npuc.backend.cpu.quantize_weights_int8 import QuantizeWeightsInt8
from npuc.backend.cpu.reciprocal_divide import ReciprocalDivide
from npuc.backend.cpu.schedule_pass import ScheduleCpu, ScheduleReport
from npuc.backend.cpu.store_weights_fp16 import StoreWeightsFp16
from npuc.backend.cpu.weight_storage import WEIGHT_PRECISIONS
from npuc.core.target import CpuTarget


def weight_passes(precision: str = "float") -> list[tvm.transform.Pass]:
    """How the library stores its weights (``npuc build --precision``).

    ``float``: as float32 constants (no pass). ``weight-int8`` / ``fp16-weights``:
    convolution and matmul weights stored as int8 + per-channel scale / float16,
    turned back into float32 once at load (:class:`.lift_weight_transforms.LiftWeightTransforms`).

    Raises
    ------
    ValueError
        ``precision`` is not one of :data:`~.weight_storage.WEIGHT_PRECISIONS`.
    """
    if precision not in WEIGHT_PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(WEIGHT_PRECISIONS)}")
    if precision == "weight-int8":
        return [QuantizeWeightsInt8()]
    if precision == "fp16-weights":
        return [StoreWeightsFp16()]
    return []


def fusion_passes(target: CpuTarget, fuse_opt_level: int = 2) -> list[tvm.transform.Pass]:
    """Relax operators -> fused TIR PrimFuncs: the graph part of CPU code generation.

    Parameters
    ----------
    target
        Picks the TOPI kernels of sort/scan/sampling.
    fuse_opt_level
        See :class:`~npuc.backend.cpu.fuse_ops.FuseOps`.
    """
    return [
        # float32 x / constant -> x * (1 / constant): HardSwish's division (<= 2 ulp).
        ReciprocalDivide(),
        # Every Relax op -> call_tir of a PrimFunc tagged with its op pattern.
        LegalizeOps(target.to_tvm()),
        # Group conv/matmul + epilogues and elementwise runs; one PrimFunc per group.
        FuseOps(fuse_opt_level),
    ]


def schedule_passes(
    target: CpuTarget,
    report: ScheduleReport | None = None,
    tuning_db: ms.database.Database | None = None,
) -> list[tvm.transform.Pass]:
    """TIR schedules for ``target``: every PrimFunc gets its rule's loop nest.

    Parameters
    ----------
    target
        Vector width (AVX-512 / AVX2) and cores the rules schedule for.
    report
        Filled with the rule chosen per function and any rule failures.
    tuning_db
        Records of ``npuc tune`` (:mod:`.tuning_db`); ``None``: hand rules only.
    """
    return [
        # Tuned records (if any), else hand rules (conv2d, depthwise, matmul, ...),
        # then parallel-and-vectorise.
        ScheduleCpu(target, report=report, tuning_db=tuning_db),
        # int8: an 8-bit table lookup applied by the (scheduled) kernel making its input.
        FuseLookups(target),
    ]


def lower_passes() -> list[tvm.transform.Pass]:
    """Dataflow -> VM instructions with planned memory (TVM's CPU finalisation)."""
    return [
        PrepackWeights(),  # weight layouts the schedules asked for, packed at compile time
        LiftWeightTransforms(),  # compact weights: dequantize + pack once at load, not per call
        relax.transform.RewriteDataflowReshape(),  # reshapes become views
        relax.transform.ToNonDataflow(),
        relax.transform.RemovePurityChecking(),
        relax.transform.CallTIRRewrite(),  # explicit output allocation
        relax.transform.StaticPlanBlockMemory(),  # reuse buffers across the graph
        relax.transform.LowerAllocTensor(),
        relax.transform.KillAfterLastUse(),  # free intermediates early
        relax.transform.LowerRuntimeBuiltin(),
        relax.transform.ComputePrimValue(),
        relax.transform.VMShapeLower(),
        relax.transform.AttachGlobalSymbol(),
    ]


def cpu_relax_pipeline(
    target: CpuTarget,
    report: ScheduleReport | None = None,
    *,
    precision: str = "float",
    tuning_db: ms.database.Database | None = None,
) -> tvm.transform.Pass:
    """The full ordered pipeline, as one pass for ``relax.build(relax_pipeline=...)``.

    ``report`` (optional) receives what the schedule pass did; ``precision``
    chooses the weight storage (:func:`weight_passes`); ``tuning_db`` supplies
    tuned schedules (:func:`schedule_passes`).
    """
    return tvm.transform.Sequential(
        weight_passes(precision)
        + fusion_passes(target)
        + schedule_passes(target, report, tuning_db)
        + lower_passes(),
        name="npuc_cpu_lowering",
    )
