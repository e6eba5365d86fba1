"""The Wan2.1 VAE: faithful to diffusers' AutoencoderKLWan (same random weights through the key table), the
published parameter count, safetensors-only loading, and the chunked encode/decode traced and costed on meta
(conv FLOPs equal a hand formula over the chunk schedule)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from wan_reference import CheckpointError, ConfigError
from wan_reference.precision import get_policy
from wan_reference.vae import build_vae, decode_chunks, encode_chunks
from wan_reference.vae_checkpoint import (
    check_vae_checkpoint,
    load_vae_checkpoint,
    save_vae_checkpoint,
    state_dict_to_diffusers,
)
from wan_reference.vae_config import VAEConfig, load_vae_config, to_diffusers_vae_config, vae_config_from_dict
from wan_reference.vae_keys import vae_from_diffusers, vae_to_diffusers
from wantrace.work.analysis import roll_up
from wantrace.work.trace import CostInterpreter
from wantrace.work.vae import VAEWorkloadError, trace_vae, with_prefix

from .conftest import MODELS

TINY = MODELS / "wan2.1-tiny-vae" / "vae" / "config.json"
PUBLISHED = MODELS / "wan2.1-vae" / "vae" / "config.json"
WAN21_VAE_PARAMS = 126_892_531  # AutoencoderKLWan built on meta from the published config (507.6 MB in fp32)


@pytest.fixture(scope="module")
def tiny() -> VAEConfig:
    return load_vae_config(TINY)


@pytest.fixture(scope="module")
def pair(tiny):
    diffusers = pytest.importorskip("diffusers")
    ours = build_vae(tiny, device="cpu", seed=0)
    ref = diffusers.AutoencoderKLWan(**to_diffusers_vae_config(tiny)).eval()
    ref.load_state_dict(state_dict_to_diffusers(ours), strict=True)
    return ours, ref


def _stats(config: VAEConfig):
    mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(config.latents_std).view(1, -1, 1, 1, 1)
    return mean, inv_std


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@torch.no_grad()
def test_encode_matches_diffusers(tiny, pair):
    ours, ref = pair
    x = torch.rand(1, 3, 9, 16, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mean, inv_std = _stats(tiny)
    expected = (ref.encode(x).latent_dist.mode() - mean) * inv_std  # the pipeline's normalisation
    got = ours.encode(x)
    assert got.shape == (1, 4, 3, 2, 3)
    assert _close(got, expected) < 1e-4


@torch.no_grad()
def test_decode_matches_diffusers(tiny, pair):
    ours, ref = pair
    z = torch.randn(1, 4, 3, 2, 3, generator=torch.Generator().manual_seed(2))
    mean, inv_std = _stats(tiny)
    expected = ref.decode(z / inv_std + mean).sample
    got = ours.decode(z)
    assert got.shape == (1, 3, 9, 16, 24)
    assert (got.abs() < 0.999).float().mean() > 0.3  # most pixels are not clamped: the check sees the network
    assert _close(got, expected) < 1e-4


@torch.no_grad()
def test_chunks_carry_the_cache(tiny, pair):
    """Decoding latent frame 2 alone differs from decoding it after frames 0 and 1: the cache is used."""
    ours, _ = pair
    z = torch.randn(1, 4, 3, 2, 3, generator=torch.Generator().manual_seed(3))
    full = ours.decode(z)
    alone = ours.decode(z[:, :, 2:3])
    assert alone.shape[2] == 1 and not torch.allclose(full[:, :, -1:], alone, atol=1e-3)


def test_published_config_and_parameter_count():
    config = load_vae_config(PUBLISHED)
    assert config == VAEConfig()  # the official _video_vae / WanVAE defaults
    model = build_vae(config)
    assert sum(p.numel() for p in model.parameters()) == WAN21_VAE_PARAMS
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):  # diffusers' class from the published file itself
        ref = diffusers.AutoencoderKLWan.from_config(json.loads(PUBLISHED.read_text()))
    assert sum(p.numel() for p in ref.parameters()) == WAN21_VAE_PARAMS
    shapes = {vae_to_diffusers(k, config): tuple(p.shape) for k, p in model.state_dict().items()}
    assert shapes == {k: tuple(p.shape) for k, p in ref.state_dict().items()}
    assert len(shapes) == 194
    up = "decoder.up_blocks.1.upsamplers.0.time_conv.weight"
    assert vae_to_diffusers("decoder.upsamples.7.time_conv.weight", config) == up
    down = vae_from_diffusers("decoder.up_blocks.3.resnets.2.conv2.bias", config)
    assert down == "decoder.upsamples.14.residual.6.bias"


@pytest.mark.parametrize("change, field", [
    ({"is_residual": True}, "is_residual"),
    ({"z_dim": 8}, "latents_mean"),
    ({"temperal_downsample": [False, True]}, "temperal_downsample"),
    ({"_class_name": "WanTransformer3DModel"}, "_class_name"),
    ({"scale_factor_spatial": 16}, "scale_factor_spatial"),
])
def test_bad_config_is_one_line(change, field):
    raw = {**json.loads(PUBLISHED.read_text()), **change}
    with pytest.raises(ConfigError) as err:
        vae_config_from_dict(raw)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)


@pytest.mark.parametrize("naming", ["official", "diffusers"])
def test_checkpoint_round_trip(tiny, pair, tmp_path, naming):
    ours, _ = pair
    path = save_vae_checkpoint(ours, tmp_path / "vae.safetensors", naming)
    loaded = load_vae_checkpoint(build_vae(tiny), path)
    for (name, a), (_, b) in zip(ours.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(loaded.inv_std, ours.inv_std)


def test_pickle_is_refused_and_bad_keys_listed(tiny, pair, tmp_path):
    pth = tmp_path / "Wan2.1_VAE.pth"
    pth.write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="convert it to safetensors.*diffusers"):
        load_vae_checkpoint(build_vae(tiny), pth)
    ours, _ = pair
    state = dict(ours.state_dict())
    state.pop("decoder.head.2.bias")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys: decoder.head.2.bias"):
        check_vae_checkpoint(build_vae(tiny), tmp_path / "bad.safetensors")


def test_chunk_schedules():
    assert encode_chunks(1) == [(0, 1)]
    assert encode_chunks(9) == [(0, 1), (1, 5), (5, 9)]
    assert len(encode_chunks(81)) == 21 and encode_chunks(81)[-1] == (77, 81)
    assert decode_chunks(3) == [(0, 1), (1, 2), (2, 3)]


# ------------------------------------------------------------------------------------------- costing
def conv_flops_by_hand(c: VAEConfig, direction: str, frames: int, height: int, width: int) -> int:
    """2 * C_out * C_in * taps * output positions for every conv upstream runs, chunk by chunk (tiny layout:
    dims d, d, 2d, 4d, 4d; temporal downsample in stages 1 and 2; no attention outside the middle blocks)."""
    d, z = c.dim, c.z_dim

    def conv(cin, cout, taps, t, h, w):
        return 2 * cout * cin * taps * t * h * w

    def res(cin, cout, t, h, w):
        return conv(cin, cout, 27, t, h, w) + conv(cout, cout, 27, t, h, w) + (
            conv(cin, cout, 1, t, h, w) if cin != cout else 0)

    def middle(ch, t, h, w):  # two residual blocks + the attention's to_qkv and proj (1x1 Conv2d)
        return 2 * res(ch, ch, t, h, w) + conv(ch, 3 * ch, 1, t, h, w) + conv(ch, ch, 1, t, h, w)

    total = 0
    h8, w8 = height // 8, width // 8
    if direction == "encode":
        for i, (start, stop) in enumerate(encode_chunks(frames)):
            t = stop - start
            t2 = t if i == 0 else t // 2  # after stage 1's time_conv
            t3 = t if i == 0 else t2 // 2  # after stage 2's time_conv
            h, w = height, width
            total += conv(3, d, 27, t, h, w) + 2 * res(d, d, t, h, w)
            total += conv(d, d, 9, t, h // 2, w // 2)  # downsample2d
            h, w = h // 2, w // 2
            total += res(d, 2 * d, t, h, w) + res(2 * d, 2 * d, t, h, w)
            total += conv(2 * d, 2 * d, 9, t, h // 2, w // 2)  # downsample3d, spatial
            h, w = h // 2, w // 2
            total += conv(2 * d, 2 * d, 3, t2, h, w) if i else 0  # its time_conv
            total += res(2 * d, 4 * d, t2, h, w) + res(4 * d, 4 * d, t2, h, w)
            total += conv(4 * d, 4 * d, 9, t2, h // 2, w // 2)
            h, w = h // 2, w // 2
            total += conv(4 * d, 4 * d, 3, t3, h, w) if i else 0
            total += 2 * res(4 * d, 4 * d, t3, h, w) + middle(4 * d, t3, h, w) + conv(4 * d, 2 * z, 27, t3, h, w)
        latent = 1 + (frames - 1) // 4
        return total + conv(2 * z, 2 * z, 1, latent, h8, w8)  # conv1 on the concatenated output
    latent = 1 + (frames - 1) // 4
    total += conv(z, z, 1, latent, h8, w8)  # conv2 on all latents
    for i in range(latent):
        h, w, t = h8, w8, 1
        total += conv(z, 4 * d, 27, t, h, w) + middle(4 * d, t, h, w) + 3 * res(4 * d, 4 * d, t, h, w)
        total += conv(4 * d, 8 * d, 3, t, h, w) if i else 0  # upsample3d time_conv
        t = 2 if i else 1
        h, w = 2 * h, 2 * w
        total += conv(4 * d, 2 * d, 9, t, h, w)
        total += res(2 * d, 4 * d, t, h, w) + 2 * res(4 * d, 4 * d, t, h, w)
        total += conv(4 * d, 8 * d, 3, t, h, w) if i else 0
        t = 2 * t if i else 1
        h, w = 2 * h, 2 * w
        total += conv(4 * d, 2 * d, 9, t, h, w) + 3 * res(2 * d, 2 * d, t, h, w)
        h, w = 2 * h, 2 * w
        total += conv(2 * d, d, 9, t, h, w) + 3 * res(d, d, t, h, w) + conv(d, 3, 27, t, h, w)
    return total


@pytest.fixture(scope="module")
def traces(tiny):
    policy = get_policy("bf16")
    return {d: trace_vae(tiny, policy, 9, 16, 24, d, strict=True) for d in ("encode", "decode")}


@pytest.mark.parametrize("direction", ["encode", "decode"])
def test_conv_flops_equal_the_hand_formula(tiny, traces, direction):
    trace = traces[direction]
    conv = sum(r.cost.flops_torch for r in trace.records if r.family == "conv")
    assert conv == conv_flops_by_hand(tiny, direction, 9, 16, 24)
    assert conv == (128_752_896 if direction == "encode" else 213_008_448)


@pytest.mark.parametrize("direction", ["encode", "decode"])
def test_trace_is_what_eager_runs(tiny, pair, traces, direction):
    trace = traces[direction]
    ours, _ = pair
    x = torch.zeros(trace.input_shape)
    with torch.no_grad():
        eager = ours.encode(x) if direction == "encode" else ours.decode(x)
    assert tuple(eager.shape) == trace.output_shape
    assert all(r.kind != "unknown" for r in trace.records)  # strict: every node has a rule
    modules = {r.module for r in trace.records}
    time_conv = "encoder.downsamples.5.time_conv" if direction == "encode" else "decoder.upsamples.3.time_conv"
    assert time_conv in modules and "model" in modules
    # attention: per latent frame, 2 * 2 * L^2 * C at the latent resolution (L = 2 x 3 pixels, C = 4d = 32)
    attention = sum(r.cost.flops_torch for r in trace.records if r.family == "attention")
    assert attention == 3 * 2 * 2 * 6 * 6 * 32  # 3 latent frames either way


def test_chunks_partition_the_trace(traces):
    for trace in traces.values():
        assert [c.index for c in trace.chunks] == [-1, 0, 1, 2, 3]
        assert sum((c.metrics for c in trace.chunks), type(trace.total)()) == trace.total
        total = sum(r.cost.flops_full for r in trace.records)
        assert trace.total.flops_full == total
        assert trace.peak_activation_bytes == max(c.peak_activation_bytes for c in trace.chunks)
        steady = [c.metrics.flops_torch for c in trace.chunks if c.index >= 1 and c.frames_in]
        assert len(set(steady)) == 1  # every chunk after the first does the same work
        assert trace.chunks[1].metrics.flops_torch < steady[0]  # the first (1 frame, no time_conv) less
    decode = traces["decode"]
    assert [(c.frames_in, c.frames_out) for c in decode.chunks[1:4]] == [(1, 1), (1, 4), (1, 4)]
    video_bytes = 3 * 9 * 16 * 24 * 4
    assert decode.peak_activation_bytes >= video_bytes


def test_later_chunks_read_the_earlier_chunks_cache(traces):
    """The feature cache is a graph edge: chunk 1's nodes consume values chunk 0 produced."""
    trace = traces["decode"]
    nodes = list(trace.graph.nodes)
    phase = dict(zip(nodes, trace.chunk_of, strict=True))
    crossing = [n for n in nodes if phase[n] == 1 and any(phase.get(a) == 0 for a in n.all_input_nodes)]
    assert any(trace.records[nodes.index(n)].module.startswith("decoder.") for n in crossing)


def test_bad_video_is_one_line(tiny):
    with pytest.raises(VAEWorkloadError, match="^frames: must be 4n\\+1"):
        trace_vae(tiny, get_policy("fp32"), 8, 32, 48, "decode")
    with pytest.raises(VAEWorkloadError, match="^width: must be a multiple of 8"):
        trace_vae(tiny, get_policy("fp32"), 9, 32, 44, "encode")


def test_memoized_meta_run_equals_the_plain_interpreter(traces):
    """trace_vae runs each distinct op's meta kernel once; the plain CostInterpreter gives the same records."""
    trace = traces["decode"]
    plain = CostInterpreter(trace.model, strict=True, graph=trace.graph)
    plain.run(torch.empty(trace.input_shape, device="meta"), trace.input_shape[2])
    assert plain.records == trace.records
    assert plain.peak_activation_bytes() == trace.peak_activation_bytes


def test_records_roll_up_and_re_root(traces):
    """The VAE's records roll up like the DiT's (root = the whole call), and re-root under a prefix."""
    trace = traces["decode"]
    rows = {r.id: r for r in roll_up(trace.records, trace.model)}
    assert rows["model"].inclusive == trace.total
    assert rows["decoder"].calls == 3 and rows["conv2"].calls == 1  # one decoder call per latent frame
    assert rows["decoder.upsamples.12.residual.2"].params == 8 * 8 * 27 + 8
    moved = with_prefix(trace.records, "vae.decode")
    assert {r.module.split(".")[0] for r in moved} == {"vae"}
    assert sum(r.cost.flops_full for r in moved) == trace.total.flops_full
    assert moved[-1].module == "vae.decode" and all(r.stack[0] == "vae.decode" for r in moved)


@pytest.mark.parametrize("direction", ["encode", "decode"])
def test_replicated_chunks_equal_a_full_trace(tiny, direction):
    """17 frames: 5 chunks, of which chunks 2 and 3 are copies of the traced chunk 2, chunk 4 of the traced
    chunk 3, and the tail is traced alone; every record, phase and peak equals the full 5-chunk trace's."""
    policy = get_policy("fp32")
    fast = trace_vae(tiny, policy, 17, 16, 24, direction, strict=True)
    full = trace_vae(tiny, policy, 17, 16, 24, direction, strict=True, replicate=False)

    def key(r):
        return (r.index, r.op, r.name, r.kind, r.family, r.module, r.cost, r.output_bytes, r.layout, r.in_dtype,
                tuple(k.split("#scope")[0] for k in r.stack))

    assert [key(r) for r in fast.records] == [key(r) for r in full.records]
    assert fast.chunk_of == full.chunk_of and fast.chunks == full.chunks
    assert fast.peak_activation_bytes == full.peak_activation_bytes
    assert len(fast.graph.nodes) < len(full.graph.nodes)  # it did trace fewer chunks
    assert fast.chunks[-2].peak_activation_bytes < fast.chunks[-3].peak_activation_bytes  # the last keeps no cache


def test_disk_cache_returns_the_traced_costs_and_misses_on_new_code(tiny, tmp_path, monkeypatch):
    """A second trace_vae of the same call reads the costs back from WANTRACE_CACHE (no trace runs), equal to the
    traced ones; a change to the code's digest is a miss; an unreadable entry is traced again; an unwritable
    folder is no cache, with the same answer."""
    from wantrace.work import cache, vae

    policy = get_policy("fp32")
    fresh = trace_vae(tiny, policy, 17, 16, 24, "decode")  # cache off (conftest)
    monkeypatch.setenv("WANTRACE_CACHE", str(tmp_path / "c"))
    first = trace_vae(tiny, policy, 17, 16, 24, "decode")
    (entry,) = (tmp_path / "c").glob("vae-*.pickle")
    runs = []
    monkeypatch.setattr(vae, "_costed", lambda *a: runs.append(a) or (_ for _ in ()).throw(AssertionError("traced")))
    again = trace_vae(tiny, policy, 17, 16, 24, "decode")
    assert not runs
    for t in (first, again):
        assert (t.records, t.chunk_of, t.chunks, t.peak_activation_bytes) == (
            fresh.records, fresh.chunk_of, fresh.chunks, fresh.peak_activation_bytes)
        assert len(t.graph.nodes) == len(fresh.graph.nodes)
    assert {n for n, _ in again.model.named_parameters()} == {n for n, _ in fresh.model.named_parameters()}
    monkeypatch.setattr(cache, "code_digest", lambda: "another version of the code")
    with pytest.raises(AssertionError, match="traced"):
        trace_vae(tiny, policy, 17, 16, 24, "decode")
    monkeypatch.undo()
    monkeypatch.setenv("WANTRACE_CACHE", str(tmp_path / "c"))
    entry.write_bytes(b"not a pickle")
    assert trace_vae(tiny, policy, 17, 16, 24, "decode").records == fresh.records
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("WANTRACE_CACHE", str(blocker / "c"))  # under a file: cannot be created
    assert trace_vae(tiny, policy, 17, 16, 24, "decode").records == fresh.records
    monkeypatch.setenv("WANTRACE_CACHE", "off")
    assert cache.folder() is None
