"""SCALE-Sim side of bench/scalesim_compare.py; runs inside bench/.venv-scalesim (numpy < 2).

Usage: ``python scalesim_runner.py job.json result.json``. The job is
``{"array": N, "layers": [...], "full": [names]}`` where
each layer has ``name, ifmap_h, ifmap_w, k, cin, cout, stride`` (the IFMAP
extent the conv actually reads, padding included). Writes, per layer, the
closed-form weight-stationary compute cycles, and, for layers named in
``full``, the compute cycles of SCALE-Sim's own simulator (written to
``result.json``: SCALE-Sim prints progress on stdout).

Closed form (read from scalesim 3.0.0 ``compute/systolic_compute_ws.py``): the
im2col filter matrix ``K x Cout`` (``K = k*k*cin``) is cut into
``ceil(K/R) * ceil(Cout/C)`` folds; each fold streams its ``P`` output pixels
after loading weights (``R`` cycles) with a systolic skew and drain
(``R + C - 2``): ``folds * (2R + C + P - 2) - 1`` cycles for the layer.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """\
[general]
run_name = npuc_compare

[architecture_presets]
ArrayHeight: {n}
ArrayWidth: {n}
IfmapSramSzkB: 65536
FilterSramSzkB: 65536
OfmapSramSzkB: 65536
IfmapOffset: 0
FilterOffset: 100000000
OfmapOffset: 200000000
Bandwidth: 10
Dataflow: ws
MemoryBanks: 1
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""
HEADER = (
    "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter,"
    " Strides,\n"
)


def out_pixels(layer: dict) -> int:
    oh = math.ceil((layer["ifmap_h"] - layer["k"] + layer["stride"]) / layer["stride"])
    ow = math.ceil((layer["ifmap_w"] - layer["k"] + layer["stride"]) / layer["stride"])
    return oh * ow


def closed_form(layer: dict, n: int) -> dict:
    k_total = layer["k"] * layer["k"] * layer["cin"]
    folds = math.ceil(k_total / n) * math.ceil(layer["cout"] / n)
    p = out_pixels(layer)
    return {"folds": folds, "out_pixels": p, "cycles": folds * (2 * n + n + p - 2) - 1}


def full_sim(layer: dict, n: int, work: Path) -> dict:
    from scalesim.scale_sim import scalesim

    row = (
        f"{layer['name']}, {layer['ifmap_h']}, {layer['ifmap_w']}, {layer['k']}, {layer['k']}, "
        f"{layer['cin']}, {layer['cout']}, {layer['stride']},\n"
    )
    (work / "cfg.cfg").write_text(CONFIG.format(n=n))
    (work / "topo.csv").write_text(HEADER + row)
    (work / "layout.csv").write_text(HEADER + row)
    start = time.perf_counter()
    sim = scalesim(
        save_disk_space=True,
        verbose=False,
        config=str(work / "cfg.cfg"),
        topology=str(work / "topo.csv"),
        layout=str(work / "layout.csv"),
    )
    sim.run_scale(top_path=str(work / "out"))
    layer_sim = sim.runner.single_layer_sim_object_list[0]
    overall, compute, stall, *_ = layer_sim.get_compute_report_items()
    return {
        "compute_cycles": int(compute),
        "overall_cycles": int(overall),
        "stall_cycles": int(stall),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    n = job["array"]
    result = {"array": n, "layers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for layer in job["layers"]:
            entry = {"closed_form": closed_form(layer, n)}
            if layer["name"] in job.get("full", []):
                entry["full"] = full_sim(layer, n, Path(tmp))
            result["layers"][layer["name"]] = entry
    Path(sys.argv[2]).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
