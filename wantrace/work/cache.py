"""A disk cache of traced component costs, so that asking again is arithmetic, not a trace.

A whole-generation `analyze` traces the VAE's chunked decode (and encode) on meta: about a second of a 5-second
command on 2 cores, the same for every DiT and every step count. Its result depends only on the code that traces
and costs it, torch, and the call's arguments; the key is a digest of all of them (every .py file of
wan_reference, the rule book and wantrace/work, torch's and Python's versions, the arguments' repr), so a changed
rule or model is a miss, never a stale answer. Entries are pickles written to a temporary file and renamed;
an unreadable entry is traced again, an unwritable folder is no cache. `WANTRACE_CACHE` names the folder
(default: `$XDG_CACHE_HOME/wantrace` or `~/.cache/wantrace`); `off` turns it off."""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import torch

T = TypeVar("T")
ENV = "WANTRACE_CACHE"
_PACKAGES = ("wan_reference", "wantrace.rules", "wantrace.work")


def folder() -> Path | None:
    """Where entries go; None when the cache is off."""
    chosen = os.environ.get(ENV, "")
    if chosen.lower() in ("off", "0", "no", "false"):
        return None
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wantrace"


@lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of every source file whose change could change a traced cost."""
    digest = hashlib.sha256(f"{torch.__version__} {sys.version}".encode())
    for package in _PACKAGES:
        root = Path(importlib.import_module(package).__file__ or "").parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def cached(kind: str, arguments: tuple, build: Callable[[], T]) -> T:
    """`build()`, or what it returned for the same `kind`, `arguments` (their repr) and code."""
    where = folder()
    if where is None:
        return build()
    key = hashlib.sha256(f"{kind} {arguments!r} {code_digest()}".encode()).hexdigest()[:32]
    path = where / f"{kind}-{key}.pickle"
    try:
        return pickle.loads(path.read_bytes())
    except Exception:  # absent, truncated or foreign: traced again, and overwritten
        pass
    value = build()
    tmp = None
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, prefix=f".{kind}-", delete=False) as f:
            tmp = f.name
            f.write(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)
    except OSError:  # a read-only or full disk: no cache, the same answer
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return value
