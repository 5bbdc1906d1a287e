"""The Relax pipeline that turns an optimised module into VM code for the CPU.

Requires: a Relax module as ``npuc.midend.pipeline.optimize(mod,
target_kind="cpu")`` returns it — graph passes done, operators legalized to
TIR and fused (LegalizeOps, FuseOps, FuseTIR). A module that still holds
high-level operators is accepted too: ``LegalizeOps`` below lowers them,
without fusion.

Guarantees: a module that ``relax.build`` can hand to the TIR pipeline and
the VM code generator, with static memory planning. The pass list is TVM's
CPU default (``tvm.relax.backend.cpu_generic``) minus the fusion passes the
midend already ran, written out so that every step is visible here.

Seam for the CPU-performance work: TIR schedules (hand rules, dlight,
MetaSchedule databases) are applied where :func:`schedule_passes` sits —
after legalization and fusion, before the dataflow is lowered. They choose
their kernels from the :class:`~npuc.core.target.CpuTarget` they are
given. Today that list is empty: every PrimFunc compiles as the serial loop
nest LegalizeOps produced.
"""

from __future__ import annotations

import tvm
from tvm import relax

from npuc.core.target import CpuTarget


def legalize_passes() -> list[tvm.transform.Pass]:
    """Lower what the midend left as high-level operators (a no-op after it)."""
    return [
        relax.backend.DispatchSampling(),  # multinomial sampling -> TIR
        relax.backend.DispatchSortScan(),  # sort/argsort/cumsum -> TIR
        relax.transform.LegalizeOps(),  # remaining relax ops -> call_tir
        relax.transform.AnnotateTIROpPattern(),  # op kinds, for later schedule rules
    ]


def schedule_passes(target: CpuTarget) -> list[tvm.transform.Pass]:
    """TIR schedules for ``target``: empty until the CPU-performance work lands."""
    del target  # schedules will pick AVX-512 / VNNI kernels from it
    return []


def lower_passes() -> list[tvm.transform.Pass]:
    """Dataflow -> VM instructions with planned memory (TVM's CPU finalisation)."""
    return [
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


def cpu_relax_pipeline(target: CpuTarget) -> tvm.transform.Pass:
    """The full ordered pipeline, as one pass for ``relax.build(relax_pipeline=...)``."""
    return tvm.transform.Sequential(
        legalize_passes() + schedule_passes(target) + lower_passes(), name="npuc_cpu_lowering"
    )
