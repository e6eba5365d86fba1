"""Predicted vs measured time of verify.json files: one line per run, then each gated category.

    python scripts/time_table.py docs/verification/*.json"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(paths: list[str]) -> None:
    for path in paths:
        doc = json.loads(Path(path).read_text())
        t = doc.get("time")
        if not t:
            print(f"{path}: no time section")
            continue
        f, k = t["forward"], t["kernels"]
        name = Path(path).parent.name or path
        print(f"{name}: forward {f['predicted_ns'] / 1e6:.1f} / {f['measured_ns'] / 1e6:.1f} ms = {f['ratio']}; "
              f"kernels {k['predicted_ns'] / 1e6:.1f} / {k['measured_ns'] / 1e6:.1f} ms = {k['ratio']}; "
              f"{'PASS' if t['pass'] else 'FAIL'}")
        for c in t["categories"]:
            if c["measured_share"] >= 0.01:
                flag = "" if c["pass"] else "  <-- off"
                p, m = c["predicted_kernel_ns"] / 1e6, c["measured_kernel_ns"] / 1e6
                print(f"    {c['category']:24s} {p:9.2f} / {m:9.2f} ms = {c['ratio']}  "
                      f"({100 * c['measured_share']:.1f}%){flag}")


if __name__ == "__main__":
    main(sys.argv[1:])
