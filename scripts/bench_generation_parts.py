"""Where a whole-generation `analyze` of the 14B at t2v-720p spends its time, in one process: the VAE decode's
trace (cold, then with its FX graphs in memory), the generation traced and read back from the disk cache, each
component's share (WANTRACE_JOBS=1: every piece in this process), the generation with its VAE traced beside the
DiT in a forked child, and the predictor's queue over the DiT's records. Best of `--repeat` for the timings that
repeat; the first, cold, ones run once.

    python scripts/bench_generation_parts.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import tempfile
import time

import torch  # noqa: F401  (imported first, as the CLI does, so the timings below are wantrace's)

from wan_reference.precision import WAN_OFFICIAL
from wan_reference.vae_config import VAEConfig
from wantrace.timing.predictor import Predictor
from wantrace.work import beside, generation, vae
from wantrace.work.analysis import analyze
from wantrace.work.lean import lean_meta_run

CONFIG = "models/wan2.1-t2v-14b/config.json"


def timed(fn) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def lean(fn):
    """`fn` in a lean meta run, as analyze_generation calls it (building the VAE would otherwise import dynamo)."""
    def run(*args, **kwargs):
        with lean_meta_run():
            return fn(*args, **kwargs)
    return run


def parts(cache: str) -> dict[str, float]:
    """analyze_generation once with WANTRACE_CACHE=`cache`, and the seconds of its pieces."""
    os.environ["WANTRACE_CACHE"] = cache
    os.environ[beside.JOBS] = "1"  # one process, so that every piece is timed here
    spent: dict[str, float] = {}
    originals = {}
    for module, name, label in ((generation, "analyze", "dit"), (generation, "trace_chunks", "vae trace"),
                                (generation, "expand", "vae copies"), (generation, "trace_sampler", "sampler"),
                                (generation, "_trace_encoder", "t5"), (generation, "_rolled", "roll-up and time"),
                                (generation, "_report", "report")):
        original = originals[(module, name)] = getattr(module, name)

        def wrapper(*args, _f=original, _label=label, **kwargs):
            start = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                spent[_label] = spent.get(_label, 0.0) + time.perf_counter() - start
        setattr(module, name, functools.wraps(original)(wrapper))
    try:
        spent["whole"] = timed(lambda: generation.analyze_generation(CONFIG, "t2v-720p"))
    finally:
        for (module, name), original in originals.items():
            setattr(module, name, original)
        del os.environ[beside.JOBS]
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["WANTRACE_CACHE"] = "off"
    analyze(CONFIG, "ci-tiny")  # torch's python meta kernels, FX, the rules
    config = VAEConfig()
    decode = functools.partial(lean(vae.trace_vae), config, WAN_OFFICIAL, 81, 720, 1280, "decode")
    cold = timed(decode)
    warm = min(timed(decode) for _ in range(args.repeat))
    print(f"trace_vae, 720p decode: {cold:.3f} s cold, {warm:.3f} s with its graphs traced (best of {args.repeat})")
    with tempfile.TemporaryDirectory() as tmp:
        traced = parts("off")
        parts(tmp)  # fills the cache
        cached = min((parts(tmp) for _ in range(args.repeat)), key=lambda p: p["whole"])
    for label, spent in (("in one process, traced (cache off)", traced), ("in one process, read back (cache on)",
                                                                           cached)):
        print(f"analyze_generation, {label}: {spent.pop('whole'):.3f} s; "
              + ", ".join(f"{k} {v:.3f} s" for k, v in spent.items()))
    os.environ["WANTRACE_CACHE"] = "off"
    forked = min(timed(lambda: generation.analyze_generation(CONFIG, "t2v-720p")) for _ in range(args.repeat))
    print(f"analyze_generation, traced (cache off), the VAE traced in a forked child beside the DiT"
          f"{'' if beside.usable() else ' (not here: in one process)'}: {forked:.3f} s (best of {args.repeat})")
    records = []
    original = Predictor.__call__

    def spy(self, rs, weights=None):
        records.append(rs)
        return original(self, rs, weights)
    Predictor.__call__ = spy  # type: ignore[method-assign]
    analyze(CONFIG, "t2v-720p", timing=Predictor("h200"))
    Predictor.__call__ = original  # type: ignore[method-assign]
    predictor = Predictor("h200")
    load = min(timed(lambda: Predictor("h200")) for _ in range(args.repeat))

    def queue():
        predictor._cache.clear()
        predictor(records[0])
    print(f"predictor on h200: loading the profile {1e3 * load:.1f} ms, the queue over the DiT's {len(records[0]):,} "
          f"records {1e3 * min(timed(queue) for _ in range(args.repeat)):.1f} ms (best of {args.repeat})")


if __name__ == "__main__":
    main()
