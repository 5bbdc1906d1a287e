"""Post-training quantization accuracy: npuc beside onnxruntime and NNCF, same samples.

Usage (repo root, after ``make bench-accuracy-deps``)::

    .venv/bin/python bench/accuracy.py                       # everything, then the table
    .venv/bin/python bench/accuracy.py --group mbv2-peers    # one group of jobs
    .venv/bin/python bench/accuracy.py --report-only         # table from saved rows

Each job (model x tool x setting x calibration set) appends one JSON row to
``bench/results/accuracy_rows.jsonl``; the table in ``bench/results/accuracy.md``
is built from those rows, so groups can run as separate processes. Models,
samples and metrics: :mod:`bench.accuracy_data`; peers:
:mod:`bench.accuracy_peers`; npuc: :mod:`bench.accuracy_npuc`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.accuracy_data import (  # noqa: E402
    Task,
    mobilenet_task,
    ocr_task,
    ort_ready_copy,
    run_onnxruntime,
)
from bench.accuracy_report import write_report  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ROWS = RESULTS / "accuracy_rows.jsonl"
GROUPS = (
    "mbv2-peers",
    "ocr-peers",
    "mbv2-npuc",
    "ocr-npuc",
    "mbv2-npuc-spread",
    "mbv2-npuc-variants",
)
NPUC_VARIANTS = ("extrema", "99.99percentile", "kld")
SPREAD_SEEDS = (111, 121)  # with the main calibration seed (101): 3 disjoint subsets


def _append(row: dict[str, object]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with ROWS.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def _job(model: str, tool: str, setting: str, calib: str, fn: Callable[[], tuple]) -> None:
    """Run one job and record its row; a failing tool is recorded, not fatal."""
    row: dict[str, object] = {"model": model, "tool": tool, "setting": setting, "calib": calib}
    try:
        metrics, quant_s, eval_s, *rest = fn()
        row |= {"metrics": metrics, "quantize_s": round(quant_s, 1), "eval_s": round(eval_s, 1)}
        if rest:
            row["note"] = rest[0]
    except Exception as err:  # a peer failing on a model is a result
        traceback.print_exc()
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
    _append(row)


def _float_row(task: Task, path: Path) -> None:
    def run() -> tuple:
        t0 = time.perf_counter()
        outs = run_onnxruntime(path, task.evaluate)
        return task.score(outs), 0.0, time.perf_counter() - t0

    _job(task.name, "float", "onnxruntime fp32", "-", run)


def _peers(
    task: Task, src: Path, workdir: Path, calib_tag: str, tools: list[str], note: str = ""
) -> None:
    from bench.accuracy_peers import NNCF_SETTINGS, ORT_SETTINGS, run_peer

    for tool, settings in (("onnxruntime", ORT_SETTINGS), ("nncf", NNCF_SETTINGS)):
        if tool not in tools:
            continue
        for setting in settings:

            def run(tool: str = tool, setting: str = setting) -> tuple:
                res = run_peer(tool, setting, src, workdir, task.calib, task.evaluate, task.score)
                return (*res, note) if note else res

            _job(task.name, tool, setting, calib_tag, run)


def _npuc(task: Task, strategy: str | None, calib: list, calib_tag: str) -> None:
    from bench.accuracy_npuc import config_for, run_setting

    def run() -> tuple:
        return run_setting(task.model_path, calib, task.evaluate, config_for(strategy), task.score)

    setting = "QuantConfig() defaults" if strategy is None else f"activations {strategy}"
    _job(task.name, "npuc", setting, calib_tag, run)


def run_group(group: str, args: argparse.Namespace, workdir: Path) -> None:
    """Run one group of jobs (see ``GROUPS``)."""
    if group.startswith("ocr"):
        task = ocr_task(calib=args.ocr_calib, evaluate=args.ocr_eval)
        tag = f"{len(task.calib)} lines"
        if group == "ocr-npuc":
            _npuc(task, None, task.calib, tag)
            return
        _float_row(task, task.model_path)
        from bench.accuracy_peers import run_peer

        _job(
            task.name,
            "onnxruntime",
            "MinMax, model as shipped",
            tag,
            lambda: run_peer(
                "onnxruntime", "MinMax", task.model_path, workdir,
                task.calib, task.evaluate, task.score,
            ),
        )  # fmt: skip
        fixed = workdir / "ppocrv4_rec_ort_ready.onnx"
        changes = ort_ready_copy(task.model_path, fixed)
        _peers(task, fixed, workdir, tag, args.peer, note="hand-fixed model: " + "; ".join(changes))
        return
    task, more_calib = mobilenet_task(workdir, calib=args.mbv2_calib, evaluate=args.mbv2_eval)
    tag = f"{len(task.calib)} crops, seed 101"
    if group == "mbv2-peers":
        _float_row(task, task.model_path)
        _peers(task, task.model_path, workdir, tag, args.peer)
    elif group == "mbv2-npuc":
        _npuc(task, None, task.calib, tag)
    elif group == "mbv2-npuc-variants":
        for strategy in NPUC_VARIANTS:
            _npuc(task, strategy, task.calib, tag)
    elif group == "mbv2-npuc-spread":
        for seed in args.spread_seed or SPREAD_SEEDS:
            _npuc(task, None, more_calib(seed), f"{len(task.calib)} crops, seed {seed}")
    else:
        raise SystemExit(f"unknown group {group!r}; one of {', '.join(GROUPS)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", choices=GROUPS, help="default: all")
    parser.add_argument("--mbv2-calib", type=int, default=64)
    parser.add_argument("--mbv2-eval", type=int, default=200)
    parser.add_argument("--ocr-calib", type=int, default=64)
    parser.add_argument("--ocr-eval", type=int, default=100)
    parser.add_argument("--spread-seed", type=int, action="append", help=f"default: {SPREAD_SEEDS}")
    parser.add_argument(
        "--peer",
        action="append",
        choices=("onnxruntime", "nncf"),
        help="peer tools for the *-peers groups (default: both)",
    )
    parser.add_argument("--fresh", action="store_true", help="clear the saved rows first")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--command", default="", help="command line to print in the report")
    args = parser.parse_args(argv)
    args.peer = args.peer or ["onnxruntime", "nncf"]
    if args.fresh and ROWS.exists():
        ROWS.unlink()
    if not args.report_only:
        with tempfile.TemporaryDirectory(prefix="npuc-accuracy-") as tmp:
            for group in args.group or GROUPS:
                print(f"== {group}", flush=True)
                run_group(group, args, Path(tmp))
    command = args.command or "python bench/accuracy.py " + " ".join(argv or sys.argv[1:])
    write_report(ROWS, RESULTS / "accuracy.md", command=command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
