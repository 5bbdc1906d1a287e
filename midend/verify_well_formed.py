"""Check that a module is well-formed Relax (the debug guard between passes).

Not a rewrite: :func:`verify_well_formed` returns nothing or raises. The
pipeline calls it after every pass when built with ``debug=True`` so that a
pass that breaks the IR is named at once instead of surfacing as a confusing
failure several passes (or a C++ crash) later.
"""

from __future__ import annotations

import tvm
from tvm import relax


class IllFormedIRError(RuntimeError):
    """A midend pass produced ill-formed Relax: a bug in npuc, not in the user's model."""


def verify_well_formed(mod: tvm.IRModule, after: str) -> None:
    """Raise :class:`IllFormedIRError` if ``relax.analysis.well_formed`` rejects ``mod``.

    Parameters
    ----------
    mod
        The module to check.
    after
        What produced ``mod`` (a pass name), for the message.
    """
    try:
        relax.analysis.well_formed(mod)
    except Exception as err:  # TVM raises its own error types through the FFI
        raise IllFormedIRError(
            f"midend: the IR is not well-formed after {after}: {err}; this is a bug in npuc"
        ) from err
