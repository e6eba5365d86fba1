"""Run one function in a forked child on another core while this process goes on, and take its result back: the
whole generation traces the VAE (the largest of its components) beside the DiT; a sweep's plotter imports
matplotlib while the sweep is costed, then draws what it is sent (`Ahead`).

Fork, not spawn: the child starts in milliseconds with torch imported and the meta kernels loaded, and nothing
is pickled to start it. Its result comes back pickled through a pipe. Where a second process cannot help or is
not safe, the function runs in this process when its result is asked for: no fork start method, macOS (whose
system libraries are not fork-safe), one usable core, another thread running (a fork copies the thread's locks
but not the thread), or `WANTRACE_JOBS=1`. A child that fails, for whatever reason, sends nothing back, and the
function then runs here: an error is raised as it would be without the child, with its own type and message."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

JOBS = "WANTRACE_JOBS"  # 1: never fork (the command runs in one process)


def usable() -> bool:
    """Whether a forked child can run beside this process: fork exists and is safe here, a second core is free to
    this process, and no other thread is running."""
    if os.environ.get(JOBS, "").strip() == "1" or sys.platform == "darwin":
        return False
    if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores >= 2


class _Child:
    """A forked child and this process's ends of its pipes."""

    _process: multiprocessing.process.BaseProcess | None = None
    _pipes: tuple = ()

    @property
    def forked(self) -> bool:
        return self._process is not None

    def close(self) -> None:
        """Stop the child if its result was never taken."""
        self._stop(terminate=True)

    def _stop(self, terminate: bool) -> None:
        if self._process is not None:
            if terminate:
                self._process.terminate()
            self._process.join()
            for pipe in self._pipes:
                pipe.close()
            self._process = None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Beside(_Child, Generic[T]):
    """`fn()` started in a forked child (where `usable()`); `result()` waits for it. Use it as a context manager:
    leaving stops a child whose result was never asked for (this process's own work raised)."""

    def __init__(self, fn: Callable[[], T]):
        self._fn = fn
        self._done = False
        self._value: T | None = None
        if usable():
            context = multiprocessing.get_context("fork")
            self._receive, send = context.Pipe(duplex=False)
            self._pipes = (self._receive,)
            self._process = process = context.Process(target=_child, args=(fn, send), daemon=True)
            process.start()
            send.close()  # the child's end: a child that dies leaves this end at EOF

    def result(self) -> T:
        if not self._done:
            data = b""
            if self._process is not None:
                try:
                    data = self._receive.recv_bytes()
                except EOFError:  # the child died before sending
                    data = b""
                self._stop(terminate=False)
            self._value = pickle.loads(data) if data else self._fn()
            self._done = True
        return self._value  # type: ignore[return-value]


def _child(fn: Callable[[], object], send) -> None:
    try:
        data = pickle.dumps(fn(), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:  # noqa: BLE001  (the parent runs fn itself and raises what it raises)
        data = b""
    _send(send, data)


class Ahead(_Child, Generic[T]):
    """`prepare()` started in a forked child (where `usable()`: imports, warm-up) while this process works;
    `result(value)` sends `value` over and returns the child's `fn(value)`, or runs `fn(value)` here when there is
    no child or it failed. A context manager, as Beside."""

    def __init__(self, prepare: Callable[[], object], fn: Callable[[object], T]):
        self._fn = fn
        if usable():
            context = multiprocessing.get_context("fork")
            self._receive, send = context.Pipe(duplex=False)
            receive, self._send = context.Pipe(duplex=False)
            self._pipes = (self._receive, self._send)
            self._process = process = context.Process(target=_ahead, args=(prepare, fn, receive, send),
                                                      daemon=True)
            process.start()
            send.close()
            receive.close()

    def result(self, value: object) -> T:
        data = b""
        if self._process is not None:
            try:
                self._send.send_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
                data = self._receive.recv_bytes()
            except Exception:  # noqa: BLE001  (the child died, or `value` cannot travel: it runs here)
                data = b""
            self._stop(terminate=not data)
        return pickle.loads(data) if data else self._fn(value)


def _ahead(prepare: Callable[[], object], fn: Callable[[object], object], receive, send) -> None:
    try:
        prepare()
        data = pickle.dumps(fn(pickle.loads(receive.recv_bytes())), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:  # noqa: BLE001  (the parent runs fn itself and raises what it raises)
        data = b""
    _send(send, data)


def _send(send, data: bytes) -> None:
    try:
        send.send_bytes(data)
        send.close()
    except OSError:  # the parent is gone (killed): nobody to read the answer
        pass
