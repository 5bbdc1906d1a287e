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


def _channel_vector(raw: Any, const: np.ndarray) -> np.ndarray | None:
    """The per-output-channel vector ``const`` stands for (a scalar broadcasts), or None."""
    channels = raw.out.shape[1] if raw.op == "conv2d" else raw.out.shape[-1]
    if const.size == 1:
        return np.full(channels, float(const.reshape(())), np.float32)
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
    out = into.out
    into.op, into.inputs = first.op, first.inputs
    into.attrs, into.consts = dict(first.attrs), dict(first.consts)
    into.source = first.source + into.source
    into.relax_call = first.relax_call
    into.out = out
    first.alive = False


def _scalar(raw: Any) -> float | None:
    c = raw.consts.get("rhs")
    return float(c.reshape(())) if c is not None and c.size == 1 else None


def _fold_affine_into_linear(raw: Any, producer: Any) -> bool:
    """conv/dense -> ``* c`` or ``+ c`` / ``- c`` (per channel or scalar): into weights and bias."""
    if producer.op not in ("conv2d", "dense") or raw.out.shape != producer.out.shape:
        return False
    if producer.attrs.get("act_min") is not None or producer.attrs.get("act_max") is not None:
        return False
    if raw.op not in ("add", "subtract", "multiply") or "rhs" not in raw.consts:
        return False
    if raw.op == "subtract" and raw.attrs.get("const_side") != "rhs":
        return False
    vec = _channel_vector(producer, raw.consts["rhs"])
    if vec is None:
        return False
    channels = vec.size
    bias = producer.consts.get("bias", np.zeros(channels, np.float32))
    weight = producer.consts["weight"]
    consts = dict(producer.consts)
    if raw.op == "multiply":
        shape = (channels, 1, 1, 1) if producer.op == "conv2d" else (1, channels)
        consts["weight"] = (weight * vec.reshape(shape)).astype(np.float32)
        consts["bias"] = (bias * vec).astype(np.float32)
    else:
        consts["bias"] = (bias + vec if raw.op == "add" else bias - vec).astype(np.float32)
    _merge(raw, producer)
    raw.consts = consts
    return True


def _fold_clamp(raw: Any, producer: Any) -> bool:
    """A clamp after a clampable layer becomes that layer's act_min/act_max."""
    if raw.op != "clip" or producer.op not in _CLAMPABLE:
        return False
    lo, hi = raw.attrs["act_min"], raw.attrs["act_max"]
    plo, phi = producer.attrs.get("act_min"), producer.attrs.get("act_max")
    new_lo = lo if plo is None else plo if lo is None else max(lo, plo)
    new_hi = hi if phi is None else phi if hi is None else min(hi, phi)
    _merge(raw, producer)
    raw.attrs["act_min"], raw.attrs["act_max"] = new_lo, new_hi
    return True


def _fold_post_affine_into_unary(raw: Any, producer: Any) -> bool:
    """A unary function followed by ``* c``, ``+ c``, ``- c`` or a clamp: one table."""
    if producer.op != "unary":
        return False
    if raw.op == "clip":
        step = ["clip", raw.attrs["act_min"], raw.attrs["act_max"]]
    elif raw.op in ("add", "multiply", "subtract") and _scalar(raw) is not None:
        if raw.op == "subtract" and raw.attrs.get("const_side") != "rhs":
            return False
        step = [raw.op, _scalar(raw)]
    else:
        return False
    post = [*producer.attrs.get("post", []), step]
    _merge(raw, producer)
    raw.attrs["post"] = post
    return True


def _fold_silu(raw: Any, raws: dict[str, Any], uses: dict[str, int]) -> bool:
    """``x * sigmoid(x)`` -> ``silu(x)``."""
    if raw.op != "multiply" or len(raw.inputs) != 2:
        return False
    for x_name, s_name in (raw.inputs, raw.inputs[::-1]):
        sig = raws.get(s_name)
        if (
            sig is not None
            and sig.alive
            and sig.op == "unary"
            and sig.attrs.get("func") == "sigmoid"
            and not sig.attrs.get("post")
            and sig.inputs == [x_name]
            and uses.get(s_name) == 1
        ):
            sig.alive = False
            raw.op, raw.inputs = "unary", [x_name]
            raw.attrs = {"func": "silu"}
            raw.source = sig.source + raw.source
            return True
    return False


def _is_one_sixth(raw: Any) -> bool:
    value = _scalar(raw)
    return value is not None and abs(value - 1 / 6) <= 1e-6


def _relu6_of(a: Any, x_name: str, uses: dict[str, int], a_name: str) -> bool:
    """Whether ``a`` is ``clip(x + 3, 0, 6)`` used once."""
    return (
        a is not None
        and a.alive
        and a.op == "add"
        and a.inputs == [x_name]
        and _scalar(a) == 3.0
        and a.attrs.get("act_min") == 0.0
        and a.attrs.get("act_max") == 6.0
        and uses.get(a_name) == 1
    )


def _fold_hardswish_inner_scale(raw: Any, raws: dict[str, Any], uses: dict[str, int]) -> bool:
    """``x * (clip(x + 3, 0, 6) * (1/6))`` (TVM's HardSwish importer) -> ``hardswish(x)``."""
    if raw.op != "multiply" or len(raw.inputs) != 2:
        return False
    for x_name, m_name in (raw.inputs, raw.inputs[::-1]):
        m = raws.get(m_name)
        if m is None or not m.alive or m.op != "multiply" or uses.get(m_name) != 1:
            continue
        if not _is_one_sixth(m) or len(m.inputs) != 1:
            continue
        a = raws.get(m.inputs[0])
        if a is not None and _relu6_of(a, x_name, uses, m.inputs[0]):
            a.alive = m.alive = False
            raw.op, raw.inputs = "unary", [x_name]
            raw.attrs, raw.consts = {"func": "hardswish"}, {}
            raw.source = a.source + m.source + raw.source
            return True
    return False


def _fold_hardswish(raw: Any, raws: dict[str, Any], uses: dict[str, int]) -> bool:
    """``x * clip(x + 3, 0, 6) * (1/6)`` (as importers decompose HardSwish) -> ``hardswish(x)``."""
    if _fold_hardswish_inner_scale(raw, raws, uses):
        return True
    if raw.op != "multiply" or not _is_one_sixth(raw):
        return False
    prod = raws.get(raw.inputs[0])
    if prod is None or not prod.alive or prod.op != "multiply" or len(prod.inputs) != 2:
        return False
    if uses.get(raw.inputs[0]) != 1:
        return False
    for x_name, a_name in (prod.inputs, prod.inputs[::-1]):
        a = raws.get(a_name)
        if a is not None and _relu6_of(a, x_name, uses, a_name):
            a.alive = prod.alive = False
            raw.op, raw.inputs = "unary", [x_name]
            raw.attrs, raw.consts = {"func": "hardswish"}, {}
            raw.source = a.source + prod.source + raw.source
            return True
    return False


def fold_patterns(raws: dict[str, Any], outputs: list[str]) -> None:
    """Fold until nothing changes (see :mod:`.extract` for the patterns)."""
    changed = True
    while changed:
        changed = False
        uses = _uses(raws, outputs)
        for raw in raws.values():
            if not raw.alive or not raw.inputs:
                continue
            if _fold_silu(raw, raws, uses) or _fold_hardswish(raw, raws, uses):
                changed = True
                break
            producer = raws.get(raw.inputs[0])
            if producer is None or not producer.alive or uses.get(raw.inputs[0]) != 1:
                continue
            if len(raw.inputs) != 1 and raw.op != "clip":
                continue
            if (
                _fold_affine_into_linear(raw, producer)
                or _fold_clamp(raw, producer)
                or _fold_post_affine_into_unary(raw, producer)
            ):
                changed = True
                break


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
