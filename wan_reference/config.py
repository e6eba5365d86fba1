"""One `WanConfig` from either published config.json format (official `WanModel` / `VaceWanModel` or
diffusers `WanTransformer3DModel` / `WanVACETransformer3DModel`), validated so that a bad file fails with one
line naming the field.

Wan2.1 and Wan2.2 publish the same official config.json keys: `release` tells them apart. A file says it only
through `model_type` `ti2v` (Wan2.2 alone) or by where it sits: the A14B experts are the `high_noise_model/`
and `low_noise_model/` folders of a Wan2.2 checkpoint (`EXPERT_FOLDERS`)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

# Constants of the official code that no config.json carries.
CLIP_DIM = 1280  # MLPProj(1280, dim): CLIP ViT-H/14 width
IMAGE_TOKENS = {"t2v": 0, "i2v": 257, "flf2v": 514}  # Wan2.1 CLIP tokens per forward (flf2v: two images)
MODEL_TYPES = ("t2v", "i2v", "flf2v", "vace", "ti2v")
RELEASES = {"wan2.1": ("t2v", "i2v", "flf2v", "vace"), "wan2.2": ("t2v", "i2v", "ti2v")}
VAE_STRIDES = {"ti2v": (4, 16, 16)}  # Wan2.2-VAE (z 48); every other variant: the Wan2.1 VAE, 4x8x8
EXPERT_FOLDERS = ("high_noise_model", "low_noise_model")  # Wan2.2 A14B (configs `*_noise_checkpoint`)

OFFICIAL_CLASS = "WanModel"
OFFICIAL_VACE_CLASS = "VaceWanModel"
DIFFUSERS_CLASS = "WanTransformer3DModel"
DIFFUSERS_VACE_CLASS = "WanVACETransformer3DModel"


class ConfigError(ValueError):
    """A config that cannot describe a Wan2.1 DiT; the message is one line naming the field."""


@dataclass(frozen=True)
class WanConfig:
    """Architecture of one Wan2.1 DiT, in the official `WanModel.__init__` vocabulary.

    Defaults are the official class defaults, so omitted fields mean what they mean upstream."""

    model_type: str = "t2v"
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512
    in_dim: int = 16
    dim: int = 2048
    ffn_dim: int = 8192
    freq_dim: int = 256
    text_dim: int = 4096
    out_dim: int = 16
    num_heads: int = 16
    num_layers: int = 32
    window_size: tuple[int, int] = (-1, -1)
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    rope_max_seq_len: int = 1024
    # Added after Wan2.1: left out of to_dict() at their defaults, so Wan2.1 reports keep their bytes.
    release: str = "wan2.1"  # "wan2.2": per-token time embedding, no CLIP path (Wan2.2 wan/modules/model.py)
    vace_layers: tuple[int, ...] = ()  # VACE: the main blocks that receive a hint, one VACE block each
    vace_in_dim: int = 0  # VACE: channels of the control latents (vace_patch_embedding input)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_split(self) -> tuple[int, int, int]:
        """Channels of one head given to the frame / height / width axes (official rope_params)."""
        d = self.head_dim
        return (d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6))

    @property
    def image_tokens(self) -> int:
        """CLIP tokens in the context: Wan2.1 i2v/flf2v only (Wan2.2 has no img_emb)."""
        return IMAGE_TOKENS.get(self.model_type, 0) if self.release == "wan2.1" else 0

    @property
    def per_token_time(self) -> bool:
        """Wan2.2's WanModel.forward expands t to [B, seq_len]: the time MLP runs on every token."""
        return self.release == "wan2.2"

    @property
    def vae_stride(self) -> tuple[int, int, int]:
        return VAE_STRIDES.get(self.model_type, (4, 8, 8))

    def with_layers(self, n: int) -> WanConfig:
        """The same model with its first `n` blocks (VACE keeps the hints of those blocks only)."""
        return replace(self, num_layers=n, vace_layers=tuple(i for i in self.vace_layers if i < n))

    @property
    def patch_features(self) -> int:
        return math.prod(self.patch_size)

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in _LATER_FIELDS:
            if d[name] == _DEFAULTS[name]:
                del d[name]
        return d


_LATER_FIELDS = ("release", "vace_layers", "vace_in_dim")
_DEFAULTS = {f.name: f.default for f in fields(WanConfig)}


# Size-defining fields: a class default for these (dim 2048, 32 layers, ...) matches no released model,
# so a config.json without them is an error rather than a silent guess.
_REQUIRED = {
    OFFICIAL_CLASS: ("dim", "ffn_dim", "num_heads", "num_layers"),
    OFFICIAL_VACE_CLASS: ("dim", "ffn_dim", "num_heads", "num_layers"),
    DIFFUSERS_CLASS: ("num_attention_heads", "attention_head_dim", "ffn_dim", "num_layers"),
    DIFFUSERS_VACE_CLASS: ("num_attention_heads", "attention_head_dim", "ffn_dim", "num_layers", "vace_layers"),
}


def _validate(c: WanConfig) -> None:
    if c.model_type not in MODEL_TYPES:
        raise ConfigError(
            f"model_type: unknown variant {c.model_type!r}; supported: {', '.join(MODEL_TYPES)}"
        )
    for name in ("text_len", "in_dim", "dim", "ffn_dim", "freq_dim", "text_dim", "out_dim",
                 "num_heads", "num_layers", "rope_max_seq_len"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
    if (len(c.patch_size) != 3 or any(isinstance(p, bool) or not isinstance(p, int) or p <= 0
                                       for p in c.patch_size)):
        raise ConfigError(f"patch_size: must be three positive integers, got {list(c.patch_size)!r}")
    if not isinstance(c.eps, (int, float)) or isinstance(c.eps, bool) or not 0 < c.eps < 1:
        raise ConfigError(f"eps: must be a number in (0, 1), got {c.eps!r}")
    if tuple(c.window_size) != (-1, -1):
        raise ConfigError(
            f"window_size: only global attention (-1, -1) is supported, got {list(c.window_size)!r}"
        )
    if c.dim % c.num_heads:
        raise ConfigError(f"num_heads: dim {c.dim} is not divisible by num_heads {c.num_heads}")
    d = c.head_dim
    if d % 2 or d < 6:
        raise ConfigError(
            f"num_heads: head_dim {d} (dim/num_heads) cannot split into the three RoPE axes "
            "(it must be even and at least 6)"
        )
    if c.freq_dim % 2:
        raise ConfigError(f"freq_dim: must be even (cos and sin halves), got {c.freq_dim}")
    if c.release not in RELEASES:
        raise ConfigError(f"release: unknown {c.release!r}; supported: {', '.join(RELEASES)}")
    if c.model_type not in RELEASES[c.release]:
        raise ConfigError(f"model_type: {c.model_type!r} is not a {c.release} variant "
                          f"({', '.join(RELEASES[c.release])})")
    if c.model_type == "vace":
        layers = list(c.vace_layers)
        if (not layers or 0 not in layers or len(set(layers)) != len(layers)
                or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < c.num_layers for i in layers)):
            raise ConfigError(f"vace_layers: distinct block indices in [0, {c.num_layers}) including 0, "
                              f"got {layers!r}")
        if isinstance(c.vace_in_dim, bool) or not isinstance(c.vace_in_dim, int) or c.vace_in_dim <= 0:
            raise ConfigError(f"vace_in_dim: must be a positive integer, got {c.vace_in_dim!r}")
    elif c.vace_layers or c.vace_in_dim:
        raise ConfigError(f"vace_layers: only a vace model has VACE blocks (model_type {c.model_type!r})")


def _int_tuple(value, field: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{field}: must be a list, got {value!r}")
    return tuple(value)


def from_dict(raw: dict, release: str | None = None) -> WanConfig:
    """Build a `WanConfig` from a parsed config.json of either format. `release` is what the file's place says
    (an A14B expert folder: "wan2.2"); None lets the fields decide (ti2v and 48-channel models are Wan2.2)."""
    if not isinstance(raw, dict):
        raise ConfigError("config: top level must be a JSON object")
    cls = raw.get("_class_name")
    if cls is None:
        raise ConfigError(
            f"_class_name: missing (expected {OFFICIAL_CLASS!r} or {DIFFUSERS_CLASS!r})"
        )
    if cls not in _REQUIRED:
        raise ConfigError(
            f"_class_name: unknown variant {cls!r} (supported: {', '.join(_REQUIRED)})"
        )
    for name in _REQUIRED[cls]:
        if name not in raw:
            raise ConfigError(f"{name}: required field missing from {cls} config")
    if cls in (OFFICIAL_CLASS, OFFICIAL_VACE_CLASS):
        return _from_official(raw, release, vace=cls == OFFICIAL_VACE_CLASS)
    return _from_diffusers(raw, release, vace=cls == DIFFUSERS_VACE_CLASS)


def _from_official(raw: dict, release: str | None, vace: bool) -> WanConfig:
    known = {f.name for f in fields(WanConfig)} - set(_LATER_FIELDS)
    kwargs = {k: v for k, v in raw.items() if k in known}
    for name in ("patch_size", "window_size"):
        if name in kwargs:
            kwargs[name] = _int_tuple(kwargs[name], name)
    if vace:  # VaceWanModel defaults: model_type 'vace', every 2nd block, control channels = in_dim
        kwargs.setdefault("model_type", "vace")
        if kwargs["model_type"] != "vace":
            raise ConfigError(f"model_type: a {OFFICIAL_VACE_CLASS} is 'vace', got {kwargs['model_type']!r}")
        layers = raw.get("vace_layers")
        num_layers = kwargs["num_layers"]
        kwargs["vace_layers"] = (tuple(range(0, num_layers, 2)) if layers is None and isinstance(num_layers, int)
                                 else _int_tuple(layers, "vace_layers"))
        in_dim = raw.get("vace_in_dim")
        kwargs["vace_in_dim"] = kwargs.get("in_dim", 16) if in_dim is None else in_dim
    if release is None:
        release = "wan2.2" if kwargs.get("model_type") == "ti2v" else "wan2.1"
    return WanConfig(release=release, **kwargs)


def _from_diffusers(raw: dict, release: str | None, vace: bool) -> WanConfig:
    heads, head_dim = raw["num_attention_heads"], raw["attention_head_dim"]
    for name, value in (("num_attention_heads", heads), ("attention_head_dim", head_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
    dim = heads * head_dim
    image_dim = raw.get("image_dim")
    added_kv = raw.get("added_kv_proj_dim")
    pos_len = raw.get("pos_embed_seq_len")
    in_dim = raw.get("in_channels", 16)
    out_dim = raw.get("out_channels") or in_dim
    if image_dim is None:
        if added_kv is not None or pos_len is not None:
            raise ConfigError("image_dim: null, but added_kv_proj_dim/pos_embed_seq_len are set")
        if vace:
            model_type = "vace"
        elif in_dim == out_dim == 48:  # the Wan2.2-VAE's 48 latent channels: TI2V-5B
            model_type, release = "ti2v", "wan2.2"
        elif in_dim != out_dim:  # noise + mask + image latents, no CLIP: Wan2.2 I2V-A14B
            model_type, release = "i2v", "wan2.2"
        else:
            model_type = "t2v"
    else:
        if vace:
            raise ConfigError("image_dim: a VACE model takes no CLIP features, got " + repr(image_dim))
        if image_dim != CLIP_DIM:
            raise ConfigError(f"image_dim: Wan2.1 uses CLIP features of {CLIP_DIM}, got {image_dim!r}")
        if added_kv != dim:
            raise ConfigError(f"added_kv_proj_dim: must equal the model dim {dim}, got {added_kv!r}")
        if pos_len not in (None, IMAGE_TOKENS["flf2v"]):
            raise ConfigError(
                f"pos_embed_seq_len: must be null or {IMAGE_TOKENS['flf2v']}, got {pos_len!r}"
            )
        model_type = "i2v" if pos_len is None else "flf2v"
    qk_norm = raw.get("qk_norm", "rms_norm_across_heads")
    if qk_norm not in ("rms_norm_across_heads", None):
        raise ConfigError(f"qk_norm: only 'rms_norm_across_heads' or null are supported, got {qk_norm!r}")
    kwargs = dict(
        model_type=model_type,
        patch_size=_int_tuple(raw.get("patch_size", (1, 2, 2)), "patch_size"),
        in_dim=in_dim,
        dim=dim,
        ffn_dim=raw["ffn_dim"],
        freq_dim=raw.get("freq_dim", 256),
        text_dim=raw.get("text_dim", 4096),
        out_dim=out_dim,
        num_heads=heads,
        num_layers=raw["num_layers"],
        qk_norm=qk_norm is not None,
        cross_attn_norm=raw.get("cross_attn_norm", True),
        eps=raw.get("eps", 1e-6),
        rope_max_seq_len=raw.get("rope_max_seq_len", 1024),
        release=release or "wan2.1",
    )
    if vace:
        kwargs["vace_layers"] = _int_tuple(raw["vace_layers"], "vace_layers")
        kwargs["vace_in_dim"] = raw.get("vace_in_channels", 96)
    return WanConfig(**kwargs)


def release_of_place(path: Path) -> str | None:
    """What a config.json's folder says: an A14B expert folder, or a diffusers pipeline folder whose
    model_index.json has Wan2.2's `boundary_ratio` / `expand_timesteps`, is Wan2.2."""
    if path.parent.name in EXPERT_FOLDERS:
        return "wan2.2"
    index = path.parent.parent / "model_index.json"
    if path.parent.name.startswith("transformer") and index.is_file():
        try:
            pipeline = json.loads(index.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if isinstance(pipeline, dict) and (pipeline.get("boundary_ratio") is not None
                                           or pipeline.get("expand_timesteps")):
            return "wan2.2"
    return None


def read_json(path: str | Path) -> Any:
    """A config file's parsed JSON (each component's loader); one `ConfigError` line when it cannot be read."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def peek_json(path: str | Path) -> dict:
    """A config file's JSON object, empty when unreadable: enough to tell which model's config it is (the
    reader of the model it is then taken for reports any error)."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def read_config(path: str | Path) -> tuple[WanConfig, str]:
    """Read and validate a config.json: (config, "official" or "diffusers").
    Every failure is a `ConfigError` with one line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        config = from_dict(raw, release_of_place(path))
    except TypeError as exc:  # e.g. a list where a number belongs
        raise ConfigError(f"config: {path}: {exc}") from None
    return config, "diffusers" if raw["_class_name"] in (DIFFUSERS_CLASS, DIFFUSERS_VACE_CLASS) else "official"


def load_config(path: str | Path) -> WanConfig:
    return read_config(path)[0]


def to_diffusers_config(c: WanConfig) -> dict:
    """The diffusers config.json of the same architecture (for cross-checks and export): what diffusers'
    conversion script writes (Wan2.2 I2V-A14B: in_channels 36 and no image_dim)."""
    image = c.image_tokens > 0
    extra = {"vace_in_channels": c.vace_in_dim, "vace_layers": list(c.vace_layers)} if c.model_type == "vace" else {}
    return {
        "_class_name": DIFFUSERS_VACE_CLASS if extra else DIFFUSERS_CLASS,
        "added_kv_proj_dim": c.dim if image else None,
        "attention_head_dim": c.head_dim,
        "cross_attn_norm": c.cross_attn_norm,
        "eps": c.eps,
        "ffn_dim": c.ffn_dim,
        "freq_dim": c.freq_dim,
        "image_dim": CLIP_DIM if image else None,
        "in_channels": c.in_dim,
        "num_attention_heads": c.num_heads,
        "num_layers": c.num_layers,
        "out_channels": c.out_dim,
        "patch_size": list(c.patch_size),
        "pos_embed_seq_len": IMAGE_TOKENS["flf2v"] if c.model_type == "flf2v" else None,
        "qk_norm": "rms_norm_across_heads" if c.qk_norm else None,
        "rope_max_seq_len": c.rope_max_seq_len,
        "text_dim": c.text_dim,
        **extra,
    }
