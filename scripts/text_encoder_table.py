"""Print the tables of docs/pipeline-text-encoder.md: one call of the umT5-XXL encoder at 512 tokens under each
precision policy, the two calls of a generation, and where one call's FLOPs and bytes go, traced and costed on
meta by `wantrace.work.text_encoder.trace_text_encoder`.

    python scripts/text_encoder_table.py [--config models/wan2.1-umt5-xxl/text_encoder/config.json] [--gpu h200]
"""

from __future__ import annotations

import argparse
import re
import time
from collections import defaultdict

from wan_reference.precision import POLICIES, get_policy
from wan_reference.t5_config import TEXT_LEN, load_t5_config
from wantrace.timing.predictor import Predictor
from wantrace.timing.profile import load_profile
from wantrace.work.analysis import roll_up
from wantrace.work.metrics import ZERO, Metrics
from wantrace.work.text_encoder import TEXT_ENCODER_CALLS, trace_text_encoder

PARTS = (  # (role pattern on the id with the layer index replaced by *, part)
    (r"token_embedding", "token embedding"),
    (r"blocks\.\*\.attn\.[qkvo]", "attention projections q, k, v, o"),
    (r"blocks\.\*\.attn\.attention", "attention core (scores, bias, mask, softmax, weights x V)"),
    (r"blocks\.\*\.attn", "attention glue (reshape)"),
    (r"blocks\.\*\.pos_embedding(\..*)?", "relative position bias (buckets, lookup, permute)"),
    (r"blocks\.\*\.norm[12]|norm", "T5 RMS norms"),
    (r"blocks\.\*\.ffn\.(gate\.0|fc1|fc2)", "FFN matmuls (gate, fc1, fc2)"),
    (r"blocks\.\*\.ffn\.gate\.1", "GELU (tanh, 8 kernels)"),
    (r"blocks\.\*\.ffn", "FFN gate product"),
    (r"blocks\.\*", "residual adds"),
)


def tera(n: int) -> str:
    return f"{n / 1e12:,.3f} T"


def gb(n: int) -> str:
    return f"{n / 1e9:,.2f} GB"


def part_of(module: str) -> str:
    role = re.sub(r"^blocks\.\d+", "blocks.*", module)
    for pattern, part in PARTS:
        if re.fullmatch(pattern, role):
            return part
    return "other (" + role + ")"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="models/wan2.1-umt5-xxl/text_encoder/config.json")
    parser.add_argument("--text-len", type=int, default=TEXT_LEN)
    parser.add_argument("--gpu", action="append", default=None, help="hardware profiles to predict time on")
    args = parser.parse_args()
    config = load_t5_config(args.config)
    traces = {}
    for name in POLICIES:
        start = time.perf_counter()
        traces[name] = trace = trace_text_encoder(config, get_policy(name), text_len=args.text_len, strict=True)
        print(f"<!-- {name}: {len(trace.records)} nodes, {time.perf_counter() - start:.2f} s -->")

    print(f"\n| precision | dtype | params (bytes) | FLOPs (torch) | FLOPs (full) | bytes moved | peak activations "
          f"| x{TEXT_ENCODER_CALLS} calls: FLOPs (torch) | x{TEXT_ENCODER_CALLS}: bytes |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, t in traces.items():
        root = roll_up(t.records, t.model)[0]
        m = root.inclusive
        print(f"| `{name}` | {str(get_policy(name).text).removeprefix('torch.')} | {root.params:,} "
              f"({gb(root.param_bytes)}) | {tera(m.flops_torch)} | {tera(m.flops_full)} | {gb(m.bytes)} | "
              f"{gb(t.peak_activation_bytes)} | {tera(TEXT_ENCODER_CALLS * m.flops_torch)} | "
              f"{gb(TEXT_ENCODER_CALLS * m.bytes)} |")

    t = traces["bf16"]
    parts: dict[str, Metrics] = defaultdict(lambda: ZERO)
    for r in t.records:
        if r.kind == "costed":
            parts[part_of(r.module)] += Metrics(r.cost.flops_torch, r.cost.flops_full, r.cost.bytes_read,
                                                r.cost.bytes_written)
    total = sum(parts.values(), ZERO)
    print(f"\n**One call under `bf16`, by part** ({config.num_layers} layers summed)\n")
    print("| part | FLOPs (torch) | FLOPs (full) | bytes moved | share of bytes |")
    print("|---|---:|---:|---:|---:|")
    for part, m in sorted(parts.items(), key=lambda kv: -kv[1].bytes):
        print(f"| {part} | {tera(m.flops_torch)} | {tera(m.flops_full)} | {gb(m.bytes)} | "
              f"{100 * m.bytes / total.bytes:.1f}% |")
    print(f"| **total** | **{tera(total.flops_torch)}** | **{tera(total.flops_full)}** | **{gb(total.bytes)}** | |")

    for gpu in args.gpu or ("h200", "h100-sxm"):
        estimate = Predictor(load_profile(gpu))(t.records)
        print(f"\npredicted on {gpu} (eager, `bf16`): {sum(estimate.ns) / 1e6:.1f} ms per call, of which "
              f"{sum(estimate.kernel_ns) / 1e6:.1f} ms GPU kernels; x{TEXT_ENCODER_CALLS} calls "
              f"{TEXT_ENCODER_CALLS * sum(estimate.ns) / 1e6:.1f} ms")


if __name__ == "__main__":
    main()
