"""Hardware profiles: one JSON file per GPU in hardware/ (the one place for hardware figures). Spec figures each
carry their source; `calibrated` holds the tables `wantrace calibrate` measured on the GPU itself, or is null
for a spec-only profile. docs/time-model.md documents the format."""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

HARDWARE = Path(importlib.import_module("wantrace.hardware").__file__ or "").resolve().parent
PROFILE_SCHEMA = 1
SPEC_FIELDS = ("tensor_flops", "fp32_flops", "memory_bandwidth", "memory_bytes", "l2_bytes", "sms",
               "nvlink_bandwidth", "pcie_bandwidth")
# what the predictor reads from a calibration; calibrate writes all of them
CALIBRATED_FIELDS = ("device", "torch", "date", "overhead_ns", "gemm", "sdpa", "memory", "efficiency")
KERNEL_CLASSES = ("elementwise", "cast", "copy", "reduction", "norm", "activation")
OVERHEAD_CLASSES = ("gemm", "sdpa", *KERNEL_CLASSES, "view", "module")


class ProfileError(ValueError):
    """A hardware profile that cannot be used (unknown name, unreadable, malformed); one line."""


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    doc: dict

    @property
    def spec(self) -> dict:
        return self.doc["spec"]

    @property
    def calibrated(self) -> dict | None:
        return self.doc.get("calibrated")

    def figure(self, field: str, key: str | None = None) -> float:
        entry = self.spec[field] if key is None else self.spec[field].get(key)
        if entry is None:
            raise ProfileError(f"profile {self.name}: no spec figure {field}.{key}")
        return float(entry["value"])

    def describe(self) -> dict:
        """What a report records of the profile it was timed on."""
        cal = self.calibrated
        return {
            "profile": self.name,
            "gpu": self.doc["gpu"],
            "calibrated": cal is not None,
            "calibration": {k: cal[k] for k in ("device", "torch", "cuda", "driver", "date", "seconds") if k in cal}
            if cal else None,
        }


def available() -> list[str]:
    return sorted(p.stem for p in HARDWARE.glob("*.json"))


def load_profile(name_or_path: str | Path) -> Profile:
    """A profile by name (hardware/NAME.json) or by path to a JSON file."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith(".json") or path.exists()):
        path = HARDWARE / f"{text.lower()}.json"
        if not path.exists():
            raise ProfileError(f"--gpu {text}: unknown GPU profile; known: {', '.join(available())} "
                               "(or give a path to a profile JSON)")
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"--gpu {text}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"--gpu {text}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(f"--gpu {text}: not JSON ({exc.msg} at line {exc.lineno})") from None
    check(doc, str(path))
    return Profile(doc["name"], path, doc)


def check(doc, where: str) -> None:
    """Every field the predictor reads is there and of the right kind; else one line naming the field."""
    def need(cond: bool, field: str, what: str) -> None:
        if not cond:
            raise ProfileError(f"profile {where}: {field}: {what}")

    need(isinstance(doc, dict), "(top level)", "must be a JSON object")
    need(doc.get("schema_version") == PROFILE_SCHEMA, "schema_version", f"must be {PROFILE_SCHEMA}")
    for key in ("name", "gpu"):
        need(isinstance(doc.get(key), str) and bool(doc.get(key)), key, "missing or not a string")
    spec = doc.get("spec")
    need(isinstance(spec, dict), "spec", "missing or not an object")
    for field in SPEC_FIELDS:
        need(field in spec, f"spec.{field}", "missing")
        entries: list[tuple[str | None, dict]] = (list(spec[field].items()) if field == "tensor_flops"
                                                    else [(None, spec[field])])
        for dtype, entry in entries:
            label = f"spec.{field}" + (f".{dtype}" if dtype else "")
            need(isinstance(entry, dict), label, "must be an object with value and source")
            value = entry.get("value")
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                 and value >= 0, f"{label}.value", "missing or not a non-negative number")
            need(isinstance(entry.get("source"), str) and bool(entry["source"]), f"{label}.source", "missing")
    need("bfloat16" in spec["tensor_flops"], "spec.tensor_flops.bfloat16", "missing")
    need("calibrated" in doc, "calibrated", "missing (null for a spec-only profile)")
    section = doc.get("collectives")  # optional: wantrace calibrate --collectives
    if section is not None:
        need(isinstance(section, dict) and isinstance(section.get("ops"), dict), "collectives.ops",
             "must be an object of op -> [[bytes sent, ns], ...]")
        for op, points in section["ops"].items():
            need(isinstance(points, list) and len(points) > 0 and all(
                isinstance(p, list) and len(p) == 2 and all(_number(v) and v > 0 for v in p) for p in points),
                f"collectives.ops.{op}", "must be a non-empty list of [bytes > 0, ns > 0]")
    cal = doc["calibrated"]
    if cal is None:
        return
    need(isinstance(cal, dict), "calibrated", "must be an object or null")
    for field in CALIBRATED_FIELDS:
        need(field in cal, f"calibrated.{field}", "missing")
    for c in OVERHEAD_CLASSES:
        need(_number(cal["overhead_ns"].get(c)), f"calibrated.overhead_ns.{c}", "missing or not a number")
    for table in ("gemm", "sdpa", "memory", *(("conv",) if "conv" in cal else ())):  # conv: since 2026-12
        need(isinstance(cal[table], dict), f"calibrated.{table}", "must be an object")
        for dtype, series in cal[table].items():
            need(isinstance(series, dict), f"calibrated.{table}.{dtype}", "must be an object of series")
            for key, points in series.items():
                label = f"calibrated.{table}.{dtype}.{key}"
                need(isinstance(points, list) and len(points) > 0, label, "must be a non-empty list of [size, ns]")
                for point in points:
                    need(isinstance(point, list) and len(point) == 2 and all(_number(v) and v > 0 for v in point),
                         label, f"bad point {point!r}: want [size > 0, ns > 0]")
    for c in KERNEL_CLASSES:
        need(c in cal["memory"].get("float32", {}) or any(c in s for s in cal["memory"].values()),
             f"calibrated.memory.*.{c}", "no series for this kernel class")
    eff = cal["efficiency"]
    for key in ("tensor", "bandwidth", "attention", *(("conv",) if "conv" in eff else ())):
        need(_number(eff.get(key)) and 0 < eff[key] <= 1.5, f"calibrated.efficiency.{key}", "missing or out of range")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def profile_for(device_name: str) -> Profile | None:
    """The profile in hardware/ whose `match` names this device (torch.cuda.get_device_name()), if any."""
    for name in available():
        doc = json.loads((HARDWARE / f"{name}.json").read_text())
        if any(m in device_name for m in doc.get("match", [])):
            return load_profile(name)
    return None
