"""The midend: one ordered list of target-independent passes.

Read :func:`graph_passes` top to bottom to see what the midend does to a
model; every entry says why it is there. docs/midend.md is the longer
version. What differs between builds comes in as :class:`MidendOptions`, not
as a target name: the quantizer adds its passes at the marked place in
:func:`passes` when ``options.quantization`` is set. CPU lowering (legalize,
fuse) is the CPU backend's (:mod:`npuc.backend.cpu.lowering`).

Public API: :func:`optimize` (used by the driver and the tests),
:class:`MidendOptions` and :func:`passes` (the same list, for callers that
compose their own ``tvm.transform.Sequential``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tvm

from .decompose_inference_ops import DecomposeInferenceOps
from .fold_batchnorm import FoldBatchnorm
from .fold_constants import FoldConstants
from .remove_dead_code import RemoveDeadCode
from .remove_identities import RemoveIdentities
from .remove_noop_reshapes import RemoveNoopReshapes
from .simplify_sum import SimplifySum
from .verify_well_formed import verify_well_formed


@dataclass(frozen=True, slots=True, kw_only=True)
class MidendOptions:
    """What the midend needs to know about a build.

    Parameters
    ----------
    quantization
        The quantizer's settings (from :attr:`npuc.core.target.NpuTarget.quantization`)
        for an NPU build; ``None`` keeps the graph in float (CPU builds).
    debug
        Verify the module with ``relax.analysis.well_formed`` before the first
        pass and after every pass (slower; for development and tests).
    """

    quantization: object | None = None
    debug: bool = False


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


def passes(options: MidendOptions) -> list[tvm.transform.Pass]:
    """The ordered pass list for a build with ``options`` (the float graph passes).

    An NPU build then quantizes the result with :data:`QUANTIZATION_STAGES`.
    """
    del options  # every build runs the same float clean-up
    return graph_passes()


QUANTIZATION_STAGES: tuple[tuple[str, str], ...] = (
    # The layer graph: one node per NPU instruction (conv + bias + clamp, SiLU, ...);
    # unknown operators become CPU nodes, so quantization never fails on them.
    ("extract", "npuc.midend.quantize.extract:extract_graph"),
    # Observe: statistics of every float tensor over the calibration samples,
    # computed on the float executor (batched through BLAS).
    ("observe", "npuc.midend.quantize.calibrate:calibrate"),
    # Choose ranges (strategy per layer), quantize weights (int8, per channel),
    # derive the NPU integer parameters (M, shifts, b16) and annotate each layer.
    ("quantize", "npuc.midend.quantize.quantize:quantize_model"),
    # Empirical bias correction, layer by layer; wins back the 16-bit bias rounding.
    ("bias_correction", "npuc.midend.quantize.bias_correction:correct_bias"),
)
"""Post-training quantization after :func:`graph_passes`, in the order
:func:`npuc.midend.quantize.api.quantize_module` runs them (docs/quantization.md).
They take calibration samples as well as the module, so they are functions,
not ``tvm.transform`` passes."""


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


def optimize(mod: tvm.IRModule, options: MidendOptions | None = None) -> tvm.IRModule:
    """Run the midend pipeline on ``mod``.

    Parameters
    ----------
    mod
        A Relax module from the frontend (weights bound as constants). Not modified.
    options
        See :class:`MidendOptions`; default: a float build without IR checks.

    Returns
    -------
    tvm.IRModule
        The optimised module, still made of high-level Relax operators (the
        CPU backend legalizes and fuses them).

    Raises
    ------
    IllFormedIRError
        With ``options.debug``, if a pass produced ill-formed IR (a bug in npuc).
    """
    options = options if options is not None else MidendOptions()
    return Pipeline(passes(options), debug=options.debug)(mod)
