"""``macro``: TVMScript's ``T.macro`` without its per-call source scan (compile time only).

The int8 kernels (:mod:`.int8_kernel` and the modules it builds from) are
written as nested ``T.macro`` calls. Each call of a ``T.macro`` looks up the
parser that is expanding it with ``inspect.getouterframes``
(``tvm/script/parser/core/parser.py``, ``ScriptMacro._find_parser_def``),
which reads the source line of every outer frame; inside the parser's deep
recursion that is about a hundred frames per call, and it took 25 of the 54
seconds of building MobileNetV2's int8 library for AVX2 (cProfile, one
thread). Each call also re-parses the macro's source to find its definition.

:func:`macro` is ``T.macro`` (hygienic; same :class:`TIRMacro`, same
expansion, same block-name suffixes) whose calls walk the frames without
reading any source, and parse the definition once. Requires: TVM 0.27's
``ScriptMacro`` (its ``parser_object_name`` global and ``get_macro_def``).
Guarantees: the PrimFunc parsed is the one ``T.macro`` gives (the same
parser is found: the innermost frame whose globals hold it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from tvm.script.parser._core import scan_macro, utils
from tvm.script.parser.core.parser import ScriptMacro
from tvm.tirx.script.parser.entry import TIRMacro


class _FrameWalkMacro(TIRMacro):
    """A :class:`TIRMacro` that finds its parser by walking frames, no source read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._definition: Any = None

    def _find_parser_def(self) -> Any:
        frame = inspect.currentframe()
        while frame is not None:
            parser = frame.f_globals.get(ScriptMacro.parser_object_name)
            if parser is not None:
                return parser
            frame = frame.f_back
        raise RuntimeError(f"{ScriptMacro.parser_object_name} not available")

    def get_macro_def(self) -> Any:
        if self._definition is None:
            self._definition = super().get_macro_def()
        return self._definition


def macro(func: Callable[..., Any]) -> Callable[..., Any]:
    """``@macro`` for ``@T.macro`` (hygienic): the same macro, cheaper to expand."""
    source, closure_vars = scan_macro(func, utils.inspect_function_capture(func))
    obj = _FrameWalkMacro(source, closure_vars, func, True)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return obj(*args, **kwargs)

    return wrapper
