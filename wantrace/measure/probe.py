"""Follow a real forward as a stack of report ids: module calls through forward hooks, functional scopes
through wan_reference's scope listener. Timers, FLOP counters and NVTX ranges hang off it."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import ExitStack, contextmanager

import torch

from wan_reference.scopes import listen

from ..work.trace import ROOT


class Probe:
    """Calls `on_enter(id)` / `on_exit(id)` as the forward enters and leaves each module or scope."""

    def __init__(self, model: torch.nn.Module, on_enter=None, on_exit=None):
        self.model = model
        self.stack: list[str] = []
        self.on_enter = on_enter or (lambda i: None)
        self.on_exit = on_exit or (lambda i: None)

    @property
    def current(self) -> str:
        return self.stack[-1] if self.stack else ROOT

    def _push(self, ident: str) -> None:
        self.stack.append(ident)
        self.on_enter(ident)

    def _pop(self) -> None:
        self.on_exit(self.stack.pop())

    # scope listener protocol
    def enter(self, name: str) -> None:
        parent = self.current
        self._push(name if parent == ROOT else f"{parent}.{name}")

    def exit(self, name: str) -> None:
        self._pop()

    @contextmanager
    def active(self):
        handles = []
        for name, module in self.model.named_modules():
            ident = name or ROOT
            handles.append(module.register_forward_pre_hook(lambda m, a, ident=ident: self._push(ident)))
            handles.append(module.register_forward_hook(lambda m, a, o: self._pop()))
        try:
            with listen(self):
                yield self
        finally:
            for h in handles:
                h.remove()


class Timer:
    """Inclusive wall time per id: CUDA events on a GPU (read after one synchronize), perf_counter on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.open: list[tuple[str, object]] = []
        self.spans: list[tuple[str, object, object]] = []

    def _mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def enter(self, ident: str) -> None:
        self.open.append((ident, self._mark()))

    def exit(self, ident: str) -> None:
        name, start = self.open.pop()
        self.spans.append((name, start, self._mark()))

    def totals_ms(self) -> dict[str, float]:
        if self.cuda:
            torch.cuda.synchronize()
        out: dict[str, float] = defaultdict(float)
        for ident, start, end in self.spans:
            if isinstance(start, torch.cuda.Event) and isinstance(end, torch.cuda.Event):
                out[ident] += start.elapsed_time(end)
            elif isinstance(start, float) and isinstance(end, float):
                out[ident] += (end - start) * 1e3
        return dict(out)


@contextmanager
def timed(model: torch.nn.Module, device: torch.device):
    timer = Timer(device)
    with ExitStack() as stack:
        stack.enter_context(Probe(model, timer.enter, timer.exit).active())
        yield timer
