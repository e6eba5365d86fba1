"""wantrace calibrate: measure the curves the time predictor reads, on the GPU itself (docs/time-model.md).

- GEMM: for every weight shape (N x K) the shipped configs have, over a grid of M that includes every M the
  presets produce, in bf16 (and fp32 on a smaller grid), timed as replays of a captured CUDA graph, with the
  weights rotated among copies that together exceed L2 (the model reads each weight from DRAM once).
- Attention: scaled_dot_product_attention (torch's default backend choice) over query length, for
  self-attention (Sq = Sk) and cross-attention onto text and image tokens, at the head counts of the configs.
- Convolutions: every distinct conv of the Wan VAE's chunked encode and decode at the presets' video sizes
  (the VAE runs in fp32, and cuDNN runs fp32 convs on TF32 tensor cores by torch's default, not as the fp32
  GEMM curves would say), each timed as the exact call.
- Memory-bound kernels by class (elementwise, cast, copy, reduction, norm, activation) and dtype, over bytes.
- CPU overhead per op class: the wall time to issue a tiny op, a view, a module call.
Each measurement is warmed up first; GPU times are medians over replays, a GEMM's each after memory-bound work
as long as itself (`gpu_ns`)."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import math
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F

from ..timing.predictor import conv_key, sdpa_key
from ..timing.profile import HARDWARE, PROFILE_SCHEMA, check
from ..work.workload import PRESETS
from .device import VerifyError, check_device, device_info

MODELS = Path(__file__).resolve().parents[2] / "models"  # the shipped configs, in a checkout
M_GRID = (1, 16, 64, 256, 1024, 4096, 16384, 65536)
FP32_M_MAX = 16384  # fp32 GEMMs run on CUDA cores: past this the curve's throughput is flat and extrapolates
L_GRID = (256, 1024, 4096, 8192, 16384, 32768, 65536)
SIZES = tuple(4 ** k for k in range(5, 16))  # elements per tensor: 1 Ki .. 1 Gi
ROW = 5120  # the width of the reductions and norms (the 14B's dim; the 1.3B's 1536 runs at the same speed per byte)


@dataclasses.dataclass(frozen=True)
class Shapes:
    """What the shipped configs run at the presets: GEMMs by dtype as (n, k) -> {m}, attention as
    (d, sq, sk, heads)."""

    gemm: dict[tuple[int, int], set[int]]
    sdpa: set[tuple[int, int, int, int]]


def model_shapes(configs: Iterable[Path]) -> Shapes:
    """Trace each distinct config (two blocks) once and re-run it on every preset of its task."""
    from wan_reference import get_policy
    from wan_reference.config import read_config

    from ..work.trace import cost_graph, trace_graph
    from ..work.workload import resolve

    gemm: dict[tuple[int, int], set[int]] = {}
    sdpa: set[tuple[int, int, int, int]] = set()
    seen = set()
    policy = get_policy("bf16")
    for path in configs:
        config, _ = read_config(path)
        config = config.with_layers(min(config.num_layers, 2))
        if config in seen:
            continue
        seen.add(config)
        graph = trace_graph(config, policy)
        for name, preset in PRESETS.items():
            if config.model_type not in preset.tasks or preset.release not in (None, config.release):
                continue
            wl, geo = resolve(name, config)
            for r in cost_graph(graph, config, policy, geo.latent, wl.batch).records:
                if r.kind != "costed" or not r.cost.gemms:
                    continue
                if r.family == "attention":
                    qk = r.cost.gemms[0]
                    sdpa.add((qk.k, qk.m, qk.n, qk.count))
                elif r.family == "matmul":
                    for g in r.cost.gemms:
                        gemm.setdefault((g.n, g.k * g.taps), set()).add(g.m * g.count)
    return Shapes(gemm, sdpa)


# --- timing ----------------------------------------------------------------------------------------------------

def gpu_ns(fn: Callable[[], object], reps: int, samples: int = 3, lead: bool = False) -> float:
    """GPU time of one call of `fn`: the median of `samples` replays of a CUDA graph of `reps` calls (launch gaps
    as in a full queue; plain launches timed with events where capture fails).

    `lead` puts memory-bound work as long as the replay in front of every sample, as the model puts norms and
    modulation between its GEMMs. Replayed back to back, a long dense GEMM holds the GPU at its power limit
    and its clock drops: on the H200 the 14B's 720p FFN GEMM ran at 696 TFLOP/s so, at 812 with a lead, and
    at 808 in the model (scripts/device_gemm_modes.py, docs/verification/gemm-modes.json)."""
    fn()
    torch.cuda.synchronize()
    try:
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            fn()
            with torch.cuda.graph(graph, stream=stream):
                for _ in range(reps):
                    fn()
        torch.cuda.current_stream().wait_stream(stream)
        run = graph.replay
    except RuntimeError:
        def run():
            for _ in range(reps):
                fn()
    run()
    times: list[float] = []
    for _ in range(samples):
        if lead and times:
            _Filler.get().run(times[-1] * reps)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e6 / reps)
    if lead:  # the first sample, which had no lead, only sized the others
        times = times[1:]
    return statistics.median(times)


class _Filler:
    """A memory-bound kernel (an in-place add over 512 MiB, ~0.2 ms on an H200) launched as often as it takes
    to keep the GPU busy, at low power, for a given time."""

    _instance: _Filler | None = None

    def __init__(self) -> None:
        self.buffer = torch.zeros(256 * 2**20, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            self.buffer.add_(1)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(5):
            self.buffer.add_(1)
        end.record()
        end.synchronize()
        self.ns = start.elapsed_time(end) * 1e6 / 5

    @classmethod
    def get(cls) -> _Filler:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def run(self, ns: float) -> None:
        for _ in range(max(1, round(ns / self.ns))):
            self.buffer.add_(1)


def reps_for(estimate_ns: float) -> int:
    """Enough calls per replay to fill ~2 ms (the graph's own launch then costs under 1%), at most 200."""
    return max(1, min(200, math.ceil(2e6 / max(estimate_ns, 1.0))))


def cpu_ns(fn: Callable[[], object], calls: int = 2000) -> float:
    """Wall time per call of issuing `fn` back to back (best of 3)."""
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / calls * 1e9)
    return best


# --- the benchmarks --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Job:
    table: str  # gemm, sdpa, memory, overhead
    dtype: str
    key: str
    run: Callable[[], tuple[int, float]]  # -> (size: FLOPs or bytes moved, GPU or CPU nanoseconds)
    label: str


def gemm_jobs(shapes: Shapes, l2_bytes: int) -> list[Job]:
    jobs = []
    for dtype, m_max in ((torch.bfloat16, None), (torch.float32, FP32_M_MAX)):
        name = str(dtype).removeprefix("torch.")
        for (n, k), ms in sorted(shapes.gemm.items()):
            grid = sorted(set(M_GRID) | ms)
            if m_max is not None:
                grid = [m for m in grid if m <= m_max]
            for m in grid:
                jobs.append(Job("gemm", name, f"{n}x{k}", _gemm(m, n, k, dtype, l2_bytes),
                                f"GEMM {name} {m}x{n}x{k}"))
    return jobs


def _gemm(m: int, n: int, k: int, dtype: torch.dtype, l2_bytes: int) -> Callable[[], tuple[int, float]]:
    def run() -> tuple[int, float]:
        x = torch.randn(m, k, device="cuda", dtype=dtype)
        weight_bytes = n * k * x.element_size()
        copies = max(1, min(8, math.ceil(3 * l2_bytes / weight_bytes)))
        ws = [torch.randn(n, k, device="cuda", dtype=dtype) / math.sqrt(k) for _ in range(copies)]
        bias = torch.randn(n, device="cuda", dtype=dtype)
        state = {"i": 0}

        def call():
            state["i"] = (state["i"] + 1) % copies
            return F.linear(x, ws[state["i"]], bias)

        estimate = 2 * m * n * k / 400e3  # ns at 400 TFLOP/s, only to size the replays
        # one graph of `copies` distinct calls, so each replay reads every weight copy
        reps = copies * max(1, reps_for(estimate) // copies)
        return 2 * m * n * k, gpu_ns(call, reps, samples=4, lead=True)
    return run


def sdpa_jobs(shapes: Shapes) -> list[Job]:
    jobs = []
    cross = sorted({sk for _, sq, sk, _ in shapes.sdpa if sq != sk})
    lengths = {sq for _, sq, _, _ in shapes.sdpa}
    pairs = sorted({(d, h) for d, _, _, h in shapes.sdpa})
    for d, h in pairs:
        for batch in (1, 2):  # batch 2 runs the kernel less efficiently per FLOP than twice the heads would say
            for sq in sorted(set(L_GRID) | lengths):
                for sk in [sq, *cross]:
                    jobs.append(Job("sdpa", "bfloat16", sdpa_key(d, sq, sk, batch * h), _sdpa(batch, h, sq, sk, d),
                                    f"SDPA {batch}x{h} heads {sq}x{sk} d{d}"))
    return jobs


def _sdpa(b: int, h: int, sq: int, sk: int, d: int) -> Callable[[], tuple[int, float]]:
    def run() -> tuple[int, float]:
        q = torch.randn(b, h, sq, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(b, h, sk, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(b, h, sk, d, device="cuda", dtype=torch.bfloat16)
        flops = 4 * b * h * sq * sk * d
        return flops, gpu_ns(lambda: F.scaled_dot_product_attention(q, k, v), reps_for(flops / 300e3))
    return run


def vae_convs() -> list:
    """The distinct convolutions of the shipped Wan VAE (its published config) encoding and decoding a video of
    each preset's size, as OpCalls."""
    from wan_reference.precision import WAN_OFFICIAL
    from wan_reference.vae_config import VAEConfig

    from ..work.vae import conv_calls, distinct

    sizes = sorted({(p.frames, p.height, p.width) for p in PRESETS.values()})
    return distinct(call for frames, height, width in sizes for direction in ("encode", "decode")
                    for call in conv_calls(VAEConfig(), WAN_OFFICIAL, frames, height, width, direction))


def conv_jobs(calls: list) -> list[Job]:
    from .. import rules

    jobs = []
    for call in calls:
        (gemm,) = rules.lookup("call_function", getattr(F, call.name))(call).gemms
        dtype = str(call.arg(0, "input").dtype).removeprefix("torch.")
        x, w = call.arg(0, "input"), call.arg(1, "weight")
        jobs.append(Job("conv", dtype, conv_key(call.name, gemm), _conv(call, gemm.flops),
                        f"{call.name} {dtype} {'x'.join(map(str, x.shape))} * {'x'.join(map(str, w.shape))}"))
    return jobs


def _conv(call, flops: int) -> Callable[[], tuple[int, float]]:
    def run() -> tuple[int, float]:
        x, w, b = (call.arg(i, name) for i, name in enumerate(("input", "weight", "bias")))
        dtype = x.dtype
        args = [torch.randn(x.shape, device="cuda", dtype=dtype),
                torch.randn(w.shape, device="cuda", dtype=dtype) / math.sqrt(math.prod(w.shape[1:])),
                torch.randn(b.shape, device="cuda", dtype=dtype) if b is not None else None,
                *call.args[3:]]
        op = getattr(F, call.name)
        return flops, gpu_ns(lambda: op(*args, **call.kwargs), reps_for(flops / 100e3), samples=3)
    return run


def _memory_ops() -> dict[str, list[tuple[torch.dtype, Callable[[int, torch.dtype], Callable[[], object]]]]]:
    """Per class (and operand layout, see wantrace.work.trace.layout_of), (input dtype, builder of a call on
    tensors of about n elements) as the model runs them."""
    def binary(n, dt):
        a, b = torch.randn(n, device="cuda", dtype=dt), torch.randn(n, device="cuda", dtype=dt)
        return lambda: a + b

    def complex_mul(n, dt):
        a = torch.randn(n // 2, device="cuda", dtype=dt)
        b = torch.randn(n // 2, device="cuda", dtype=dt)
        return lambda: a * b

    def cast_to(target):
        def build(n, dt):
            a = torch.randn(n, device="cuda", dtype=dt)
            return lambda: a.to(target)
        return build

    def concat(n, dt):
        a, b = torch.randn(n // 2, device="cuda", dtype=dt), torch.randn(n // 2, device="cuda", dtype=dt)
        return lambda: torch.cat([a, b])

    def rows(n):
        return max(1, n // ROW)

    def mean(n, dt):
        a = torch.randn(rows(n), ROW, device="cuda", dtype=dt)
        return lambda: a.mean(dim=-1, keepdim=True)

    def layer_norm(n, dt):
        a = torch.randn(rows(n), ROW, device="cuda", dtype=dt)
        return lambda: F.layer_norm(a, (ROW,), eps=1e-6)

    def row_vector(other):  # x [rows, C] * v [1, C]: modulation, gates, norm weights
        def build(n, dt):
            a = torch.randn(rows(n), ROW, device="cuda", dtype=dt)
            v = torch.randn(1, ROW, device="cuda", dtype=other or dt)
            return lambda: a * v
        return build

    def column(n, dt):  # x [rows, C] * r [rows, 1]: RMSNorm's scale by rsqrt(mean)
        a = torch.randn(rows(n), ROW, device="cuda", dtype=dt)
        r = torch.randn(rows(n), 1, device="cuda", dtype=dt)
        return lambda: a * r

    def mixed(n, dt):  # bf16 [n] * fp32 [n] -> fp32
        a, b = torch.randn(n, device="cuda", dtype=dt), torch.randn(n, device="cuda", dtype=torch.float32)
        return lambda: a * b

    def rope(n, dt):  # x [L, heads, 64] * freqs [L, 1, 64], complex: RoPE
        length = max(1, n // 2 // (40 * 64))
        a = torch.randn(length, 40, 64, device="cuda", dtype=dt)
        f = torch.randn(length, 1, 64, device="cuda", dtype=dt)
        return lambda: a * f

    def strided(other):  # x [rows, C] * e[:, k] of e [rows, 6, C]: Wan2.2's per-token modulation and gates
        def build(n, dt):
            a = torch.randn(rows(n), ROW, device="cuda", dtype=dt)
            e = torch.randn(rows(n), 6, ROW, device="cuda", dtype=other or dt)[:, 2]  # a view: 1/6 of it is read
            return lambda: a * e
        return build

    def gelu(n, dt):
        a = torch.randn(n, device="cuda", dtype=dt)
        return lambda: F.gelu(a, approximate="tanh")

    return {
        "elementwise": [(torch.bfloat16, binary), (torch.float32, binary), (torch.complex64, complex_mul),
                        (torch.complex128, complex_mul)],
        "elementwise/bcast": [(torch.bfloat16, row_vector(None)), (torch.float32, row_vector(None)),
                              (torch.complex64, rope), (torch.complex128, rope)],
        "elementwise/bcastcol": [(torch.float32, column)],
        "elementwise/mixed-dense": [(torch.bfloat16, mixed)],
        "elementwise/mixed-bcast": [(torch.bfloat16, row_vector(torch.float32))],
        "elementwise/strided": [(torch.float32, strided(None))],
        "elementwise/mixed-strided": [(torch.bfloat16, strided(torch.float32))],
        "cast": [(torch.bfloat16, cast_to(torch.float32)), (torch.float32, cast_to(torch.bfloat16)),
                 (torch.float64, cast_to(torch.float32))],
        "copy": [(torch.bfloat16, concat), (torch.float32, concat)],
        "reduction": [(torch.float32, mean)],
        "norm": [(torch.float32, layer_norm)],
        "activation": [(torch.bfloat16, gelu), (torch.float32, gelu)],
    }


def memory_jobs(max_bytes: int) -> list[Job]:
    jobs = []
    for cls, ops in _memory_ops().items():
        for dtype, build in ops:
            name = str(dtype).removeprefix("torch.")
            for n in SIZES:
                if n * dtype.itemsize * 3 > max_bytes:
                    continue
                jobs.append(Job("memory", name, cls, _memory(build, n, dtype), f"{cls} {name} {n} elements"))
    return jobs


def _memory(build, n: int, dtype: torch.dtype) -> Callable[[], tuple[int, float]]:
    def run() -> tuple[int, float]:
        call = build(n, dtype)
        moved = _bytes_of(call, call())
        return moved, gpu_ns(call, reps_for(moved / 3000.0))  # ~3 TB/s, only to size the replays
    return run


def _bytes_of(call, out: torch.Tensor) -> int:
    """Bytes read and written, as the rule book counts them: the closure's input tensors and the output."""
    inputs = [c.cell_contents for c in (call.__closure__ or ()) if isinstance(c.cell_contents, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in inputs) + out.numel() * out.element_size()


def overhead_jobs() -> list[Job]:
    """CPU time to issue each class of op, on tiny tensors shaped like the model's ([1, tokens, dim])."""
    def build():
        x16 = torch.randn(1, 4, 64, device="cuda", dtype=torch.bfloat16)
        x32 = x16.float()
        w, b = torch.randn(64, 64, device="cuda", dtype=torch.bfloat16), torch.randn(64, device="cuda",
                                                                                        dtype=torch.bfloat16)
        q = torch.randn(1, 2, 4, 64, device="cuda", dtype=torch.bfloat16)
        module = torch.nn.Identity()

        def views():
            y = x16.unflatten(2, (2, 32)).transpose(1, 2)
            return y.flatten(2)

        return {
            "gemm": lambda: F.linear(x16, w, b),
            "sdpa": lambda: F.scaled_dot_product_attention(q, q, q),
            "elementwise": lambda: x32 * x32,
            "cast": lambda: x16.float(),
            "copy": lambda: torch.cat([x16, x16]),
            "reduction": lambda: x32.mean(dim=-1, keepdim=True),
            "norm": lambda: F.layer_norm(x32, (64,), eps=1e-6),
            "activation": lambda: F.gelu(x16, approximate="tanh"),
            "view": views,
            "module": lambda: module(x16),
        }

    calls: dict[str, Callable[[], object]] = {}

    def job(cls: str) -> Callable[[], tuple[int, float]]:
        def run() -> tuple[int, float]:
            if not calls:
                calls.update(build())
            ns = cpu_ns(calls[cls])
            return 1, ns / 3 if cls == "view" else ns  # three views per call
        return run

    classes = ("gemm", "sdpa", "elementwise", "cast", "copy", "reduction", "norm", "activation", "view", "module")
    return [Job("overhead", "", cls, job(cls), f"CPU overhead: {cls}") for cls in classes]


# --- the whole calibration -------------------------------------------------------------------------------------

def spec_base(device_name: str, out: Path) -> dict:
    """The spec part of the profile: the output file's own if it has one, else the profile in hardware/ whose
    `match` names this device."""
    if out.exists():
        try:
            doc = json.loads(out.read_text())
            return {k: doc[k] for k in ("name", "gpu", "match", "spec")}
        except (OSError, ValueError, KeyError, TypeError):
            pass
    for path in sorted(HARDWARE.glob("*.json")):
        doc = json.loads(path.read_text())
        if any(m in device_name for m in doc.get("match", [])):
            return {k: doc[k] for k in ("name", "gpu", "match", "spec")}
    raise VerifyError(f"calibrate: no profile in {HARDWARE} matches {device_name!r} (its `match` list); write its "
                      "spec figures first, or give --out an existing profile")


def driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def fit_efficiency(doc: dict) -> dict:
    """The best throughput each curve reached, over the spec figure: what the roofline fallback scales by."""
    spec = doc["spec"]
    cal = doc["calibrated"]
    bf16_peak = spec["tensor_flops"]["bfloat16"]["value"]
    bandwidth = spec["memory_bandwidth"]["value"]

    def best(table: str, dtype: str) -> float:
        return max((p[0] / p[1] for s in cal[table].get(dtype, {}).values() for p in s), default=0.0)

    # bandwidth: the largest size's, far past L2 (smaller sizes partly run from L2, faster than DRAM)
    copy = max((dt[cls][-1][0] / dt[cls][-1][1] for dt in cal["memory"].values() for cls in ("elementwise", "copy")
                if dt.get(cls)), default=0.0)
    fitted = {"tensor": round(best("gemm", "bfloat16") * 1e9 / bf16_peak, 4),
              "attention": round(best("sdpa", "bfloat16") * 1e9 / bf16_peak, 4),
              "bandwidth": round(copy * 1e9 / bandwidth, 4)}
    if cal.get("conv", {}).get("float32"):  # fp32 convs run on TF32 tensor cores (cuDNN, torch's default)
        fitted["conv"] = round(best("conv", "float32") * 1e9 / spec["tensor_flops"]["tfloat32"]["value"], 4)
    return fitted


def check_cuda(device: str) -> torch.device:
    if device != "cuda":
        raise VerifyError(f"calibrate: --device {device}: calibration times GPU kernels; it needs --device cuda")
    if not torch.cuda.is_available():
        raise VerifyError(f"calibrate: no CUDA GPU on this machine (torch {torch.__version__}); run it on the GPU "
                          "to be profiled")
    return check_device(device)


TINY = "wan2.1-tiny-t2v"  # a model whose forward is all launch overhead: what the Python per node is fitted on


def fit_python(doc: dict, config_path: Path, runs: int = 20) -> float:
    """The model's own Python per graph node (argument handling, scopes, attribute lookups), beyond what the
    per-op microbenchmarks measure: the launch-bound forward of a tiny wan_reference model, less the predicted
    issue time of its ops, over its nodes."""
    from wan_reference import build_model, get_policy, make_inputs
    from wan_reference.config import read_config

    from ..timing.predictor import Predictor
    from ..timing.profile import Profile
    from ..work.trace import trace_model
    from ..work.workload import resolve

    config, _ = read_config(config_path)
    wl, geo = resolve("ci-tiny", config)
    policy = get_policy("bf16")
    model = build_model(config, policy, device="cuda", seed=0)
    inputs = make_inputs(config, geo.latent, policy, device="cuda", seed=1)
    walls = []
    with torch.no_grad():
        for _ in range(runs + 3):
            torch.cuda.synchronize()
            start = time.perf_counter()
            model(**inputs)
            torch.cuda.synchronize()
            walls.append((time.perf_counter() - start) * 1e9)
    wall = min(walls[3:])  # the Python's own cost; a busy host only adds (the H100's median run read 4.95 us/node)
    records = trace_model(config, policy, geo.latent, wl.batch).records
    predictor = Predictor(Profile("fit", Path("fit"), doc))
    issue = sum(predictor.overhead_ns(r) for r in records)
    previous: set[str] = set()
    for r in records:  # module calls, as the predictor counts them
        issue += sum(1 for k in set(r.stack) - previous if "#scope" not in k) * predictor.overhead["module"]
        previous = set(r.stack)
    nodes = sum(1 for r in records if r.kind in ("costed", "metadata"))
    return round(max(0.0, (wall - issue) / nodes), 1)


def add_missing(out: Path, device: str = "cuda", configs: Iterable[Path] | None = None,
                progress=None) -> tuple[dict, list[str]]:
    """The calibrated profile at `out` with the curves it lacks measured on this GPU (kernel classes, layouts or
    shapes added to the calibration since it ran), everything it has kept as measured; the additions are listed
    with their date and software in `calibrated.additions`. Returns the document and the added curves."""
    from ..timing.profile import ProfileError, load_profile

    dev = check_cuda(device)
    try:
        doc = copy.deepcopy(load_profile(out).doc)
    except ProfileError as exc:
        raise VerifyError(f"calibrate --add-missing: {exc}") from None
    cal = doc["calibrated"]
    if cal is None:
        raise VerifyError(f"calibrate --add-missing: {out} is a spec-only profile; calibrate it whole first")
    here, there = torch.cuda.get_device_name(dev), cal["device"]["name"]
    if here != there:
        raise VerifyError(f"calibrate --add-missing: {out} was calibrated on {there}, this GPU is {here}")
    started = time.perf_counter()
    configs = list(configs) if configs is not None else sorted(MODELS.glob("*/config.json"))
    props = torch.cuda.get_device_properties(dev)
    shapes = model_shapes(configs)
    l2 = cal["device"].get("l2_bytes") or int(doc["spec"]["l2_bytes"]["value"])
    jobs = [job for job in gemm_jobs(shapes, l2) + sdpa_jobs(shapes) + conv_jobs(vae_convs())
            + memory_jobs(props.total_memory // 4) if job.key not in cal.get(job.table, {}).get(job.dtype, {})]
    step = progress or (lambda job, i, n: None)
    added: dict[tuple[str, str, str], list[list[float]]] = {}
    with torch.no_grad():
        for i, job in enumerate(jobs):
            step(job, i, len(jobs))
            size, ns = job.run()
            added.setdefault((job.table, job.dtype, job.key), []).append([size, round(ns, 1)])
            torch.cuda.empty_cache()
    for (table, dtype, key), points in added.items():
        cal.setdefault(table, {}).setdefault(dtype, {})[key] = sorted(points)
    if "conv" in cal:
        cal["efficiency"]["conv"] = fit_efficiency(doc)["conv"]
    names = [f"{table}.{dtype}.{key}" for table, dtype, key in added]
    if names:
        cal.setdefault("additions", []).append({
            "curves": names, "driver": driver_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "date": datetime.date.today().isoformat(), "seconds": round(time.perf_counter() - started, 1)})
    check(doc, str(out))
    return doc, names


def calibrate(out: Path, device: str = "cuda", configs: Iterable[Path] | None = None, progress=None,
              quick: bool = False) -> dict:
    """Measure everything and return the profile document (spec + calibrated); the caller writes it."""
    dev = check_cuda(device)
    started = time.perf_counter()
    props = torch.cuda.get_device_properties(dev)
    base = spec_base(props.name, out)
    configs = list(configs) if configs is not None else sorted(MODELS.glob("*/config.json"))
    if not configs:
        raise VerifyError(f"calibrate: no config.json under {MODELS}; give --models the folder of the shipped "
                          "configs (their GEMM and attention shapes are calibrated exactly)")
    shapes = model_shapes(configs)
    l2 = int(getattr(props, "L2_cache_size", 0)) or int(base["spec"]["l2_bytes"]["value"])
    jobs = (overhead_jobs() + gemm_jobs(shapes, l2) + sdpa_jobs(shapes) + conv_jobs(vae_convs())
            + memory_jobs(props.total_memory // 4))
    if quick:
        jobs = jobs[::7]
    tables: dict[str, dict] = {"gemm": {}, "sdpa": {}, "conv": {}, "memory": {}, "overhead_ns": {}}
    step = progress or (lambda job, i, n: None)
    torch.backends.cuda.matmul.allow_tf32 = False  # torch's default; stated, not assumed
    with torch.no_grad():
        for i, job in enumerate(jobs):
            step(job, i, len(jobs))
            size, ns = job.run()
            if job.table == "overhead":
                tables["overhead_ns"][job.key] = round(ns, 1)
                continue
            tables[job.table].setdefault(job.dtype, {}).setdefault(job.key, []).append([size, round(ns, 1)])
            torch.cuda.empty_cache()
    for table in ("gemm", "sdpa", "conv", "memory"):
        for series in tables[table].values():
            for points in series.values():
                points.sort()
    doc = {
        "schema_version": PROFILE_SCHEMA,
        **base,
        "calibrated": {
            "device": {**device_info(dev), "sms": props.multi_processor_count, "l2_bytes": l2},
            "driver": driver_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "date": datetime.date.today().isoformat(),
            "overhead_ns": tables["overhead_ns"],
            "gemm": tables["gemm"],
            "sdpa": tables["sdpa"],
            "conv": tables["conv"],
            "memory": tables["memory"],
            "efficiency": {},
        },
    }
    doc["calibrated"]["efficiency"] = fit_efficiency(doc)
    tiny = [c for c in configs if c.parent.name == TINY]
    if tiny and not quick:
        step(Job("overhead", "", "python", lambda: (0, 0.0), "the model's own Python per node"), len(jobs), len(jobs))
        doc["calibrated"]["overhead_ns"]["python"] = fit_python(doc, tiny[0])
    doc["calibrated"]["seconds"] = round(time.perf_counter() - started, 1)
    check(doc, str(out))
    return doc

