"""How long each node of a forward takes on a hardware profile, as eager PyTorch runs it (docs/time-model.md).

Each costed node is one kernel of a class (GEMM, attention, or a memory-bound class by rule family). Its GPU
time comes from the profile's calibrated curves: for a GEMM the curve of its weight shape (N x K) over FLOPs,
for attention the curve of its head dim, key length and heads, for the rest the curve of its class and dtype
over bytes moved; where no curve fits, a roofline with the efficiencies the calibration fitted. The CPU issues
every op (a kernel, a view, a module call) with a calibrated overhead, and the GPU runs one kernel at a time
in issue order: a one-stream queue, simulated node by node. A node's time is how far it moves the end of the
GPU's work, so the times of a forward's nodes add up to the forward, in integer nanoseconds; a node the CPU
had to wait for carries the wait (launch-bound work shows up where it happens)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..rules import Gemm
from ..work.trace import NodeCost
from .profile import HARDWARE, KERNEL_CLASSES, Profile, ProfileError, load_profile
from .series import Series

FAMILY_CLASS = {"matmul": "gemm", "conv": "gemm", "attention": "sdpa", "cast": "cast", "memory": "copy",
                "view": "copy", "reduction": "reduction", "norm": "norm", "activation": "activation",
                "elementwise": "elementwise"}
AS_CONTIGUOUS = {"mixed-strided": "mixed-dense"}  # the layout a strided one was timed as before it had curves
ASSUMPTIONS = ("eager PyTorch: every costed op is its own kernel (no fusion); one CUDA stream, kernels in issue "
               "order (no overlap); the CPU issues each op, view and module call with a calibrated overhead")


def kernel_class(r: NodeCost) -> str:
    return FAMILY_CLASS.get(r.family, "copy")


def dtype_name(r: NodeCost) -> str:
    return str(r.in_dtype).removeprefix("torch.") if r.in_dtype is not None else "float32"


def gemm_key(g: Gemm) -> str:
    return f"{g.n}x{g.k * g.taps}"


def conv_key(name: str, g: Gemm) -> str:
    """A convolution's curve: its op and implicit GEMM (C_out x C_in x taps, per group), e.g. conv3d/96x96x27."""
    return f"{name}/{g.n}x{g.k}x{g.taps}" + (f"/g{g.count}" if g.count > 1 else "")


def sdpa_key(d: int, sq: int, sk: int, heads: int) -> str:
    return f"d{d}/{'self' if sq == sk else f'sk{sk}'}/h{heads}"


@dataclass
class Estimate:
    ns: list[int]
    kernel_ns: list[int]
    info: dict = field(default_factory=dict)


class Predictor:
    """A profile's time model; call it on one forward's records (execution order)."""

    def __init__(self, profile: Profile | str):
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        cal = self.profile.calibrated
        self.reference: Profile | None = None
        if cal is None:
            ref = self.profile.doc.get("assume_from")
            if not ref:
                raise ProfileError(f"profile {self.profile.name}: uncalibrated and names no assume_from profile")
            self.reference = load_profile(HARDWARE / f"{ref}.json")
            cal = self.reference.calibrated
            if cal is None:
                raise ProfileError(f"profile {self.profile.name}: assume_from {ref} is not calibrated")
        self.cal = cal
        self.calibrated = self.reference is None
        self.overhead = {k: int(round(v)) for k, v in cal["overhead_ns"].items() if k != "python"}
        self.python = int(round(cal["overhead_ns"].get("python", 0)))
        self.eff = cal["efficiency"]
        # curves are the measured GPU's own: only a calibrated profile uses them
        self.gemm = self._curves("gemm") if self.calibrated else {}
        self.sdpa = self._curves("sdpa") if self.calibrated else {}
        self.conv = self._curves("conv") if self.calibrated and "conv" in cal else {}
        self.memory = self._curves("memory") if self.calibrated else {}
        # the shortest kernel of each class, carried to a spec-only profile as its floor
        self.floor = {c: min(p[1] for dt in cal["memory"].values() for p in dt.get(c, [[0, math.inf]]))
                      for c in KERNEL_CLASSES}
        self.floor["gemm"] = min(p[1] for dt in cal["gemm"].values() for s in dt.values() for p in s)
        self.floor["sdpa"] = min(p[1] for dt in cal["sdpa"].values() for s in dt.values() for p in s)
        self._cache: dict[tuple, int] = {}

    def _curves(self, table: str) -> dict[str, dict[str, Series]]:
        return {dt: {key: Series(points) for key, points in series.items()} for dt, series in self.cal[table].items()}

    # --- the GPU time of one kernel --------------------------------------------------------------------------

    def kernel_ns(self, r: NodeCost) -> int:
        if r.kind != "costed":
            return 0
        key = (r.family, r.name, r.in_dtype, r.layout, r.cost.gemms, r.cost.bytes_read, r.cost.bytes_written,
               r.cost.flops_full)
        if key not in self._cache:
            self._cache[key] = max(1, int(round(self._kernel(r))))
        return self._cache[key]

    def _kernel(self, r: NodeCost) -> float:
        cls, dtype = kernel_class(r), dtype_name(r)
        if r.family == "conv" and len(r.cost.gemms) == 1:
            conv = self._conv(r.name, r.cost.gemms[0], dtype)
            if conv is not None:
                return conv
        if cls == "gemm" and r.cost.gemms:
            return sum(self._gemm(g, dtype, r) for g in r.cost.gemms)
        if cls == "sdpa" and r.cost.gemms:
            return self._sdpa(r.cost.gemms, dtype)
        if r.family == "communication":
            return self._collective(r)
        return self._memory(cls, dtype, r.cost.bytes, r.layout)

    def _gemm(self, g: Gemm, dtype: str, r: NodeCost) -> float:
        curve = self.gemm.get(dtype, {}).get(gemm_key(g))
        if curve is not None:
            return curve(g.flops)
        moved = r.cost.bytes if len(r.cost.gemms) == 1 else 0
        return self._roofline(g.flops, moved, dtype, "tensor", "gemm")

    def _conv(self, name: str, g: Gemm, dtype: str) -> float | None:
        """A convolution's own curve; else, in fp32, the TF32 roofline at the efficiency convs reached (cuDNN runs
        fp32 convs on TF32 tensor cores, torch's default `cudnn.allow_tf32`); else None (timed as its GEMM)."""
        curve = self.conv.get(dtype, {}).get(conv_key(name, g))
        if curve is not None:
            return curve(g.flops)
        if dtype == "float32" and "conv" in self.eff and "tfloat32" in self.profile.spec["tensor_flops"]:
            return max(self.floor["gemm"], g.flops / (self.profile.figure("tensor_flops", "tfloat32")
                                                      * self.eff["conv"] / 1e9))
        return None

    def _sdpa(self, gemms: tuple[Gemm, ...], dtype: str) -> float:
        qk = gemms[0]
        flops = sum(g.flops for g in gemms)
        curves = self.sdpa.get(dtype, {})
        prefix = sdpa_key(qk.k, qk.m, qk.n, 0).rsplit("/h", 1)[0] + "/h"
        candidates = [(abs(math.log(int(k[len(prefix):]) / qk.count)), k) for k in curves if k.startswith(prefix)]
        if candidates:
            return curves[min(candidates)[1]](flops)
        return self._roofline(flops, 0, dtype, "attention", "sdpa")

    def _collective(self, r: NodeCost) -> float:
        """A collective on this GPU's link: the calibrated curve of its op over the bytes a rank sends
        (`wantrace calibrate --collectives`), else the spec's one-direction link bandwidth (NVLink, or PCIe for a
        GPU without NVLink), uncalibrated."""
        moved = max(r.cost.comm_sent, r.cost.comm_received, 1)
        curve = collective_curves(self.profile).get(r.name)
        if curve is not None:
            return curve(moved)
        return moved / link_bandwidth(self.profile)[0]

    def _memory(self, cls: str, dtype: str, moved: int, layout: str = "") -> float:
        curves = self.memory.get(dtype, {})
        curve = None
        for key in (layout, AS_CONTIGUOUS.get(layout, "")):  # a profile without strided curves reads contiguous ones
            if key and curve is None:
                curve = curves.get(f"{cls}/{key}")
        if curve is None:
            curve = curves.get(cls)
        if curve is None:  # the class measured in another dtype: bytes are bytes
            curve = next((s[cls] for s in self.memory.values() if cls in s), None)
        if curve is not None:
            return curve(max(moved, 1))
        bandwidth = self.profile.figure("memory_bandwidth") * self.eff["bandwidth"] / 1e9  # bytes per ns
        return max(self.floor.get(cls, 0.0), moved / bandwidth)

    def _roofline(self, flops: int, moved: int, dtype: str, efficiency: str, cls: str) -> float:
        peak = self._peak(dtype) * self.eff[efficiency if dtype in ("bfloat16", "float16") else "tensor"] / 1e9
        bandwidth = self.profile.figure("memory_bandwidth") * self.eff["bandwidth"] / 1e9
        return max(self.floor.get(cls, 0.0), flops / peak, moved / bandwidth)

    def _peak(self, dtype: str) -> float:
        tensor = self.profile.spec["tensor_flops"]
        if dtype in tensor:
            return self.profile.figure("tensor_flops", dtype)
        if dtype == "float64" and "fp64_flops" in self.profile.spec:
            return self.profile.figure("fp64_flops")
        return self.profile.figure("fp32_flops")  # torch's default fp32 matmul runs on CUDA cores, not TF32

    # --- the CPU side and the queue ---------------------------------------------------------------------------

    def overhead_ns(self, r: NodeCost) -> int:
        """CPU time to issue the node: its op's dispatch, plus the model's own Python around every node."""
        if r.kind == "costed":
            return self.overhead[kernel_class(r)] + self.python
        if r.kind == "metadata":
            return self.python + (0 if r.name.startswith("python ") else self.overhead["view"])
        return 0

    def __call__(self, records: list[NodeCost], weights: list[int] | None = None) -> Estimate:
        """Each record's share of the forward's wall time and its kernel time, in order. `weights` (a sweep's
        replication weights: block 1 of a 2-block trace counted N-1 times) runs each run of records of equal
        weight w > 1 w times over, as that many identical blocks one after another; a record's times are then
        its totals over the repeats."""
        n = len(records)
        ns = [0] * n
        kernel = [0] * n
        clock = {"cpu": 0, "gpu": 0}
        last_kernel = None
        stacks: dict[tuple[str, ...], set[str]] = {}
        kernels: dict[tuple, int] = {}  # this call's records stay alive: a Cost's id is its identity here

        def issue(i: int, previous: set[str]) -> set[str]:
            nonlocal last_kernel
            r = records[i]
            current = stacks.get(r.stack)
            if current is None:
                current = stacks[r.stack] = set(r.stack)
            entered = 0 if current is previous else sum(1 for key in current - previous if "#scope" not in key)
            clock["cpu"] += entered * self.overhead["module"] + self.overhead_ns(r)
            if r.kind == "costed":
                key = (id(r.cost), r.family, r.name, r.in_dtype, r.layout)
                k = kernels.get(key)
                if k is None:
                    k = kernels[key] = self.kernel_ns(r)
                end = max(clock["gpu"], clock["cpu"]) + k
                ns[i] += end - clock["gpu"]
                kernel[i] += k
                clock["gpu"] = end
                last_kernel = i
            return current

        previous: set[str] = set()
        i = 0
        while i < n:
            w = weights[i] if weights is not None else 1
            if w == 1:
                previous = issue(i, previous)
                i += 1
                continue
            j = i
            while j < n and weights is not None and weights[j] == w:
                j += 1
            before = set(records[i - 1].stack) if i else set()
            for _ in range(w):  # each repeat is a new block: its modules are entered afresh
                previous = before
                for k in range(i, j):
                    previous = issue(k, previous)
            i = j
        if clock["cpu"] > clock["gpu"] and last_kernel is not None:  # the forward returns after the CPU's last op
            ns[last_kernel] += clock["cpu"] - clock["gpu"]
        info = self.describe()
        if any(r.family == "communication" for r in records):
            info["collectives"] = self.describe_collectives()
        return Estimate(ns, kernel, info)

    def describe_collectives(self) -> str:
        if collective_curves(self.profile):
            return (f"measured on {self.profile.name} (calibrate --collectives); ops without a curve: the spec "
                    "link bandwidth")
        return (f"uncalibrated: bytes sent / the spec's {link_bandwidth(self.profile)[1]} bandwidth in one direction "
                "(half the bidirectional figure), no latency, no overlap with compute")

    def describe(self) -> dict:
        info = self.profile.describe()
        info["model"] = ASSUMPTIONS
        if self.reference is not None:
            info["uncalibrated"] = (f"spec figures of {self.profile.name} with the efficiencies, overheads and "
                                    f"kernel floors calibrated on {self.reference.name}")
        return info


def link_bandwidth(profile: Profile) -> tuple[float, str]:
    """Bytes per ns one GPU sends in one direction by the spec: NVLink, or PCIe without NVLink."""
    nvlink = profile.figure("nvlink_bandwidth")
    if nvlink > 0:
        return nvlink / 2 / 1e9, "NVLink"
    return profile.figure("pcie_bandwidth") / 1e9, "PCIe"


def collective_curves(profile: Profile) -> dict[str, Series]:
    """The profile's optional `collectives` section: op -> time over bytes a rank sends."""
    section = profile.doc.get("collectives") or {}
    return {op: Series(points) for op, points in section.get("ops", {}).items()}
