"""Token assignment: every hazard is ordered by tokens, and no program deadlocks."""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.backend.npu.schedule import Access, Scheduled, Step, assign_tokens, dependencies
from npuc.core.isa.types import Unit

accesses = st.lists(
    st.builds(
        lambda mem, lo, n, w: Access(mem, lo, lo + n, w),
        st.sampled_from(["sram", "dram"]),
        st.integers(0, 200),
        st.integers(1, 60),
        st.booleans(),
    ),
    max_size=3,
)
steps = st.lists(
    st.builds(lambda u, a: Step("sync", u, {}, tuple(a)), st.sampled_from(list(Unit)), accesses),
    max_size=40,
)


def _edges(sched: list[Scheduled]) -> list[set[int]]:
    """Happens-before edges: unit order, and the k-th signal p->c paired with c's k-th wait on p."""
    succ: list[set[int]] = [set() for _ in sched]
    last: dict[int, int] = {}
    pending: dict[tuple[int, int], deque[int]] = {}
    for j, s in enumerate(sched):
        u = int(s.step.unit)
        if u in last:
            succ[last[u]].add(j)
        last[u] = j
        for p in range(len(Unit)):
            if s.wait >> p & 1:
                queue = pending.get((p, u))
                assert queue, f"step {j} waits for {Unit(p).name} before any matching signal"
                succ[queue.popleft()].add(j)
        for c in range(len(Unit)):
            if s.signal >> c & 1:
                pending.setdefault((u, c), deque()).append(j)
    assert all(not q for q in pending.values()), "a signal is never consumed"
    return succ


def _reach(succ: list[set[int]], i: int) -> set[int]:
    seen, todo = {i}, [i]
    while todo:
        for n in succ[todo.pop()]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def _runs_to_completion(sched: list[Scheduled]) -> bool:
    queues = {u: deque(j for j, s in enumerate(sched) if int(s.step.unit) == u) for u in range(4)}
    tokens = {(p, c): 0 for p in range(4) for c in range(4)}
    progress = True
    while progress:
        progress = False
        for u, q in queues.items():
            if q and all(tokens[(p, u)] for p in range(4) if sched[q[0]].wait >> p & 1):
                j = q.popleft()
                for p in range(4):
                    tokens[(p, u)] -= sched[j].wait >> p & 1
                    tokens[(u, p)] += sched[j].signal >> p & 1
                progress = True
    return not any(queues.values())


@settings(max_examples=120, deadline=None)
@given(program=steps)
def test_hazards_ordered_and_no_deadlock(program: list[Step]) -> None:
    sched = assign_tokens(program)
    assert _runs_to_completion(sched)
    succ = _edges(sched)
    for i, a in enumerate(program):
        after = _reach(succ, i)
        for j in range(i + 1, len(program)):
            b = program[j]
            conflict = any(
                x.memory == y.memory and (x.write or y.write) and x.lo < y.hi and y.lo < x.hi
                for x in a.accesses
                for y in b.accesses
            )
            if conflict:
                assert j in after, f"steps {i} and {j} conflict but are not ordered"
        assert not sched[i].wait >> int(a.unit) & 1 and not sched[i].signal >> int(a.unit) & 1


def _dependencies_one_list(program: list[Step]) -> list[list[int]]:
    """``dependencies`` as first written: one record list per memory, scanned whole."""
    records: dict[str, list[tuple[Access, int, int]]] = {"sram": [], "dram": []}
    out = []
    for j, step in enumerate(program):
        need = [-1] * len(Unit)
        u = int(step.unit)
        for a in step.accesses:
            for r, index, unit in reversed(records[a.memory]):
                if unit == u or index <= need[unit]:
                    continue
                if (a.write or r.write) and r.lo < a.hi and a.lo < r.hi:
                    need[unit] = index
        out.append(need)
        for a in step.accesses:
            recs = records[a.memory]
            if a.write:
                recs[:] = [x for x in recs if not (a.lo <= x[0].lo and x[0].hi <= a.hi)]
            recs.append((a, j, u))
    return out


@settings(max_examples=200, deadline=None)
@given(program=steps)
def test_dependencies_per_unit_records_match_one_list(program: list[Step]) -> None:
    """Records kept per unit (each scan stops at its unit's latest conflict) find the
    same dependencies as scanning one list of every record."""
    assert dependencies(program) == _dependencies_one_list(program)
