"""Per-layer options given by source node name (ONNX node / TFLite tensor names).

``--float-layers`` and ``--layer-config`` (or ``[quantize.layers]``) may name a
layer by npuc's own name (``conv2d_0``) or by the source model's node it came
from (``conv1``); :func:`config_by_source_names` rewrites the latter into the
former, for ``npuc quantize`` and ``npuc build --target npu`` alike.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from npuc.core.errors import InvalidInputError

from .config import QuantConfig


def config_by_source_names(
    config: QuantConfig | None, mod: Any, source_graph: Any
) -> QuantConfig | None:
    """``config`` with source node names in ``float_layers`` and ``layers`` replaced by the
    layers they became (``conv1`` -> ``conv2d_0``), found through
    :func:`~.source_names.map_source_names` on the Relax module ``mod``.

    npuc's own layer names pass unchanged; a name that is neither raises
    InvalidInputError listing both kinds of names.
    A model without a recorded source graph (``source_graph`` None) is returned as is.
    """
    if config is None or source_graph is None or not (config.float_layers or config.layers):
        return config
    from .extract import extract_graph
    from .source_names import map_source_names

    graph = extract_graph(mod)
    own = {node.name for node in graph.nodes}
    nodes = map_source_names(graph, source_graph).nodes

    def layer(name: str) -> str:
        return name if name in own else nodes.get(name, name)

    for what, given in (
        ("layer-config entry", list(config.layers)),
        ("--float-layers name", list(config.float_layers)),
    ):
        unknown = [n for n in given if n not in own and n not in nodes]
        if unknown:
            shown = sorted(nodes)[:20]
            raise InvalidInputError(
                f"{what} {', '.join(sorted(unknown))} is not in the model",
                hint=f"the model has: {', '.join(sorted(own)[:20])}"
                + (" ..." if len(own) > 20 else "")
                + f"; or by source node name: {', '.join(shown)}"
                + (" ..." if len(nodes) > 20 else ""),
            )

    layers: dict[str, dict[str, Any]] = {}
    for name, entry in config.layers.items():
        layers.setdefault(layer(name), {}).update(entry)
    float_layers = tuple(dict.fromkeys(layer(name) for name in config.float_layers))
    return replace(config, layers=layers, float_layers=float_layers)
