"""PNG plots of a sweep. matplotlib is imported here, lazily, so the CLI starts fast; figures are built with
the object API on the Agg canvas (no pyplot state, no display needed)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from ..work.categories import CATEGORIES

if TYPE_CHECKING:
    from ..work.sweep import Row, Sweep

WIDTH_IN, HEIGHT_IN, DPI = 8, 5, 100  # 800 x 500 pixels


def series(sweep: Sweep) -> tuple[str, list[Row]]:
    """The rows to draw: one per geometry of the first precision and batch (steps and CFG do not change a
    forward), by tokens."""
    first = sweep.rows[0].workload
    seen: dict[tuple, Row] = {}
    for row in sweep.rows:
        w = row.workload
        if (w.precision, w.batch) == (first.precision, first.batch):
            seen.setdefault(tuple(row.geometry.latent), row)
    rows = sorted(seen.values(), key=lambda r: (r.geometry.tokens, tuple(r.geometry.latent)))
    return f"{first.precision}, batch {first.batch}", rows


def prepare() -> None:
    """matplotlib imported and its fonts loaded, ahead of the sweep it will draw (a second of a sweep command)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.add_subplot().set_xscale("log")
    fig.canvas.draw()


def render_plots(sweep: Sweep) -> dict[str, bytes]:
    """{file name: PNG bytes} for flops_vs_tokens.png and self_attention_share.png."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter

    what, rows = series(sweep)
    tokens = [r.geometry.tokens for r in rows]
    tab10 = matplotlib.colormaps["tab10"]
    colors = [*(tab10(i) for i in range(tab10.N)), "#393b79"]  # one color per category, stable across plots
    model = f"Wan2.1 {sweep.config.model_type} (dim {sweep.config.dim}, {sweep.config.num_layers} blocks)"

    def figure():
        fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
        FigureCanvasAgg(fig)
        return fig, fig.add_subplot()

    def log_axis(axis) -> None:
        """Log ticks labelled in plain text (1e+05; minor ones, 2e+04, where an axis spans few decades):
        matplotlib's default labels are typeset with mathtext, a third of the plots' drawing time."""
        axis.set_major_formatter(LogFormatter())
        axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))

    def png(fig) -> bytes:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
        return buf.getvalue()

    out = {}
    fig, ax = figure()
    fig.subplots_adjust(left=0.1, right=0.7, top=0.9, bottom=0.12)
    ax.plot(tokens, [r.forward.flops_full for r in rows], color="black", linestyle="--", marker="o",
            markersize=3, label="total (full)")
    for i, category in enumerate(CATEGORIES):
        values = [r.categories[category].flops_full for r in rows]
        if any(values):
            ax.plot(tokens, values, color=colors[i], marker="o", markersize=3, label=category)
    ax.set_xscale("log")
    ax.set_yscale("log")
    log_axis(ax.xaxis)
    log_axis(ax.yaxis)
    ax.set_xlabel("video tokens per forward")
    ax.set_ylabel("FLOPs per forward (full convention)")
    ax.set_title(f"{model}: FLOPs by category ({what})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    out["flops_vs_tokens.png"] = png(fig)

    fig, ax = figure()
    fig.subplots_adjust(left=0.1, right=0.95, top=0.9, bottom=0.12)
    for convention, label, color in (("torch", "FLOPs (torch)", "tab:blue"), ("full", "FLOPs (full)", "tab:orange"),
                                     ("bytes", "bytes", "tab:green")):
        ax.plot(tokens, [100 * r.shares(convention)["self-attention core"] for r in rows], marker="o",
                markersize=3, color=color, label=label)
    ax.set_xscale("log")
    log_axis(ax.xaxis)
    ax.set_ylim(0, 100)
    ax.set_xlabel("video tokens per forward")
    ax.set_ylabel("self-attention core share of the forward (%)")
    ax.set_title(f"{model}: self-attention share ({what})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    out["self_attention_share.png"] = png(fig)
    return out
