"""wantrace analyze: exact totals against a closed form and FlopCounterMode, and the roll-up invariants."""

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from wan_reference import build_model, get_policy, make_inputs
from wantrace.work.analysis import analyze
from wantrace.work.metrics import Metrics
from wantrace.work.trace import ModuleTable, module_table, traced_layers
from wantrace.work.workload import WorkloadError, resolve

from .conftest import MODELS, config_of

# VACE traces every block (minutes for the full-size ones): tests/test_variants_flops.py checks them
SHIPPED = sorted(p.parent.name for p in MODELS.glob("*/config.json") if "vace" not in p.parent.name)


def closed_form(config, tokens: int, batch: int = 1) -> int:
    """Matmul + attention FLOPs of one forward at 2 per multiply-add, written out from the architecture."""
    D, F, L, T, I = config.dim, config.ffn_dim, tokens, config.text_len, config.image_tokens  # noqa: E741
    per_block = (
        4 * 2 * L * D * D  # self q, k, v, o
        + 4 * L * L * D  # self-attention QK^T + PV
        + 2 * 2 * L * D * D  # cross q, o
        + 2 * 2 * T * D * D  # cross k, v on text rows
        + 4 * L * T * D  # cross-attention to text
        + 2 * 2 * L * D * F  # FFN
    )
    if I:
        per_block += 2 * 2 * I * D * D + 4 * L * I * D  # k_img, v_img; attention to image tokens
    patch = 2 * L * config.in_dim * config.patch_features * D
    text = 2 * T * config.text_dim * D + 2 * T * D * D
    time = 2 * config.freq_dim * D + 2 * D * D + 2 * D * 6 * D
    head = 2 * L * D * config.out_dim * config.patch_features
    image = 2 * I * 1280 * 1280 + 2 * I * 1280 * D if I else 0
    return batch * (config.num_layers * per_block + patch + text + time + head + image)


@pytest.mark.parametrize(
    "name, workload, tokens",
    [
        ("wan2.1-t2v-1.3b", "t2v-480p", 32_760),
        ("wan2.1-t2v-1.3b", "t2v-720p", 75_600),
        ("wan2.1-t2v-14b", "t2v-480p", 32_760),
        ("wan2.1-t2v-14b", "t2v-720p", 75_600),
        ("wan2.1-i2v-14b-720p", "i2v-720p", 75_600),
    ],
)
def test_torch_flops_equal_closed_form(name, workload, tokens):
    config = config_of(name)
    report = analyze(config, workload)
    assert report.geometry["tokens"] == tokens
    assert report.forward.flops_torch == closed_form(config, tokens)


def test_orientation_numbers():
    assert analyze(config_of("wan2.1-t2v-14b"), "t2v-480p").forward.flops_torch == 1_678_370_283_192_320


@pytest.mark.parametrize(
    "name, workload, precision",
    [
        ("wan2.1-t2v-14b", "t2v-480p", "bf16"),
        ("wan2.1-t2v-1.3b", "ci-tiny", "wan-official"),
        ("wan2.1-tiny-i2v", "ci-tiny", "bf16"),
        ("wan2.1-flf2v-14b-720p", "ci-tiny", "wan-official"),
    ],
)
def test_torch_flops_equal_flop_counter_mode(name, workload, precision):
    """FlopCounterMode over the same wan_reference forward on meta counts exactly our `torch` total."""
    config = config_of(name)
    report = analyze(config, workload, precision=precision)
    _, geo = resolve(workload, config)
    model = build_model(config, precision)
    with FlopCounterMode(display=False) as counter:
        model(**make_inputs(config, geo.latent, precision))
    assert counter.get_total_flops() == report.forward.flops_torch


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("precision", ["bf16", "wan-official"])
def test_every_shipped_config_traces_without_unknown_ops(name, precision):
    report = analyze(config_of(name), "ci-tiny", precision=precision, strict=True)
    assert report.ledger["unknown"] == []
    assert report.ledger["nodes"] == (
        report.ledger["costed"] + sum(report.ledger["zero_cost"].values()) + sum(report.ledger["structural"].values())
    )


@pytest.mark.parametrize("precision", ["bf16", "wan-official"])
def test_replicated_blocks_equal_full_trace(precision):
    """Block 1 copied for blocks 2..N-1 is the full trace; 6 blocks of the 1.3B (every block runs the same graph:
    the copies' ids, calls and liveness are what a longer model repeats)."""
    config = config_of("wan2.1-t2v-1.3b").with_layers(6)
    fast = analyze(config, "ci-tiny", precision=precision).to_dict()
    full = analyze(config, "ci-tiny", precision=precision, replicate=False).to_dict()
    assert fast.pop("trace") == {"traced_blocks": 2, "replicated": True}
    assert full.pop("trace") == {"traced_blocks": 6, "replicated": False}
    assert fast == full


@pytest.mark.parametrize("name", ["wan2.1-t2v-14b", "wan2.1-i2v-14b-720p", "wan2.1-t2v-1.3b", "wan2.2-ti2v-5b",
                                  "wan2.2-t2v-a14b/high_noise_model"])
def test_module_table_of_two_blocks_is_the_whole_models(name):
    """The report's parameters, types and module order come from the 2-block model, its block 1 copied."""
    config, policy = config_of(name), get_policy("wan-official")
    whole = ModuleTable.of(build_model(config, policy))
    copied = module_table(config, policy, traced_layers(config))
    assert traced_layers(config) == 2 < config.num_layers
    assert list(copied.types.items()) == list(whole.types.items())  # order too: it sorts siblings
    assert copied.params == whole.params


def test_replicated_records_are_what_dataclasses_replace_gives():
    """replicate_blocks copies records without dataclasses.replace (five times faster), which is exact only while
    NodeCost has no __post_init__ and no __slots__; its records equal a replace-built copy, field for field."""
    import dataclasses

    from wan_reference import get_policy
    from wantrace.work.trace import NodeCost, in_block1, replicate_blocks, trace_model

    assert not hasattr(NodeCost, "__post_init__") and not hasattr(NodeCost, "__slots__")
    config = config_of("wan2.1-tiny-t2v")
    records = trace_model(config.with_layers(2), get_policy("bf16"), (2, 4, 4), 1).records
    block1 = [r for r in records if in_block1(r)]
    got = replicate_blocks(records, 4)
    first = records.index(block1[0])
    want = records[:first + len(block1)] + [
        dataclasses.replace(r, module=r.module.replace("blocks.1", f"blocks.{k}", 1),
                            stack=tuple(s.replace("blocks.1", f"blocks.{k}", 1) for s in r.stack))
        for k in (2, 3) for r in block1] + records[first + len(block1):]
    want = [dataclasses.replace(r, index=i) for i, r in enumerate(want)]
    assert [vars(r) for r in got] == [vars(r) for r in want] and got == want


@pytest.fixture(scope="module")
def i2v_report():
    return analyze(MODELS / "wan2.1-i2v-14b-480p" / "config.json", "i2v-480p", precision="wan-official")


def test_parent_equals_sum_of_children(i2v_report):
    rows = {row.id: row for row in i2v_report.modules}
    for row in i2v_report.modules:
        if not row.children:
            assert row.inclusive == row.exclusive
            continue
        kids = [rows[c] for c in row.children]
        assert row.inclusive == sum((k.inclusive for k in kids), row.exclusive)
        for kid in kids:
            assert kid.parent == row.id
    root = rows["model"]
    assert root.params == 16_394_878_784
    assert root.inclusive == i2v_report.forward
    assert sum(i2v_report.categories.values(), Metrics()) == root.inclusive


def test_params_roll_up_exactly(i2v_report):
    model = build_model(config_of("wan2.1-i2v-14b-480p"), "wan-official")
    rows = {row.id: row for row in i2v_report.modules}
    for name, module in model.named_modules():
        expected = sum(p.numel() for p in module.parameters())
        assert rows[name or "model"].params == expected, name


def test_values_non_negative_and_types_exact(i2v_report):
    doc = i2v_report.to_dict()

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            assert value >= 0

    walk(doc)
    for row in doc["modules"]:
        assert all(isinstance(v, int) for v in row["flops"].values())
        assert isinstance(row["bytes"], int)


def test_ids_unique_and_stable_across_runs(tmp_path):
    path = MODELS / "wan2.1-tiny-i2v" / "config.json"
    a, b = analyze(path, "ci-tiny"), analyze(path, "ci-tiny")
    ids = [row.id for row in a.modules]
    assert len(ids) == len(set(ids))
    assert ids == [row.id for row in b.modules]
    assert a.to_json() == b.to_json()
    assert ids[0] == "model"
    for expected in ("blocks.1.self_attn.attention", "blocks.0.cross_attn.attention_img", "blocks.1.self_attn.rope",
                     "blocks.0.modulate_msa", "blocks.1.gate_ffn", "head.modulate", "unpatchify", "rope"):
        assert expected in ids


def test_categories_of_functional_children(i2v_report):
    rows = {row.id: row for row in i2v_report.modules}
    assert rows["blocks.7.self_attn.attention"].category == "self-attention core"
    assert rows["blocks.7.cross_attn.attention_img"].category == "cross-attention core"
    assert rows["blocks.7.self_attn.q"].category == "attention projections"
    assert rows["blocks.7.ffn.0"].category == "FFN"
    assert rows["blocks.7.self_attn.rope"].category == "RoPE"
    assert rows["blocks.7.gate_msa"].category == "modulation & gates"
    assert rows["blocks.7"].category == "mixed"
    # the official path casts every fp32 weight to bf16 at each call: a dtype-cast cost under each Linear
    assert i2v_report.categories["dtype casts"].bytes > 0


def test_scaling_with_steps_and_cfg():
    config = config_of("wan2.1-t2v-1.3b")
    base = analyze(config, "ci-tiny")
    steps = analyze(config, "ci-tiny", steps=7)
    cfg = analyze(config, "ci-tiny", cfg=True)
    assert steps.totals["generation"] == base.forward.times(7)
    assert cfg.totals["step"] == base.forward.times(2)
    assert cfg.forward == base.forward
    assert steps.totals["params"] == base.totals["params"]
    assert steps.totals["activation_bytes"] == base.totals["activation_bytes"]
    assert steps.workload["id"] == "ci-tiny+steps=7"


def test_monotonic_in_frames_and_resolution():
    config = config_of("wan2.1-t2v-1.3b")
    by_frames = [analyze(config, "t2v-480p", frames=f).forward for f in (17, 33, 49, 81)]
    by_size = [analyze(config, "t2v-480p", height=h, width=w).forward for h, w in ((256, 256), (480, 832),
                                                                                    (720, 1280))]
    for series in (by_frames, by_size):
        for small, big in zip(series, series[1:], strict=False):
            assert big.flops_torch > small.flops_torch and big.flops_full > small.flops_full
            assert big.bytes > small.bytes


def test_self_attention_share_grows_with_tokens():
    config = config_of("wan2.1-t2v-14b")
    shares = [analyze(config, "t2v-480p", frames=f).category_shares()["self-attention core"] for f in (5, 21, 41, 81)]
    assert shares == sorted(shares) and shares[0] < shares[-1]
    assert round(shares[-1], 2) == 0.52
    assert round(analyze(config, "t2v-720p").category_shares()["self-attention core"], 2) == 0.72


def test_preset_must_fit_the_model():
    with pytest.raises(WorkloadError, match="preset 'i2v-720p' is for i2v models, but the config is t2v"):
        analyze(config_of("wan2.1-t2v-14b"), "i2v-720p")
    with pytest.raises(WorkloadError, match="preset 't2v-480p' is for t2v models"):
        analyze(config_of("wan2.1-i2v-14b-480p"), "t2v-480p")
    with pytest.raises(WorkloadError, match="batch: must be a positive integer"):
        analyze(config_of("wan2.1-t2v-14b"), "ci-tiny", batch=0)


def test_batch_scales_flops():
    config = config_of("wan2.1-tiny-t2v")
    one, three = analyze(config, "ci-tiny"), analyze(config, "ci-tiny", batch=3)
    assert three.forward.flops_torch == 3 * one.forward.flops_torch == closed_form(config, 512, batch=3)


def test_report_json_round_trips(i2v_report):
    doc = json.loads(i2v_report.to_json())
    assert doc["schema_version"] == 2
    assert doc["workload"] == {"id": "i2v-480p+precision=wan-official", "frames": 81, "height": 480, "width": 832,
                               "batch": 1, "steps": 40, "cfg": True, "precision": "wan-official"}
    assert doc["geometry"]["tokens"] == 32_760
    assert doc["totals"]["generation"]["flops"]["torch"] == 80 * doc["totals"]["forward"]["flops"]["torch"]
    assert {c["category"] for c in doc["categories"]} >= {"self-attention core", "dtype casts", "other"}
    assert len(doc["model"]["config_sha256"]) == 64
    assert doc["ledger"]["unknown"] == []


def test_attention_bytes_follow_flash_model():
    """Q, K, V read and O written, in the kernel dtype: no L x L score tensor."""
    config = config_of("wan2.1-t2v-14b")
    report = analyze(config, "t2v-480p")
    row = report.module("blocks.3.self_attn.attention")
    # inside the scope: q, k, v casts to bf16 are no-ops (bf16 policy), SDPA reads 3 x [L, D] and writes [L, D]
    assert row.inclusive.bytes == 4 * 32_760 * 5120 * torch.bfloat16.itemsize


@pytest.mark.parametrize("name", ["wan2.1-i2v-14b-480p", "wan2.1-tiny-t2v"])
def test_matrix_products_carry_the_torch_flops(name):
    """Every matmul, conv and attention node names the products it is made of (what verify --counters pads
    to kernel tiles), and their FLOPs are the node's torch FLOPs."""
    from wan_reference import get_policy
    from wantrace.work.trace import trace_model

    config = config_of(name)
    config = config.with_layers(min(config.num_layers, 2))  # every block runs the same nodes
    wl, geo = resolve("ci-tiny", config)
    records = trace_model(config, get_policy("bf16"), geo.latent, wl.batch).records
    products = [r for r in records if r.kind == "costed" and r.family in ("matmul", "conv", "attention")]
    assert {r.family for r in products} == {"matmul", "conv", "attention"}
    for r in products:
        assert r.cost.gemms and sum(g.flops for g in r.cost.gemms) == r.cost.flops_torch, (r.module, r.name)
