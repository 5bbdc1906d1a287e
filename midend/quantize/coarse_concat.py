"""Concats whose one output scale would leave an input only a few steps: keep them float.

The NPU's integer concat is a copy (docs/npu_spec.md): its output has one
scale, so every input is requantized to it. When the inputs' ranges differ a
lot the small one is lost: YOLOv8's head joins box coordinates (0..320 px)
and class scores (0..1) in one tensor, and at 320/255 per step the scores keep
0 or 1 step.

Requires: each layer's placement (``npu``/``cpu``) and each tensor's
calibrated range. Guarantees, with ``QuantConfig.float_coarse_concats`` (on by
default): such a concat runs float (on the CPU, like a layer named in
``--float-layers``), together with the data movement that must follow it
(reshape, transpose, resize, max pool, concat of the joined tensor, and the
slices that split it again), so that each input keeps its own scale until a
computing layer quantizes only what it reads. If an integer computing layer
reads the joined tensor itself (a convolution of the concat), keeping the
concat float would not help (that layer quantizes the whole joined tensor
with one scale again); the concat then stays integer with a
:class:`~.qlayers.CoarseConcatWarning`, as it does with the option off.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .graph import Graph, Node
from .qlayers import CONCAT_MIN_LEVELS, CoarseConcatKeptFloat, CoarseConcatWarning
from .qparams import QParams

#: Data movement that carries the whole joined tensor on (its output is joined too).
_CARRIES = ("reshape", "transpose", "resize", "max_pool2d", "concat")
#: Data movement that splits the joined tensor: its output gets its own range again.
_SPLITS = ("slice",)


@dataclass(frozen=True, slots=True, kw_only=True)
class CoarseInput:
    """One concat input left few steps: its calibrated range and its steps at the output scale."""

    name: str
    lo: float
    hi: float
    steps: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CoarseConcat:
    """A concat whose single scale leaves ``inputs`` fewer than ``CONCAT_MIN_LEVELS`` steps.

    ``followers``: the data movement that runs float with it when it is kept
    float; ``blocked_by``: an integer computing layer that reads the joined
    tensor (then keeping it float would not help), or ``""``.
    """

    name: str
    out_scale: float
    inputs: tuple[CoarseInput, ...]
    followers: tuple[str, ...]
    blocked_by: str

    def describe(self) -> str:
        """The step counts, e.g. ``input 'sigmoid_0' [0, 0.42] keeps 0.3 steps``."""
        parts = [
            f"input {i.name!r} (range [{i.lo:.4g}, {i.hi:.4g}]) would keep {i.steps:.1f} steps"
            for i in self.inputs
        ]
        return (
            f"its single output scale {self.out_scale:.4g} covers all inputs; "
            + "; ".join(parts)
            + f" (fewer than {CONCAT_MIN_LEVELS})"
        )


def find_coarse_concats(
    graph: Graph,
    run_on: Mapping[str, tuple[str, str]],
    span: Callable[[str], tuple[float, float] | None],
    out_qparams: Callable[[str], QParams],
) -> list[CoarseConcat]:
    """Integer concats of ``graph`` whose output scale leaves some input few steps.

    ``span(tensor)``: the tensor's calibrated range ``(lo, hi)`` in real units,
    or ``None`` when it has none (a pre-quantized file's scale: the file's
    own choice is kept); such concats are not checked. ``out_qparams(concat)``: the concat's output
    quantization as its range strategy chooses it. Inputs of zero range (a
    constant) lose nothing and are not counted.
    """
    consumers = graph.consumers()
    found = []
    for node in graph.nodes:
        if node.op != "concat" or run_on[node.name][0] != "npu":
            continue
        spans = [span(name) for name in node.inputs]
        if span(node.name) is None or any(s is None for s in spans):
            continue
        out = out_qparams(node.name)
        coarse = []
        for name, s in zip(node.inputs, spans, strict=True):
            assert s is not None
            width = s[1] - s[0]
            steps = width / out.scale
            if width > 0.0 and steps < CONCAT_MIN_LEVELS:
                coarse.append(CoarseInput(name=name, lo=s[0], hi=s[1], steps=steps))
        if coarse:
            followers, blocked = _followers(node, consumers, run_on)
            found.append(
                CoarseConcat(
                    name=node.name,
                    out_scale=out.scale,
                    inputs=tuple(coarse),
                    followers=followers,
                    blocked_by=blocked,
                )
            )
    return found


def _followers(
    concat: Node,
    consumers: Mapping[str, list[Node]],
    run_on: Mapping[str, tuple[str, str]],
) -> tuple[tuple[str, ...], str]:
    """The integer data movement downstream of ``concat`` that must run float with it.

    Walks the joined tensor through :data:`_CARRIES`; a :data:`_SPLITS` layer
    joins the followers and ends the walk. Returns (followers in graph order
    of discovery, the first integer computing layer that reads a joined tensor
    or ``""``).
    """
    followers: list[str] = []
    joined = [concat.name]
    seen = {concat.name}
    while joined:
        tensor = joined.pop()
        for user in consumers.get(tensor, []):
            if run_on[user.name][0] != "npu" or user.name in seen:
                continue
            if user.op in _CARRIES:
                seen.add(user.name)
                followers.append(user.name)
                joined.append(user.name)
            elif user.op in _SPLITS:
                seen.add(user.name)
                followers.append(user.name)
            else:
                return tuple(followers), user.name
    return tuple(followers), ""


def keep_coarse_concats_float(
    found: list[CoarseConcat],
    run_on: dict[str, tuple[str, str]],
    *,
    enabled: bool,
) -> None:
    """Mark each found concat (and its followers) ``cpu`` with the reason; warn either way.

    ``enabled`` False (``float_coarse_concats = false``), or a concat read by
    an integer computing layer: the concat stays integer and a
    :class:`~.qlayers.CoarseConcatWarning` names it, the inputs and the flags
    that help. Otherwise a :class:`~.qlayers.CoarseConcatKeptFloat` note says
    which layers were kept float and why.
    """
    for c in found:
        if not enabled or c.blocked_by:
            why = (
                "float_coarse_concats = false"
                if not enabled
                else f"layer {c.blocked_by!r} reads the joined tensor in integers"
            )
            warnings.warn(
                f"layer {c.name!r} (concat): {c.describe()}: those values are mostly lost "
                f"(kept integer: {why}); keep it float (--float-layers {c.name}"
                + (f",{c.blocked_by}" if c.blocked_by else "")
                + ") or give it 16 bits (--layer-config)",
                CoarseConcatWarning,
                stacklevel=3,
            )
            continue
        reason = f"kept float: {c.describe()}"
        run_on[c.name] = ("cpu", reason)
        for name in c.followers:
            run_on[name] = ("cpu", f"data movement of {c.name!r}, which is {reason}")
        kept = ", ".join((c.name, *c.followers))
        warnings.warn(
            f"layer {c.name!r} (concat) kept float on the CPU ({kept}): {c.describe()}; "
            "set float_coarse_concats = false to keep it integer",
            CoarseConcatKeptFloat,
            stacklevel=3,
        )
