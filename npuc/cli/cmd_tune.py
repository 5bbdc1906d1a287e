"""``npuc tune``: MetaSchedule tuning of a model's hottest CPU kernels into a database folder.

Runs :func:`npuc.backend.cpu.tuning.tune_module` with a progress bar and
prints one line per tuned kernel: the hand rule's time, the best tuned time,
and whether the build will use it. ``--json`` prints
:meth:`~npuc.backend.cpu.tuning.TuneResult.to_json`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from npuc.cli import common
from npuc.cli.common import CommandResult
from npuc.core.errors import InvalidInputError

DESCRIPTION = """\
Tune the most expensive CPU kernels of a model with TVM's MetaSchedule and
record the results in a folder, e.g.

  npuc tune model.onnx --trials 300 --time-budget 600 --db tuned/
  npuc build model.onnx --tuning-db tuned/ -o model.so

Only kernels whose tuned schedule measured faster than npuc's hand schedule
are recorded, so a build with --tuning-db is never slower per kernel than
one without (a build without it needs no tuning). Tuning the same folder
again continues from the candidates already measured. Needs the `tune`
extra: pip install 'npuc[tune]'.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="tune the hottest CPU kernels of a model (MetaSchedule) into a database",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="model file (.onnx, .tflite, .pt2)")
    parser.add_argument(
        "--db", required=True, metavar="DIR", help="folder for the records (created if missing)"
    )
    parser.add_argument(
        "--trials", type=int, default=200, metavar="N", help="candidates measured (default 200)"
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="stop searching after this many seconds (default 600)",
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=8,
        metavar="K",
        help="tune the K most expensive kernels (FLOPs x calls; default 8)",
    )
    parser.add_argument("--seed", type=int, metavar="N", help="random seed of the search")
    parser.add_argument(
        "--threads", type=int, metavar="N", help="threads of the tuned code (default: the cores)"
    )
    common.add_input_shape_flag(parser)
    common.add_input_value_flag(parser)
    common.add_common_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> CommandResult:
    from npuc import driver
    from npuc.core.progress import Progress

    source = common.existing_file(args.model, "model file")
    db_dir = Path(args.db)
    if db_dir.exists() and not db_dir.is_dir():
        raise InvalidInputError(
            f"--db {db_dir}: exists and is not a folder", hint="choose a folder name"
        )
    from npuc.backend.cpu.tuning import TuneOptions

    options = TuneOptions(
        trials=args.trials, time_budget_s=args.time_budget, max_tasks=args.tasks, seed=args.seed
    )
    target = driver.check_buildable(driver.make_target("cpu", num_threads=args.threads))
    from npuc.backend.cpu.tuning_search import check_dependencies

    check_dependencies()
    shapes = common.parse_input_shapes(args.input_shape)
    values = common.parse_input_values(args.input_value)

    start_s = time.monotonic()
    from npuc.backend.cpu.tuning import tune_module
    from npuc.frontend import load
    from npuc.midend.pipeline import MidendOptions, optimize

    mod, _info = load(source, shapes, values)
    with driver.tvm_failures_as_npuc_errors(source, "optimizing"):
        mod = optimize(mod, MidendOptions())
    total = options.trials + options.max_tasks
    with (
        Progress(total, "npuc tune", enabled=None if not args.json else False) as bar,
        driver.tvm_failures_as_npuc_errors(source, "tuning"),
    ):
        result = tune_module(mod, target, db_dir, options, progress=bar)
    data = result.to_json()
    data["model"] = str(source)
    data["seconds"]["command"] = time.monotonic() - start_s
    lines = [
        f"tuned {len(result.outcomes)} of {result.kernels} kernels of {source} with "
        f"{result.trials} trials in {result.search_s:.0f} s; {result.used} faster than the "
        f"hand schedules, recorded in {db_dir}",
    ]
    for o in result.outcomes:
        tuned = f"{o.tuned_us:9.1f} us" if o.tuned_us is not None else "      n/a   "
        hand = f"{o.hand_us:9.1f} us" if o.hand_us is not None else "      n/a   "
        mark = "used" if o.used else "hand rule kept"
        lines.append(
            f"  {o.name:40s} x{o.calls:<3d} {o.hand_rule:>16s} {hand}  tuned {tuned}  {mark}"
        )
    lines.append(f"build with: npuc build {source} --tuning-db {db_dir}")
    return CommandResult(data=data, text="\n".join(lines))
