"""Interleaved timing: npuc and its references timed in alternating rounds, ratios per round.

The host is shared and its speed drifts (up to 2x within minutes), so timing
npuc for a while and then its reference for a while can put the two in
different weather. Here every function is loaded up front and timed in
rounds: each round runs every function ``batch`` times back to back (the
order rotates from round to round, so none always runs first or after the
same neighbour), and a ratio is taken per round from the batch medians of
that round. The ratio reported is the median over rounds, with the smallest
and largest round as its spread; the latency reported is the median of all
timed runs.

Each turn starts with ``lead_in`` untimed runs (1 by default; the first one
is also the warm-up). They matter: after a run, onnxruntime's idle worker
threads spin-wait (its default ``allow_spinning``) for tens of ms and take
a core from the next library's thread pool. Measured on this 2-core host,
an npuc run right after an onnxruntime run took 3-4x its usual time, the
second run after it was back to normal; onnxruntime after npuc showed no
such effect. Strictly alternating single runs would mostly measure that.

Each turn is also preceded by ``idle_s`` seconds of sleep (:data:`IDLE_S`, 50 ms).
The lead-in alone did not suffice for small models: TVM's pool workers spin
up to 300,000 times after each parallel loop (``TVM_THREAD_POOL_SPIN_COUNT``)
and onnxruntime's spin too, so the next library's lead-in AND timed runs
shared the 2 cores with the previous library's spinners. Measured on the
orientation classifier at 2 threads, quiet host, no idle: one run of
bench/cpu.py put npuc at 3.4 ms against onnxruntime 1.5 (2.38x), the next
npuc 2.6 ms against onnxruntime 7.1 (0.36x); alone in their own processes
they ran 2.2-2.4 and 1.5-1.6 ms. After an idle gap both pools sleep, and the
lead-in absorbs their wake-up.

What looked like a limit of this scheme was not one: in ``bench/cpu.py``'s int8
rounds npuc int8 ran 1.4-1.6x slower than alone (the orientation classifier, 2
threads: 2.09 ms, against 1.28-1.39 in other arrangements), and longer gaps or
batches seemed to help. The cause was something the float part left for Python's
cyclic collector (probably an onnxruntime session's native part: holding a float
session alive reproduced the slowdown); ``bench/cpu.py`` now collects
garbage before each int8 part (npuc int8 / onnxruntime float 1.38x -> 0.81x).

Pure Python (the clock is a parameter): ``tests/bench/test_interleave.py``
checks the statistics with a fake clock.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

MIN_ROUNDS = 3
"""Rounds always run (when asked for at least this many), whatever the time budget."""

IDLE_S = 0.05
"""Seconds of sleep before each turn, so the other libraries' spinning threads sleep."""


@dataclass(frozen=True, slots=True)
class Ratio:
    """A latency ratio over rounds: the median and the smallest and largest round."""

    median: float
    low: float
    high: float
    rounds: int

    def cell(self) -> str:
        """``1.05x (0.98-1.12)``: median, then the min-max spread over rounds."""
        return f"{self.median:.2f}x ({self.low:.2f}-{self.high:.2f})"


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall times in ms of each function, ``runs_ms[name][round]`` = that round's batch."""

    runs_ms: Mapping[str, tuple[tuple[float, ...], ...]]

    @property
    def rounds(self) -> int:
        """Rounds completed (the same for every function)."""
        return len(next(iter(self.runs_ms.values()), ()))

    def runs(self, name: str) -> int:
        """Timed runs of ``name`` (rounds x batch), warm-up excluded."""
        return sum(len(batch) for batch in self.runs_ms[name])

    def median_ms(self, name: str) -> float:
        """Median of every timed run of ``name``, ms."""
        return statistics.median(t for batch in self.runs_ms[name] for t in batch)

    def round_ms(self, name: str) -> list[float]:
        """Per round, the median of ``name``'s batch, ms."""
        return [statistics.median(batch) for batch in self.runs_ms[name]]

    def ratio(self, num: str, den: str | Sequence[str]) -> Ratio:
        """``num`` over ``den`` per round (over the fastest of several ``den`` in that
        round), summarised over rounds.

        Raises
        ------
        KeyError
            A name that was not timed.
        ValueError
            No round was timed.
        """
        dens = [den] if isinstance(den, str) else list(den)
        top = self.round_ms(num)
        bottoms = [self.round_ms(d) for d in dens]
        if not top:
            raise ValueError(f"ratio {num} / {'|'.join(dens)}: no round was timed")
        per_round = [t / min(b) for t, *b in zip(top, *bottoms, strict=True)]
        return Ratio(statistics.median(per_round), min(per_round), max(per_round), len(top))


def interleaved(
    fns: Mapping[str, Callable[[], object]],
    rounds: int,
    batch: int,
    budget_s: float,
    lead_in: int = 1,
    clock: Callable[[], float] = time.perf_counter,
    idle_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Timing:
    """Time ``fns`` in interleaved rounds (see the module docstring).

    Parameters
    ----------
    fns
        Name -> a function running one inference (its result is ignored), all
        loaded already: nothing is built or loaded between rounds.
    rounds
        Rounds to run; fewer if ``budget_s`` seconds (timed and lead-in
        runs) are spent after at least ``MIN_ROUNDS`` rounds.
    batch
        Consecutive timed runs of each function per round.
    lead_in
        Untimed runs at the start of each turn, before its ``batch``.
    clock
        Seconds, monotonic (``time.perf_counter``; a fake one in tests).
    idle_s
        Sleep before each turn (default :data:`IDLE_S`), through ``sleep``; not in the
        latencies (the budget's clock runs on through it).

    Raises
    ------
    ValueError
        ``fns`` empty, ``rounds < 1``, ``batch < 1`` or ``lead_in < 0``.
    """
    if not fns or rounds < 1 or batch < 1 or lead_in < 0:
        raise ValueError(
            f"interleaved timing needs functions, rounds >= 1, batch >= 1 and lead_in >= 0 "
            f"(got {len(fns)} functions, rounds={rounds}, batch={batch}, lead_in={lead_in})"
        )
    names = list(fns)
    idle = IDLE_S if idle_s is None else idle_s
    start = clock()
    runs: dict[str, list[tuple[float, ...]]] = {name: [] for name in names}
    for k in range(rounds):
        shift = k % len(names)
        for name in names[shift:] + names[:shift]:
            if idle:
                sleep(idle)  # the previous library's spinning threads go to sleep
            for _ in range(lead_in):
                fns[name]()  # untimed: warm-up, and the previous library's spinners give up
            times = []
            for _ in range(batch):
                t0 = clock()
                fns[name]()
                times.append((clock() - t0) * 1e3)
            runs[name].append(tuple(times))
        if k + 1 >= MIN_ROUNDS and clock() - start > budget_s:
            break
    return Timing({name: tuple(r) for name, r in runs.items()})
