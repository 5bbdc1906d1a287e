"""bench/interleave.py's statistics: interleaved rounds, per-round ratios, spread (fake clock)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def il() -> ModuleType:
    path = ROOT / "bench" / "interleave.py"
    spec = importlib.util.spec_from_file_location("interleave", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["interleave"] = module
    spec.loader.exec_module(module)
    module.IDLE_S = 0.0  # the fake host's clock does not see a real sleep
    return module


class FakeHost:
    """A clock in seconds that only the fake inferences advance, and their call log."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def clock(self) -> float:
        return self.now

    def fn(self, name: str, durations_ms: Callable[[int, float, str | None], float]) -> Callable:
        """An inference taking ``durations_ms(call index, now, previous caller)`` ms."""
        count = [0]

        def run() -> None:
            previous = self.calls[-1] if self.calls else None
            self.now += durations_ms(count[0], self.now, previous) / 1e3
            count[0] += 1
            self.calls.append(name)

        return run


def _scripted(times_ms: list[float]) -> Callable[[int, float, str | None], float]:
    return lambda k, _now, _prev: times_ms[k]


def test_per_round_ratio_median_and_spread(il: ModuleType) -> None:
    host = FakeHost()
    fns = {
        "a": host.fn("a", _scripted([10.0, 20.0, 40.0])),
        "b": host.fn("b", _scripted([5.0, 10.0, 40.0])),
    }
    timing = il.interleaved(fns, rounds=3, batch=1, budget_s=1e9, lead_in=0, clock=host.clock)
    assert timing.rounds == 3
    assert timing.round_ms("a") == pytest.approx([10.0, 20.0, 40.0])
    ratio = timing.ratio("a", "b")  # per round: 2, 2, 1
    assert (ratio.median, ratio.low, ratio.high, ratio.rounds) == pytest.approx((2.0, 1.0, 2.0, 3))
    assert ratio.cell() == "2.00x (1.00-2.00)"
    assert timing.median_ms("a") == pytest.approx(20.0)
    assert timing.runs("a") == 3


def test_batch_median_per_round_and_median_of_all_runs(il: ModuleType) -> None:
    host = FakeHost()
    a_ms = [10.0, 11.0, 30.0, 20.0, 22.0, 21.0]  # two rounds of three
    fns = {"a": host.fn("a", _scripted(a_ms)), "b": host.fn("b", _scripted([10.0] * 6))}
    timing = il.interleaved(fns, rounds=2, batch=3, budget_s=1e9, lead_in=0, clock=host.clock)
    assert [list(b) for b in timing.runs_ms["a"]] == [
        pytest.approx([10.0, 11.0, 30.0]),
        pytest.approx([20.0, 22.0, 21.0]),
    ]
    assert timing.round_ms("a") == pytest.approx([11.0, 21.0])
    assert timing.median_ms("a") == pytest.approx(20.5)
    ratio = timing.ratio("a", "b")
    assert (ratio.median, ratio.low, ratio.high) == pytest.approx((1.6, 1.1, 2.1))


def test_drifting_host_leaves_the_ratio_intact(il: ModuleType) -> None:
    """The host slows 2x after 1 s: a block of a then a block of b would see 2x; rounds
    see the true 1.5x in every round but the one straddling the change."""
    host = FakeHost()

    def speed(base_ms: float) -> Callable[[int, float, str | None], float]:
        return lambda _k, now, _prev: base_ms * (1.0 if now < 1.0 else 2.0)

    fns = {"a": host.fn("a", speed(30.0)), "b": host.fn("b", speed(20.0))}
    timing = il.interleaved(fns, rounds=9, batch=3, budget_s=1e9, clock=host.clock)
    assert host.now > 1.0  # the change happened during the rounds
    ratio = timing.ratio("a", "b")
    assert ratio.median == pytest.approx(1.5)
    per_round = [x / y for x, y in zip(timing.round_ms("a"), timing.round_ms("b"), strict=True)]
    assert sum(r != pytest.approx(1.5) for r in per_round) <= 1
    # The same host timed in blocks (all of a, then all of b) gets it wrong.
    host = FakeHost()
    block_a = il.interleaved({"a": host.fn("a", speed(30.0))}, 30, 1, 1e9, clock=host.clock)
    block_b = il.interleaved({"b": host.fn("b", speed(20.0))}, 30, 1, 1e9, clock=host.clock)
    assert block_a.median_ms("a") / block_b.median_ms("b") == pytest.approx(0.75)


def test_lead_in_absorbs_the_switch_penalty(il: ModuleType) -> None:
    """``a``'s first run after ``b`` is 4x slow (onnxruntime's spinning threads): the lead-in
    run takes it, the timed runs do not."""
    host = FakeHost()
    fns = {
        "a": host.fn("a", lambda _k, _now, prev: 40.0 if prev == "b" else 10.0),
        "b": host.fn("b", lambda _k, _now, _prev: 10.0),
    }
    timing = il.interleaved(fns, rounds=4, batch=2, budget_s=1e9, lead_in=1, clock=host.clock)
    assert timing.ratio("a", "b").high == pytest.approx(1.0)
    assert host.calls.count("a") == 4 * (1 + 2)  # lead-in runs happen, untimed
    assert timing.runs("a") == 4 * 2
    host = FakeHost()
    fns = {
        "a": host.fn("a", lambda _k, _now, prev: 40.0 if prev == "b" else 10.0),
        "b": host.fn("b", lambda _k, _now, _prev: 10.0),
    }
    timing = il.interleaved(fns, rounds=4, batch=1, budget_s=1e9, lead_in=0, clock=host.clock)
    assert timing.ratio("a", "b").high == pytest.approx(4.0)  # what the lead-in prevents


def test_order_rotates_each_round(il: ModuleType) -> None:
    host = FakeHost()
    fns = {n: host.fn(n, _scripted([1.0] * 9)) for n in ("a", "b", "c")}
    il.interleaved(fns, rounds=3, batch=1, budget_s=1e9, lead_in=1, clock=host.clock)
    turns = host.calls[::2]  # each turn: one lead-in run and one timed run
    assert turns == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_ratio_against_the_fastest_of_several_per_round(il: ModuleType) -> None:
    host = FakeHost()
    fns = {
        "npuc": host.fn("npuc", _scripted([10.0, 10.0])),
        "s8": host.fn("s8", _scripted([5.0, 20.0])),
        "u8": host.fn("u8", _scripted([20.0, 8.0])),
    }
    timing = il.interleaved(fns, rounds=2, batch=1, budget_s=1e9, lead_in=0, clock=host.clock)
    ratio = timing.ratio("npuc", ("s8", "u8"))  # 10 / 5, 10 / 8
    assert (ratio.median, ratio.low, ratio.high) == pytest.approx((1.625, 1.25, 2.0))


def test_budget_stops_after_the_minimum_rounds(il: ModuleType) -> None:
    host = FakeHost()
    fns = {"a": host.fn("a", _scripted([1000.0] * 100)), "b": host.fn("b", _scripted([1.0] * 100))}
    timing = il.interleaved(fns, rounds=10, batch=1, budget_s=0.5, lead_in=0, clock=host.clock)
    assert timing.rounds == il.MIN_ROUNDS
    host = FakeHost()
    fns = {"a": host.fn("a", _scripted([1.0] * 100)), "b": host.fn("b", _scripted([1.0] * 100))}
    timing = il.interleaved(fns, rounds=10, batch=1, budget_s=0.5, lead_in=0, clock=host.clock)
    assert timing.rounds == 10


@pytest.mark.parametrize(
    ("count", "rounds", "batch", "lead_in"),
    [(0, 3, 1, 1), (2, 0, 1, 1), (2, 3, 0, 1), (2, 3, 1, -1)],
)
def test_bad_arguments_raise(
    il: ModuleType, count: int, rounds: int, batch: int, lead_in: int
) -> None:
    fns = {str(k): (lambda: None) for k in range(count)}
    with pytest.raises(ValueError, match="interleaved timing needs"):
        il.interleaved(fns, rounds=rounds, batch=batch, budget_s=1.0, lead_in=lead_in)


def test_each_turn_starts_after_an_idle_sleep(il: ModuleType) -> None:
    """So that another library's spinning threads are asleep when a turn starts."""
    calls: list[str] = []
    slept: list[float] = []

    def fn(name: str) -> Callable[[], None]:
        return lambda: calls.append(name)

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        calls.append("sleep")

    fns = {"a": fn("a"), "b": fn("b")}
    il.interleaved(fns, rounds=2, batch=1, budget_s=1e9, lead_in=1, idle_s=0.05, sleep=sleep)
    assert slept == [0.05] * 4
    assert calls == ["sleep", "a", "a", "sleep", "b", "b", "sleep", "b", "b", "sleep", "a", "a"]
