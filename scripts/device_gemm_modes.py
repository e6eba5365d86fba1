"""How should calibrate time a long GEMM? On the lent H200 the back-to-back replays of the 14B's 720p FFN GEMM
ran at ~700 TFLOP/s while the model ran the same GEMM at ~810 (docs/time-model.md): a dense GEMM replayed
without pause sits at the power limit, while the model runs light memory-bound kernels between its GEMMs.
This times the model's GEMM shapes four ways and prints each against the in-model kernel times that
`wantrace verify` measured (docs/verification/time, per role, per call).

    python scripts/device_gemm_modes.py --out gemm-modes.json      # on a CUDA machine
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

# (M, N, K) -> in-model kernel ns per call on the H200, from docs/verification/time/*.json roles
# (measured_kernel_ns / blocks): the 14B (40 blocks) and 1.3B (30 blocks) at t2v-480p and t2v-720p.
IN_MODEL = {
    (75600, 13824, 5120): 529772320 / 40,   # 14B 720p ffn.0
    (75600, 5120, 13824): 540049851 / 40,   # 14B 720p ffn.2
    (75600, 5120, 5120): 216750897 / 40,    # 14B 720p self_attn.q
    (32760, 13824, 5120): 241353392 / 40,   # 14B 480p ffn.0
    (32760, 5120, 13824): 233363871 / 40,   # 14B 480p ffn.2
    (32760, 5120, 5120): 88773549 / 40,     # 14B 480p self_attn.q
    (75600, 8960, 1536): 87943434 / 30,     # 1.3B 720p ffn.0
    (75600, 1536, 8960): 80257524 / 30,     # 1.3B 720p ffn.2
    (75600, 1536, 1536): 15359471 / 30,     # 1.3B 720p self_attn.q
}


def events(fn) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    dev = torch.device("cuda")
    filler = torch.zeros(256 * 2**20, device=dev, dtype=torch.bfloat16)  # 512 MiB: memory-bound, ~0.2 ms
    for _ in range(5):
        filler.add_(1)
    fill_ns = statistics.median(events(lambda: filler.add_(1)) for _ in range(9))
    rows = []
    for (m, n, k), model_ns in IN_MODEL.items():
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        ws = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) / math.sqrt(k) for _ in range(2)]
        bias = torch.randn(n, device=dev, dtype=torch.bfloat16)

        def gemm(x=x, w=ws[0], bias=bias):
            return F.linear(x, w, bias)

        for _ in range(3):
            gemm()
        torch.cuda.synchronize()
        row = {"m": m, "n": n, "k": k, "in_model_ns": round(model_ns)}
        row["back_to_back_ns"] = statistics.median(events(lambda: [gemm() for _ in range(3)]) / 3 for _ in range(3))
        idle = []
        for _ in range(5):
            torch.cuda.synchronize()
            time.sleep(0.05)
            idle.append(events(gemm))
        row["spaced_idle_ns"] = statistics.median(idle)
        for duty in (0.5, 1.0, 2.0):
            calls = max(1, round(duty * row["back_to_back_ns"] / fill_ns))
            samples = []
            for _ in range(5):
                for _ in range(calls):
                    filler.add_(1)
                samples.append(events(gemm))
            row[f"filler_{duty}_ns"] = statistics.median(samples)
        flops = 2 * m * n * k
        print(f"{m}x{n}x{k}: in-model {flops / model_ns / 1e3:.0f} TFLOP/s; " + ", ".join(
            f"{key[:-3]} {flops / v / 1e3:.0f} ({v / model_ns:.3f})" for key, v in row.items()
            if key.endswith("_ns") and key != "in_model_ns"), flush=True)
        rows.append(row)
        del x, ws, bias
        torch.cuda.empty_cache()
    doc = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "date": time.strftime("%Y-%m-%d"), "filler_ns": fill_ns, "rows": rows}
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=1)


if __name__ == "__main__":
    main()
