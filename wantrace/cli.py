"""The `wantrace` command line: a thin layer over the Python API."""

from __future__ import annotations

import functools
import json
import sys

import click
from rich.console import Console
from rich.table import Table

from wan_reference import POLICIES, CheckpointError, ConfigError, GeometryError, build_model, check_checkpoint

from . import __version__
from .inventory import inventory_from_file

USER_ERRORS = (ConfigError, GeometryError, CheckpointError, FileNotFoundError)


def one_line_errors(fn):
    """Bad input: one line on stderr and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            click.echo(f"wantrace: error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000
    raise AssertionError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wantrace")
def main() -> None:
    """What does a Wan2.1 generation cost? Exact FLOPs and bytes, from the model itself."""


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="config.json of a checkpoint (official WanModel or diffusers format).")
@click.option("--checkpoint", type=click.Path(), default=None,
              help="Also check a safetensors checkpoint (file, index or folder) against the model: "
                   "names and shapes only, no weight is read.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@one_line_errors
def model(config_path: str, checkpoint: str | None, fmt: str) -> None:
    """Variant, parameter count and weight bytes under each precision policy."""
    inv = inventory_from_file(config_path)
    if checkpoint:
        check_checkpoint(build_model(inv.config, "bf16"), checkpoint)
    c = inv.config
    if fmt == "json":
        doc = {
            "config": config_path,
            "format": inv.config_format,
            "variant": c.model_type,
            "architecture": c.to_dict(),
            "params": inv.params,
            "params_by_group": inv.params_by_group,
            "params_per_block": inv.params_per_block,
            "weight_bytes": inv.weight_bytes,
            "checkpoint": {"path": checkpoint, "matches": True} if checkpoint else None,
        }
        click.echo(json.dumps(doc, indent=2))
        return
    console = Console()
    console.print(f"[bold]Wan2.1 {c.model_type}[/]  {config_path}  ({inv.config_format} format)")
    split = "/".join(str(n) for n in c.rope_split)
    console.print(
        f"dim {c.dim} · ffn {c.ffn_dim} · {c.num_heads} heads x {c.head_dim} · {c.num_layers} blocks · "
        f"in {c.in_dim} -> out {c.out_dim} · text {c.text_len} rows"
        + (f" · image {c.image_tokens} tokens" if c.image_tokens else "")
        + f" · RoPE split {split}"
    )
    table = Table(title="Parameters", title_justify="left")
    table.add_column("group")
    table.add_column("params", justify="right")
    table.add_column("share", justify="right")
    for group, n in inv.params_by_group.items():
        label = f"{group} ({c.num_layers} x {inv.params_per_block:,})" if group == "blocks" else group
        table.add_row(label, f"{n:,}", f"{100 * n / inv.params:.2f}%")
    table.add_row("[bold]total[/]", f"[bold]{inv.params:,}[/]", "100.00%")
    console.print(table)
    weights = Table(title="Weight bytes by precision policy", title_justify="left")
    weights.add_column("policy")
    weights.add_column("bytes", justify="right")
    weights.add_column("", justify="right")
    weights.add_column("what it models")
    for name, nbytes in inv.weight_bytes.items():
        weights.add_row(name, f"{nbytes:,}", human_bytes(nbytes), POLICIES[name].summary)
    console.print(weights)
    if checkpoint:
        console.print(f"[green]checkpoint {checkpoint}: every name and shape matches[/]")


if __name__ == "__main__":  # pragma: no cover
    main()
