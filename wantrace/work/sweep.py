"""Sweeps: one row per workload over frames x sizes x steps x precisions, to see how the cost moves.

Work is reused across points. The FX graph does not depend on frames or resolution (shapes are read off
the proxies), so it is traced once per precision policy and only re-run on meta inputs of each geometry;
block 1 of the 2-block graph is weighted N-1 times instead of copied; and one forward is costed once per
(precision, batch, latent), since steps and CFG only multiply it. A row is what `analyze` reports for the
same workload (tested), less the per-module tree."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from wan_reference import Geometry, GeometryError, WanConfig, get_policy

from .. import __version__
from .analysis import Timing, categorize, forward_total, load_config_source
from .categories import CATEGORIES
from .metrics import Metrics
from .report import SCHEMA_VERSION
from .symbolic import SymbolicError, by_category, evaluate, point_of, probes, totals, trace_symbolic
from .trace import cost_graph, replication_weights, trace_graph, traced_layers
from .workload import PRESETS, Workload, WorkloadError, resolve

CONVENTIONS = ("torch", "full", "bytes")


class SweepError(ValueError):
    """A sweep that cannot run: a malformed list or a point the model cannot take; one line."""


def parse_ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise SweepError(f"{option}: expected comma-separated integers, got {text!r}") from None
    return values


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """`832x480,1280x720` -> [(832, 480), (1280, 720)]: width x height, as video sizes are written."""
    sizes = []
    for item in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", item)
        if not m:
            raise SweepError(f"--size: expected WIDTHxHEIGHT (e.g. 832x480), got {item!r}")
        sizes.append((int(m[1]), int(m[2])))
    return sizes


def default_preset(config: WanConfig) -> str:
    """The 480p preset of the model's task (flf2v has only a 720p one, TI2V-5B only 1280x704)."""
    if config.release == "wan2.2":
        return {"t2v": "t2v-a14b-480p", "i2v": "i2v-a14b-480p"}.get(config.model_type, "ti2v-5b-720p")
    return {"t2v": "t2v-480p", "i2v": "i2v-480p", "vace": "vace-480p"}.get(config.model_type, "flf2v-720p")


def plan(config: WanConfig, preset: str, frames: list[int] | None, sizes: list[tuple[int, int]] | None,
         steps: list[int] | None, precisions: list[str] | None, cfg: bool | None) -> list[tuple[Workload, Geometry]]:
    """Every point, checked before any is costed, so a bad one fails the sweep before anything is written."""
    if preset not in PRESETS:
        raise SweepError(f"--workload: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[preset]
    points = []
    for precision in precisions or [base.precision]:
        for n_steps in steps or [base.steps]:
            for width, height in sizes or [(base.width, base.height)]:
                for n_frames in frames or [base.frames]:
                    try:
                        points.append(resolve(preset, config, frames=n_frames, height=height, width=width,
                                              steps=n_steps, cfg=cfg, precision=precision))
                    except (WorkloadError, GeometryError) as exc:
                        raise SweepError(f"sweep point {n_frames} frames {width}x{height} steps {n_steps} "
                                         f"{precision}: {exc}") from None
    return points


@dataclass(frozen=True)
class Row:
    workload: Workload
    geometry: Geometry
    forward: Metrics
    categories: dict[str, Metrics]
    activation_bytes: int

    @property
    def generation(self) -> Metrics:
        return self.forward.times(self.workload.forwards_per_step * self.workload.steps)

    @property
    def timed(self) -> bool:
        return self.forward.time_ns is not None

    def shares(self, convention: str) -> dict[str, float]:
        value = _measure(convention)
        total = value(self.forward)
        return {c: round(value(m) / total, 6) if total else 0.0 for c, m in self.categories.items()}

    def to_dict(self) -> dict:
        g = self.geometry
        return {
            "workload": self.workload.to_dict(),
            "geometry": {"latent": list(g.latent), "grid": list(g.grid), "tokens": g.tokens},
            "forward": self.forward.to_dict(),
            "generation": self.generation.to_dict(),
            "activation_bytes": self.activation_bytes,
            "categories": {c: m.to_dict() for c, m in self.categories.items()},
            "shares": {conv: self.shares(conv) for conv in CONVENTIONS + (("time",) if self.timed else ())},
        }


def _measure(convention: str) -> Callable[[Metrics], int]:
    return {"torch": lambda m: m.flops_torch, "full": lambda m: m.flops_full, "bytes": lambda m: m.bytes,
            "time": lambda m: m.time_ns or 0}[convention]


class Coster:
    """Costs one forward per (precision, batch, latent). Once per precision policy it traces the graph and
    turns every node's cost into a polynomial of the workload (wantrace.work.symbolic); a point is then
    arithmetic. Where a node's cost is no polynomial the policy is costed concretely, point by point, and
    `method` says why."""

    def __init__(self, config: WanConfig, strict: bool = False, timing: Timing | None = None):
        self.config = config
        self.timing = timing
        self.traced_config = config.with_layers(traced_layers(config))
        # replicated blocks count N-1 times; a full trace (VACE) counts each record once
        self.weight_layers = config.num_layers if self.traced_config.num_layers < config.num_layers else 1
        self.strict = strict
        self._graphs: dict[str, torch.fx.GraphModule] = {}
        self._symbolic: dict[tuple, tuple | None] = {}
        self._forwards: dict[tuple, tuple[Metrics, dict[str, Metrics], int]] = {}
        self.method: dict[str, str] = {}  # precision -> "polynomial" or "concrete: <why>"

    def polynomials(self, precision: str, point):
        """(symbolic forward, weights, forward polynomials, category polynomials) for the point's case (which
        sizes are 1), or None (concrete)."""
        points = probes(point)
        key = (precision, points)
        if key not in self._symbolic:
            policy = get_policy(precision)
            if precision not in self._graphs:
                self._graphs[precision] = trace_graph(self.traced_config, policy)
            try:
                sym = trace_symbolic(self._graphs[precision], self.traced_config, policy, self.strict, points)
            except SymbolicError as exc:
                self._symbolic[key] = None
                self.method[precision] = f"concrete: {exc}"
            else:
                weights = replication_weights(sym.records, self.weight_layers)
                self._symbolic[key] = (sym, weights, totals(sym, weights), by_category(sym, weights))
                self.method.setdefault(precision, "polynomial")
        return self._symbolic[key]

    def __call__(self, workload: Workload, geo: Geometry) -> Row:
        key = (workload.precision, workload.batch, tuple(geo.latent))
        if key not in self._forwards:
            f, lh, lw = geo.latent
            point = point_of(workload.batch, (f, lh, lw), self.config.patch_size)
            poly = self.polynomials(workload.precision, point)
            if poly is not None:
                self._forwards[key] = self._from_polynomials(poly, point)
        if key not in self._forwards:
            policy = get_policy(workload.precision)
            run = cost_graph(self._graphs[workload.precision], self.traced_config, policy, geo.latent,
                             workload.batch, self.strict)
            weights = replication_weights(run.records, self.weight_layers)
            forward = forward_total(run.records, weights)
            times = None
            if self.timing is not None:  # the queue runs block 1 N-1 times, as analyze's copies
                times = self.timing(run.records, weights).ns
                forward = forward + Metrics(time_ns=sum(times))
            self._forwards[key] = (forward, categorize(run.records, weights, times), run.peak_activation_bytes())
        forward, categories, activation_bytes = self._forwards[key]
        return Row(workload, geo, forward, categories, activation_bytes)

    def _from_polynomials(self, poly, point):
        sym, weights, forward_polys, category_polys = poly
        forward = evaluate(forward_polys, point)
        if self.timing is None:
            categories = {c: evaluate(p, point) for c, p in category_polys.items()}
        else:  # time is no polynomial: the records at this point, from their polynomial costs
            records = sym.concrete(point)
            times = self.timing(records, weights).ns
            forward = forward + Metrics(time_ns=sum(times))
            categories = categorize(records, weights, times)
        return forward, categories, sym.peak_activation_bytes(point)


@dataclass
class Sweep:
    config: WanConfig
    source: dict  # config path, sha256, format (as in report.json)
    preset: str
    rows: list[Row]
    method: dict[str, str] = dataclasses.field(default_factory=dict)  # per precision: polynomial or concrete

    def to_dict(self, command: str) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "sweep",
            "command": command,
            "tool": {"name": "wantrace", "version": __version__, "torch": torch.__version__.split("+")[0]},
            "model": {**self.source, "variant": self.config.model_type, "dims": self.config.to_dict()},
            "base_workload": self.preset,
            "method": self.method,
            "rows": [row.to_dict() for row in self.rows],
        }

    def to_csv(self) -> str:
        slug = {c: re.sub(r"[^a-z0-9]+", "_", c.lower()).strip("_") for c in CATEGORIES}
        header = ["workload", "frames", "width", "height", "batch", "steps", "cfg", "precision", "tokens",
                  "forward_flops_torch", "forward_flops_full", "forward_bytes", "generation_flops_torch",
                  "generation_flops_full", "generation_bytes", "activation_bytes"]
        timed = bool(self.rows) and all(row.timed for row in self.rows)
        conventions = CONVENTIONS + (("time",) if timed else ())
        header += ["forward_time_s", "generation_time_s"] if timed else []
        header += [f"share_{conv}_{slug[c]}" for conv in conventions for c in CATEGORIES]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        for row in self.rows:
            w, f, g = row.workload, row.forward, row.generation
            shares = {conv: row.shares(conv) for conv in conventions}
            times = [(f.time_ns or 0) / 1e9, (g.time_ns or 0) / 1e9] if timed else []
            writer.writerow([w.id, w.frames, w.width, w.height, w.batch, w.steps, int(w.cfg), w.precision,
                             row.geometry.tokens, f.flops_torch, f.flops_full, f.bytes, g.flops_torch, g.flops_full,
                             g.bytes, row.activation_bytes] + times
                            + [shares[conv][c] for conv in conventions for c in CATEGORIES])
        return buf.getvalue()


def run_sweep(config: WanConfig | str | Path, preset: str | None = None, *, frames: list[int] | None = None,
              sizes: list[tuple[int, int]] | None = None, steps: list[int] | None = None,
              precisions: list[str] | None = None, cfg: bool | None = None, strict: bool = False,
              on_point: Callable[[Workload], None] | None = None, timing: Timing | None = None) -> Sweep:
    """Cost every point of frames x sizes x steps x precisions (None: the preset's value); `on_point` is called
    after each (progress bars)."""
    config, source = load_config_source(config)
    preset = preset or default_preset(config)
    points = plan(config, preset, frames, sizes, steps, precisions, cfg)
    coster = Coster(config, strict, timing)
    rows = []
    for workload, geo in points:
        rows.append(coster(workload, geo))
        if on_point:
            on_point(workload)
    return Sweep(config, source, preset, rows, coster.method)
