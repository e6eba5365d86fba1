"""Run meta kernels without importing torch._dynamo (1-1.7 s of a 3 s CLI call on 2 cores).

Many of torch's Python meta kernels (`torch.cat`'s, every type-promoting reference) are wrapped in
`torch._disable_dynamo`, which imports torch._dynamo the first time the kernel runs, only to ask
`torch._dynamo.disable(fn)` for a wrapper that keeps dynamo from tracing it, and caches that wrapper on `fn`.
While dynamo has not been imported nothing in the process can be compiling, so the right wrapper is `fn`
itself. `dynamo_not_imported` stands in for torch._dynamo during a meta run with a module whose `disable` is
the identity, and on leaving removes it and every cache it caused, so later calls ask the real dynamo. Any
other use of the stand-in imports the real module. When dynamo is already loaded it does nothing."""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from collections.abc import Callable, Iterator

_NAME = "torch._dynamo"
_CACHE = "__dynamo_disable"  # where torch._compile._disable_dynamo caches dynamo's wrapper on the function


class _StandIn(types.ModuleType):
    def __init__(self) -> None:
        super().__init__(_NAME)
        self.asked: list[Callable] = []

    def disable(self, fn: Callable | None = None, recursive: bool = True, wrapping: bool = True) -> Callable:
        if fn is None:  # the decorator form: nothing in the meta kernels uses it, so let the real module answer
            return self._real().disable(fn, recursive, wrapping=wrapping)
        self.asked.append(fn)
        return fn

    def __getattr__(self, name: str):
        return getattr(self._real(), name)

    def _real(self) -> types.ModuleType:
        if sys.modules.get(_NAME) is self:
            del sys.modules[_NAME]
        return importlib.import_module(_NAME)


@contextlib.contextmanager
def dynamo_not_imported() -> Iterator[None]:
    if _NAME in sys.modules:
        yield
        return
    stand_in = _StandIn()
    sys.modules[_NAME] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(_NAME) is stand_in:
            del sys.modules[_NAME]
        for fn in stand_in.asked:
            if getattr(fn, _CACHE, None) is fn:
                delattr(fn, _CACHE)
