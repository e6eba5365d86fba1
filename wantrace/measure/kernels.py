"""GPU kernel time per report id, measured with torch.profiler (CUPTI): the probe opens a profiler range named by
the report id of every module and scope, each kernel is charged to the innermost range around the op that
launched it, and a kernel launched by a dtype conversion (aten::_to_copy) is charged to `dtype casts`, where
the analytic report puts the cast's bytes. Kernel durations are the GPU's own: no launch gaps, no hooks."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import torch

from .probe import Probe

RANGE = "wt:"
CASTS = ("aten::_to_copy",)


@contextmanager
def ranges(model: torch.nn.Module):
    """Profiler ranges named by report id around every module call and functional scope."""
    handles: list = []

    def enter(ident: str) -> None:
        handles.append(torch.ops.profiler._record_function_enter_new(RANGE + ident, None))

    def leave(ident: str) -> None:
        torch.ops.profiler._record_function_exit(handles.pop())

    with Probe(model, enter, leave).active():
        yield


def attribute(events) -> Counter[tuple[str, bool]]:
    """(report id, launched by a cast) -> kernel nanoseconds, from the profiler's function events."""
    out: Counter[tuple[str, bool]] = Counter()
    for event in events:
        kernels = getattr(event, "kernels", None) or []
        # an op's kernels only: CUPTI's own events (Command Buffer Full, ...) get a launch's kernels too, by a
        # shared correlation id, and would count them twice
        if not kernels or "::" not in event.name or event.name.startswith(RANGE):
            continue
        ident, cast = None, False
        node = event
        while node is not None:
            if node.name in CASTS:
                cast = True
            if node.name.startswith(RANGE):
                ident = node.name[len(RANGE):]
                break
            node = node.cpu_parent
        ns = sum(int(round(k.duration * 1000)) for k in kernels)
        out[(ident or "model", cast)] += ns
    return out


def measure(model: torch.nn.Module, inputs: dict) -> Counter[tuple[str, bool]]:
    """One profiled forward; kernel nanoseconds by (report id, cast)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with ranges(model):
            model(**inputs)
        torch.cuda.synchronize()
    return attribute(prof.events())
