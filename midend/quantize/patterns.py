"""Pattern folding and naming for :mod:`.extract` (one node per NPU instruction).

Requires: raw nodes in topological order keyed by Relax variable name, and
the names of the graph outputs. Guarantees: every fold keeps the graph's
meaning; a node is folded into its consumer only when that consumer is its
only user and the node is not a graph output.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .graph import Node

_CLAMPABLE = ("conv2d", "dense", "add", "subtract", "clip", "avg_pool2d", "global_avg_pool")


def _uses(raws: dict[str, Any], outputs: list[str]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(outputs, 1)
    for raw in raws.values():
        if raw.alive:
            for name in raw.inputs:
                counts[name] = counts.get(name, 0) + 1
    return counts


def _bias_vector(raw: Any, const: np.ndarray) -> np.ndarray | None:
    """The per-output-channel bias ``const`` stands for, or None if it is not one."""
    channels = raw.out.shape[1] if raw.op == "conv2d" else raw.out.shape[-1]
    if raw.op == "conv2d":
        ok = const.size == channels and (
            const.ndim <= 1 or const.shape[-3 if const.ndim >= 3 else 0] == channels
        )
        ok = ok and (const.ndim < 3 or const.shape[-2:] == (1, 1))
    else:
        ok = const.size == channels and const.shape[-1:] == (channels,)
    return const.reshape(channels).astype(np.float32) if ok else None


def _merge(into: Any, first: Any) -> None:
    """``into`` (the consumer) takes over ``first``'s operator; ``first`` dies."""
    into.op, into.inputs = first.op, first.inputs
    into.attrs, into.consts = dict(first.attrs), dict(first.consts)
    into.source = first.source + into.source
    into.relax_call = first.relax_call
    first.alive = False


def fold_patterns(raws: dict[str, Any], outputs: list[str]) -> None:
    """Fold bias adds, clamps and ``x * sigmoid(x)`` in place (see :mod:`.extract`)."""
    changed = True
    while changed:
        changed = False
        uses = _uses(raws, outputs)
        for _name, raw in raws.items():
            if not raw.alive or len(raw.inputs) == 0:
                continue
            producer = raws.get(raw.inputs[0])
            single = producer is not None and producer.alive and uses.get(raw.inputs[0]) == 1
            if (
                raw.op == "add"
                and "rhs" in raw.consts
                and single
                and producer is not None
                and producer.op in ("conv2d", "dense")
            ) and (
                "bias" not in producer.consts
                and producer.attrs.get("act_min") is None
                and producer.attrs.get("act_max") is None
            ):
                bias = _bias_vector(producer, raw.consts["rhs"])
                if bias is not None and raw.out.shape == producer.out.shape:
                    out = raw.out
                    _merge(raw, producer)
                    raw.out = out
                    raw.consts["bias"] = bias
                    changed = True
                    continue
            if raw.op == "clip" and single and producer is not None and producer.op in _CLAMPABLE:
                lo, hi = raw.attrs["act_min"], raw.attrs["act_max"]
                plo, phi = producer.attrs.get("act_min"), producer.attrs.get("act_max")
                new_lo = lo if plo is None else plo if lo is None else max(lo, plo)
                new_hi = hi if phi is None else phi if hi is None else min(hi, phi)
                out = raw.out
                _merge(raw, producer)
                raw.out = out
                raw.attrs["act_min"], raw.attrs["act_max"] = new_lo, new_hi
                changed = True
                continue
            if raw.op == "multiply" and len(raw.inputs) == 2:
                for x_name, s_name in (raw.inputs, raw.inputs[::-1]):
                    sig = raws.get(s_name)
                    if (
                        sig is not None
                        and sig.alive
                        and sig.op == "unary"
                        and sig.attrs.get("func") == "sigmoid"
                        and sig.inputs == [x_name]
                        and uses.get(s_name) == 1
                    ):
                        sig.alive = False
                        raw.op, raw.inputs = "unary", [x_name]
                        raw.attrs = {"func": "silu"}
                        raw.source = sig.source + raw.source
                        changed = True
                        break
        if changed:
            continue


def name_nodes(raws: dict[str, Any]) -> tuple[list[Node], dict[str, str]]:
    """Freeze the live raw nodes in order, named ``<kind>_<index>``; returns (nodes, old->new)."""
    counters: dict[str, int] = {}
    renamed: dict[str, str] = {}
    nodes: list[Node] = []
    for old, raw in raws.items():
        if not raw.alive:
            continue
        kind = raw.attrs.get("func", raw.op) if raw.op == "unary" else raw.op
        if raw.op == "relax":
            kind = str(raw.attrs.get("relax_op", "relax")).split(".")[-1].split(":")[-1]
        index = counters.get(kind, 0)
        counters[kind] = index + 1
        new = f"{kind}_{index}"
        renamed[old] = new
        nodes.append(
            Node(
                name=new,
                op=raw.op,
                inputs=tuple(renamed.get(n, n) for n in raw.inputs),
                out=raw.out,
                attrs=dict(raw.attrs),
                consts=dict(raw.consts),
                source=tuple(raw.source),
                relax_call=raw.relax_call,
            )
        )
    return nodes, renamed
