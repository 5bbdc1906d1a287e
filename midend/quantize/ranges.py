"""Activation range strategies, named as Zhouyi Compass OPT names them.

=====================  ====================================================
text                   range of the tensor's calibration values
=====================  ====================================================
``extrema``            ``[min, max]`` over all samples
``mean``               running min/max: ``m = momentum * m + (1 - momentum)
                       * sample_min`` (and max), the first sample as start
``[R]percentile``      the ``(100 - R)`` and ``R`` percentiles (symmetric:
                       the ``R`` percentile of ``|x|``); R defaults to 99.99
``[N]std``             ``mean -+ N * std`` (within the extrema); N = 3
``[N]kld``             TensorRT's entropy calibration on the ``|x|``
                       histogram with N target bins; N defaults to
                       ``2**(bits - 1)`` (128 at 8 bits), or ``2**bits``
                       for an asymmetric, one-sided tensor; at most the
                       histogram's bin count (then nothing is clipped)
``[R]aciq_laplace``    ``mean -+ alpha * b``, ``b = mean |x - mean|``, with
                       Banner et al.'s optimal alpha for R bits
``[R]aciq_gauss``      ``mean -+ alpha * std`` likewise; R defaults to the
                       dtype's bits
``mse``                ``alpha * [min, max]`` with the least expected
                       squared quantization error over the histogram
=====================  ====================================================

Weights take ``extrema`` or ``mse`` (:func:`~.qparams.choose_weight_qparams`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from npuc.core.errors import InvalidInputError

#: Strategy kinds with their default parameter (None: takes none).
STRATEGY_DEFAULTS: dict[str, float | None] = {
    "extrema": None,
    "mean": None,
    "percentile": 99.99,
    "std": 3.0,
    "kld": None,
    "aciq_laplace": None,
    "aciq_gauss": None,
    "mse": None,
}
STRATEGY_NAMES: tuple[str, ...] = (
    "extrema",
    "mean",
    "[R]percentile",
    "[N]std",
    "[N]kld",
    "[R]aciq_laplace",
    "[R]aciq_gauss",
    "mse",
)
_NO_PARAM = frozenset(k for k, v in STRATEGY_DEFAULTS.items() if v is None) - {
    "kld",
    "aciq_laplace",
    "aciq_gauss",
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)?\s*([a-z_]+)\s*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class RangeStrategy:
    """One activation range strategy (module table).

    ``param`` is the leading number of the text form (R or N) or ``None`` for
    the kind's default (resolved where the dtype is known).
    """

    kind: str
    param: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in STRATEGY_DEFAULTS:
            raise InvalidInputError(
                f"range strategy {self.kind!r} is not known",
                hint=f"valid: {', '.join(STRATEGY_NAMES)}",
            )
        if self.param is not None and self.kind in _NO_PARAM:
            raise InvalidInputError(f"range strategy {self.kind!r} takes no number")
        if self.param is not None and self.param <= 0:
            raise InvalidInputError(f"range strategy {self}: the number must be positive")
        if self.kind == "percentile" and self.param is not None and self.param > 100:
            raise InvalidInputError(f"range strategy {self}: a percentile is at most 100")
        p = self.param
        needs_int = self.kind in ("kld", "aciq_laplace", "aciq_gauss")
        if needs_int and p is not None and (p != int(p) or (self.kind == "kld" and p < 2)):
            raise InvalidInputError(
                f"range strategy {self}: the number must be an integer "
                + ("(target bins, >= 2)" if self.kind == "kld" else "(bits)")
            )

    def value(self) -> float | None:
        """``param`` or the kind's default (None where it depends on the dtype)."""
        return self.param if self.param is not None else STRATEGY_DEFAULTS[self.kind]

    def __str__(self) -> str:
        if self.param is None:
            return self.kind
        num = int(self.param) if self.param == int(self.param) else self.param
        return f"{num}{self.kind}"


def parse_strategy(text: str) -> RangeStrategy:
    """``"99.99percentile"`` -> ``RangeStrategy(kind="percentile", param=99.99)``.

    Case-insensitive; spaces around the parts are ignored.

    Raises
    ------
    InvalidInputError
        Unknown name (the message lists the valid ones), a number on a
        strategy that takes none, or a number out of range.
    """
    match = _PATTERN.match(str(text).lower())
    if match is None or match.group(2) not in STRATEGY_DEFAULTS:
        raise InvalidInputError(
            f"range strategy {text!r} is not known",
            hint=f"valid: {', '.join(STRATEGY_NAMES)} (e.g. 99.99percentile, 3std, 128kld)",
        )
    number, kind = match.groups()
    return RangeStrategy(kind=kind, param=float(number) if number is not None else None)
