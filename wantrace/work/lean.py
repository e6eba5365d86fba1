"""Run meta kernels without importing the compiler's modules: torch._dynamo (1-1.7 s of a 3 s CLI call on 2
cores), torch.fx.experimental.symbolic_shapes and sympy (0.4-0.7 s).

Many of torch's Python meta kernels (`torch.cat`'s, every type-promoting reference) are wrapped in
`torch._disable_dynamo`, which imports torch._dynamo the first time the kernel runs, only to ask
`torch._dynamo.disable(fn)` for a wrapper that keeps dynamo from tracing it, and caches that wrapper on `fn`.
While dynamo has not been imported nothing in the process can be compiling, so the right wrapper is `fn`
itself.

Every `torch._check` in a meta kernel (layer_norm, var_mean, conv, ...) imports symbolic_shapes for
`expect_true(cond)`, and the kernels ask it `guard_or_false`, `sym_eq` and the like. On the Python bools and
ints of concrete shapes each of these is the identity or plain arithmetic; they do more only for SymInts and
SymBools, which a meta run of concrete tensors never makes.

The type-promoting references (`elementwise_dtypes`) `import sympy` only to ask `isinstance(x, sympy.Basic)`,
which is false for every object while sympy is not loaded (a sympy expression needs sympy).

`lean_meta_run` stands in for the three during a meta run: the dynamo stand-in's `disable` is the identity;
the symbolic-shapes stand-in answers those helpers on bools and ints; an `import sympy` statement gets a
module whose `Basic` no object is an instance of until sympy is loaded. Anything else (another name, a
symbolic argument) goes to the real module, imported then. On leaving, the stand-ins, the import hook and
every cache they caused are removed, so later calls get the real modules. A module already loaded is used as
it is."""

from __future__ import annotations

import builtins
import contextlib
import functools
import importlib
import operator
import sys
import types
from collections.abc import Callable, Iterator

_DYNAMO = "torch._dynamo"
_SHAPES = "torch.fx.experimental.symbolic_shapes"
_SYMPY = "sympy"
_CACHE = "__dynamo_disable"  # where torch._compile._disable_dynamo caches dynamo's wrapper on the function


def _real(name: str, stand_in: types.ModuleType) -> types.ModuleType:
    if sys.modules.get(name) is stand_in:
        del sys.modules[name]
    return importlib.import_module(name)


class _NoDynamo(types.ModuleType):
    def __init__(self) -> None:
        super().__init__(_DYNAMO)
        self.asked: list[Callable] = []

    def disable(self, fn: Callable | None = None, recursive: bool = True, wrapping: bool = True) -> Callable:
        if fn is None:  # the decorator form: nothing in the meta kernels uses it, so let the real module answer
            return _real(_DYNAMO, self).disable(fn, recursive, wrapping=wrapping)
        self.asked.append(fn)
        return fn

    def __getattr__(self, name: str):
        return getattr(_real(_DYNAMO, self), name)


class _ConcreteShapes(types.ModuleType):
    """symbolic_shapes' helpers that torch's meta kernels call, exact on Python bools and ints (what they return
    there, read off torch 2.13's definitions); a symbolic argument goes to the real helper. The kernels also
    import helpers they call only on symbolic paths (`DEFERRED`): those are the real ones, imported when
    called."""

    ANSWERED = ("expect_true", "guard_or_false", "guard_or_true", "statically_known_true", "sym_and", "sym_or",
                "sym_eq", "is_nested_int")
    DEFERRED = ("guard_size_oblivious", "has_guarding_hint", "guarding_hint_or_throw")

    def __init__(self) -> None:
        super().__init__(_SHAPES)
        # `from ... import expect_true` reads the module's attributes
        for name in self.ANSWERED:
            setattr(self, name, getattr(self, "_" + name))
        for name in self.DEFERRED:
            setattr(self, name, self._deferred(name))

    def __getattr__(self, name: str):
        if name.startswith("__"):  # the import system asks for __path__ and the like: not a package
            raise AttributeError(name)
        return getattr(_real(_SHAPES, self), name)

    def _deferred(self, name: str) -> Callable:
        def call(*args, **kwargs):
            return getattr(_real(_SHAPES, self), name)(*args, **kwargs)

        return call

    def _expect_true(self, a, skip: int = 0):
        return a if type(a) is bool else _real(_SHAPES, self).expect_true(a, skip + 1)

    def _guard_or_false(self, a):
        return a if type(a) is bool else _real(_SHAPES, self).guard_or_false(a)

    def _guard_or_true(self, a):
        return a if type(a) is bool else _real(_SHAPES, self).guard_or_true(a)

    def _statically_known_true(self, x):
        return x if type(x) is bool else _real(_SHAPES, self).statically_known_true(x)

    def _sym_and(self, x, *others):
        if type(x) is bool and all(type(y) is bool for y in others):
            return functools.reduce(operator.and_, others, x)
        return _real(_SHAPES, self).sym_and(x, *others)

    def _sym_or(self, x, *others):
        if type(x) is bool and all(type(y) is bool for y in others):
            return functools.reduce(operator.or_, others, x)
        return _real(_SHAPES, self).sym_or(x, *others)

    def _sym_eq(self, x, y):
        if isinstance(x, (tuple, list)) and isinstance(y, (tuple, list)):
            if len(x) != len(y):
                return False
            return functools.reduce(operator.and_, map(self._sym_eq, x, y), True)
        if isinstance(x, int) and isinstance(y, int):
            return x == y
        return _real(_SHAPES, self).sym_eq(x, y)

    def _is_nested_int(self, s):
        return False if type(s) in (int, float, bool) else _real(_SHAPES, self).is_nested_int(s)


@contextlib.contextmanager
def _standing_in(stand_in: types.ModuleType) -> Iterator[None]:
    name = stand_in.__name__
    if name in sys.modules:
        yield
        return
    sys.modules[name] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]


class _NoSympyYet(type):
    """The type of `_Basic`: calling it makes a real sympy.Basic (nothing in the kernels does)."""

    def __call__(cls, *args, **kwargs):
        return importlib.import_module(_SYMPY).Basic(*args, **kwargs)


class _Basic(metaclass=_NoSympyYet):
    """sympy.Basic while sympy is not loaded: no object is an instance of it, as none is of the real one."""


class _LazySympy(types.ModuleType):
    """What `import sympy` gives during a meta run: `Basic` is `_Basic` until sympy is loaded, the real one
    after; every other name imports sympy. A module that keeps it (an `import sympy` at its top, run during the
    meta run) therefore sees the real sympy whenever sympy is loaded."""

    def __init__(self) -> None:
        super().__init__(_SYMPY)

    def __getattr__(self, name: str):
        if name == "Basic" and _SYMPY not in sys.modules:
            return _Basic
        return getattr(importlib.import_module(_SYMPY), name)


@contextlib.contextmanager
def _lazy_sympy() -> Iterator[None]:
    """`import sympy` (the statement, not importlib) gives `_LazySympy` while sympy is not loaded; `from sympy
    import ...` and submodules import the real one as ever."""
    original = builtins.__import__
    lazy = _LazySympy()

    def hooked(name, globals=None, locals=None, fromlist=(), level=0):
        if name == _SYMPY and not fromlist and not level and _SYMPY not in sys.modules:
            return lazy
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = hooked
    try:
        yield
    finally:
        if builtins.__import__ is hooked:
            builtins.__import__ = original


@contextlib.contextmanager
def lean_meta_run() -> Iterator[None]:
    """Run meta kernels with none of torch._dynamo, symbolic_shapes and sympy imported."""
    no_dynamo = _NoDynamo()
    try:
        with _standing_in(no_dynamo), _standing_in(_ConcreteShapes()), _lazy_sympy():
            yield
    finally:
        for fn in no_dynamo.asked:
            if getattr(fn, _CACHE, None) is fn:
                delattr(fn, _CACHE)
