"""Mutation fuzzing of npuc's loaders: seeded mutators, a per-case time bound, outcome counts.

A fuzz suite takes valid inputs (seeds), mutates them with a seeded
:class:`random.Random`, and feeds each case to a loader through
:meth:`Tally.run`. Every case must end in success or an
:class:`~npuc.core.errors.NpucError` (what the CLI turns into its documented
exit codes); any other exception is a crash and a case running longer than
the time bound is a hang. Both are collected with the input that caused them
and fail the suite. Each suite's counts are printed at the end of the pytest
session (tests/conftest.py) and with ``-s``.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from npuc.core.errors import NpucError

CASE_SECONDS = 10.0
"""Time bound of one case; far above any case's normal run (milliseconds)."""

TALLIES: list[Tally] = []
"""Every suite run in this session, for the session summary."""

# Values that tend to break parsers: type confusions, limits, sizes.
INTERESTING_INTS = (
    0, 1, -1, 2, 7, 8, 63, 64, 127, 128, 255, 256, 32767, 32768, 65535, 65536,
    2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30,
)  # fmt: skip
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x20, 0x0A, 0x22, 0x5B)


class CaseTimeout(BaseException):
    """Raised in a case that ran past its time bound (a BaseException: nothing swallows it)."""


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Interrupt the enclosed code with CaseTimeout after ``seconds`` (main thread, Unix)."""

    def expire(signum: int, frame: object) -> None:
        raise CaseTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Tally:
    """Outcome counts of one fuzz suite, and the inputs that crashed or hung."""

    suite: str
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str, object]] = field(default_factory=list)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        TALLIES.append(self)

    @property
    def cases(self) -> int:
        return sum(self.outcomes.values())

    def run(self, kind: str, case: object, fn: Callable[[], object]) -> str:
        """Run one case; return and count its outcome.

        Outcomes: ``ok``; the NpucError class name (``InvalidInputError`` ...);
        ``CRASH <type>`` or ``HANG``, which also record ``(kind, message, case)``.
        """
        start = time.perf_counter()
        try:
            with time_bound(CASE_SECONDS):
                fn()
            outcome = "ok"
        except NpucError as exc:
            outcome = type(exc).__name__
        except CaseTimeout:
            outcome = "HANG"
            self.failures.append((kind, f"ran over {CASE_SECONDS} s", case))
        except Exception as exc:  # the bug a fuzzer exists to find
            outcome = f"CRASH {type(exc).__name__}"
            self.failures.append((kind, f"{type(exc).__name__}: {str(exc)[:300]}", case))
        self.seconds += time.perf_counter() - start
        self.outcomes[outcome] += 1
        return outcome

    def summary(self) -> str:
        counts = ", ".join(f"{name} {n}" for name, n in sorted(self.outcomes.items()))
        bad = len(self.failures)
        return (
            f"{self.suite}: {self.cases} cases in {self.seconds:.1f} s; {counts}; "
            f"{bad} crash(es)/hang(s)"
        )

    def check(self) -> None:
        """Print the summary; fail with the first few crashing inputs, if any."""
        print(f"\n[fuzz] {self.summary()}")
        if self.failures:
            shown = "\n".join(
                f"  {kind}: {message}\n    input: {case!r:.400}"
                for kind, message, case in self.failures[:5]
            )
            raise AssertionError(f"{self.suite}: {len(self.failures)} failure(s)\n{shown}")


# ----------------------------------------------------------------------------- byte mutators


def flip_bits(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if out:
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def set_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if out:
            out[rng.randrange(len(out))] = rng.choice(INTERESTING_BYTES)
    return bytes(out)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))] if data else data


def insert_bytes(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    junk = bytes(rng.choice(INTERESTING_BYTES) for _ in range(rng.randint(1, 16)))
    return data[:i] + junk + data[i:]


def delete_bytes(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, 32) :]


def duplicate_chunk(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.randint(1, 64))
    return data[:j] + data[i:j] * rng.randint(1, 4) + data[j:]


def overwrite_int(rng: random.Random, data: bytes) -> bytes:
    """Write an interesting integer (1, 2, 4 or 8 bytes, little-endian) at a random offset."""
    width = rng.choice((1, 2, 4, 8))
    if len(data) < width:
        return data
    value = rng.choice(INTERESTING_INTS) % (1 << (8 * width))
    i = rng.randrange(len(data) - width + 1)
    return data[:i] + value.to_bytes(width, "little") + data[i + width :]


BYTE_MUTATORS: tuple[Callable[[random.Random, bytes], bytes], ...] = (
    flip_bits,
    set_bytes,
    truncate,
    insert_bytes,
    delete_bytes,
    duplicate_chunk,
    overwrite_int,
)


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """One to three random byte-level mutations of ``data``."""
    for _ in range(rng.randint(1, 3)):
        data = rng.choice(BYTE_MUTATORS)(rng, data)
    return data
