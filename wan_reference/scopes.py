"""Named functional scopes: the model names its functional work (the attention call, RoPE, modulation,
gated residuals, ...) so that a cost report can give it a stable id under the module that runs it.

Under FX symbolic tracing, `scope(anchor, "attention")` inside `blocks.3.self_attn` makes every node created
in the `with` body carry `blocks.3.self_attn.attention` as its innermost `nn_module_stack` entry, exactly as a
submodule would, without adding a module (module paths and state-dict keys stay the official ones).

Outside tracing it does nothing, unless a listener is installed (`listen`): then it reports entering and
leaving each scope by name, which is how a real run times scopes or wraps them in NVTX ranges."""

from __future__ import annotations

import itertools
from contextlib import contextmanager

import torch.fx

_keys = itertools.count()


class Scope:
    """Marker type recorded in nn_module_stack for a functional scope (a module records its class)."""


_listener = None  # object with enter(name) and exit(name), or None


@contextmanager
def listen(listener):
    """Install `listener` for the duration: each scope calls listener.enter(name) / listener.exit(name)."""
    global _listener
    previous, _listener = _listener, listener
    try:
        yield listener
    finally:
        _listener = previous


@contextmanager
def scope(anchor, name: str):
    tracer = anchor.tracer if isinstance(anchor, torch.fx.Proxy) else None
    if tracer is None:
        listener = _listener
        if listener is None:
            yield
            return
        listener.enter(name)
        try:
            yield
        finally:
            listener.exit(name)
        return
    stack = tracer.module_stack
    parent = next(reversed(stack.values()))[0] if stack else ""
    path = f"{parent}.{name}" if parent else name
    key = f"{path}#scope{next(_keys)}"
    stack[key] = (path, Scope)
    try:
        yield
    finally:
        stack.pop(key)
