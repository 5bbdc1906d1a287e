"""The midend: one ordered list of passes per target.

Read :func:`graph_passes` top to bottom to see what the midend does to a
model; every entry says why it is there. docs/midend.md is the longer
version. Later issues add post-training quantization and tiling for the NPU
at the marked place in :func:`passes_for`; nothing else needs to change.

Public API: :func:`optimize` (used by the driver and the tests) and
:func:`cpu_passes` (the same list, for callers that compose their own
``tvm.transform.Sequential``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tvm

from npuc.core.errors import InvalidInputError

from .decompose_inference_ops import DecomposeInferenceOps
from .fold_batchnorm import FoldBatchnorm
from .fold_constants import FoldConstants
from .fuse_ops import FuseOps
from .legalize_ops import LegalizeOps
from .remove_dead_code import RemoveDeadCode
from .remove_identities import RemoveIdentities
from .remove_noop_reshapes import RemoveNoopReshapes
from .simplify_sum import SimplifySum
from .verify_well_formed import verify_well_formed

TARGET_KINDS = ("cpu", "npu")


def graph_passes() -> list[tvm.transform.Pass]:
    """Target-independent float graph optimisations, in order."""
    return [
        # Evaluate constant sub-graphs (the importer's reshape(bias), Clip's
        # isnan/where guards on its bounds); FoldBatchnorm needs plain constants.
        FoldConstants(),
        # Constant batch norms: into the conv before them (scaled weights + bias),
        # else into one multiply + add. Computes the new constants itself.
        FoldBatchnorm(),
        # Batch norms left (runtime statistics) -> elementwise arithmetic. No
        # FoldConstants after it: nothing constant is left to fold, and TVM's
        # FoldConstant costs ~1.5 s on a 30-conv model even when it finds nothing.
        DecomposeInferenceOps(),
        # Dropout, same-type casts/expands, identity transposes, x+0, x*1 -> x.
        RemoveIdentities(),
        # reshape(x, shape of x) -> x; reshape(reshape(x)) -> reshape(x).
        RemoveNoopReshapes(),
        # ONNX Sum/Max/Min (broadcast_to + stack + reduce) -> add/max/min chain.
        SimplifySum(),
        # Sweep aliases, dead tuples and bindings the rewrites left behind.
        RemoveDeadCode(),
    ]


def fusion_passes(
    target: tvm.target.Target | None = None, fuse_opt_level: int = 2
) -> list[tvm.transform.Pass]:
    """CPU operator fusion: the part of CPU lowering that is a graph decision."""
    return [
        # Every Relax op -> call_tir of a PrimFunc tagged with its op pattern.
        LegalizeOps(target),
        # Group conv/matmul + epilogues and elementwise runs; one PrimFunc per group.
        FuseOps(fuse_opt_level),
    ]


def cpu_passes(
    target: tvm.target.Target | None = None, fuse_opt_level: int = 2
) -> list[tvm.transform.Pass]:
    """Everything :func:`optimize` runs for ``target_kind="cpu"``, in order.

    Parameters
    ----------
    target
        CPU target for the sort/scan/sampling kernel choice (default plain ``llvm``).
    fuse_opt_level
        See :class:`~npuc.midend.fuse_ops.FuseOps`.
    """
    return graph_passes() + fusion_passes(target, fuse_opt_level)


def passes_for(target_kind: str) -> list[tvm.transform.Pass]:
    """The ordered pass list for ``target_kind`` (``"cpu"`` or ``"npu"``)."""
    if target_kind == "cpu":
        return cpu_passes()
    if target_kind == "npu":
        # Seam: post-training quantization and tiling passes go here, after
        # the float graph clean-up and before the NPU backend.
        return graph_passes()
    raise InvalidInputError(
        f"midend: unknown target kind {target_kind!r}",
        hint=f"use one of: {', '.join(TARGET_KINDS)}",
    )


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Run passes in order, optionally checking the IR after each one.

    Parameters
    ----------
    passes
        The passes, in order.
    debug
        Verify the module with ``relax.analysis.well_formed`` before the first
        pass and after every pass; the error names the pass that broke it.
    """

    passes: Sequence[tvm.transform.Pass]
    debug: bool = False

    def __call__(self, mod: tvm.IRModule) -> tvm.IRModule:
        """Return the module after all passes; ``mod`` itself is not modified."""
        if self.debug:
            verify_well_formed(mod, after="the frontend (pipeline input)")
        for pass_ in self.passes:
            mod = pass_(mod)
            if self.debug:
                verify_well_formed(mod, after=pass_.info.name)
        return mod


def optimize(mod: tvm.IRModule, target_kind: str = "cpu", debug: bool = False) -> tvm.IRModule:
    """Run the midend pipeline for ``target_kind`` on ``mod``.

    Parameters
    ----------
    mod
        A Relax module from the frontend (weights bound as constants). Not modified.
    target_kind
        ``"cpu"``: graph optimisations plus operator fusion; the result goes to
        ``relax.build`` with the lowering passes listed in docs/midend.md.
        ``"npu"``: graph optimisations only (for now).
    debug
        Check the IR after every pass (slower; for development and tests).

    Returns
    -------
    tvm.IRModule
        The optimised module.

    Raises
    ------
    InvalidInputError
        If ``target_kind`` is not one of :data:`TARGET_KINDS`.
    IllFormedIRError
        With ``debug=True``, if a pass produced ill-formed IR (a bug in npuc).
    """
    return Pipeline(passes_for(target_kind), debug=debug)(mod)
