"""Florence-2 configuration: presets and the two published ``config.json`` dialects.

A :class:`Florence2Config` holds a :class:`VisionConfig` (the DaViT tower and the projector) and a
``transformers.BartConfig`` (the encoder-decoder). It reads Microsoft's hub ``config.json``
(``vision_config.dim_embed``, ``image_pos_embed``, ``visual_temporal_embedding``, ...) and the
transformers-native one (``vision_config.embed_dim``, ``max_position_embeddings``, ...), and writes
either.

Example::

    >>> cfg = Florence2Config.preset("tiny", vocab_size=2048)
    >>> Florence2Config.from_dict(cfg.to_dict("microsoft")).vision == cfg.vision
    True
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field, fields

from transformers import BartConfig

from .errors import ConfigError

__all__ = ["VisionConfig", "Florence2Config", "ConfigError", "PRESETS", "GENERATION_DEFAULTS"]

# The published generation settings (Microsoft's model card and text_config). `max_new_tokens` and
# `early_stopping` are the call-site defaults of the published examples.
GENERATION_DEFAULTS = dict(
    num_beams=3,
    max_new_tokens=1024,
    do_sample=False,
    early_stopping=True,
    no_repeat_ngram_size=3,
    forced_bos_token_id=0,  # <s> first, </s> last: the published text_config's settings
    forced_eos_token_id=2,
)
_GENERATION_KEYS_IN_TEXT_CONFIG = ("num_beams", "no_repeat_ngram_size", "early_stopping", "max_new_tokens",
                                   "forced_bos_token_id", "forced_eos_token_id")


@dataclass
class VisionConfig:
    """Vision tower + projector sizes. Field names follow timm/transformers-native spelling. ``tower``
    names the image encoder (:mod:`florence.models.tower`; ``"davit"``, Florence-2's, by default)."""

    embed_dims: tuple = (128, 256, 512, 1024)
    depths: tuple = (1, 1, 9, 1)
    num_heads: tuple = (4, 8, 16, 32)
    num_groups: tuple = (4, 8, 16, 32)  # channel-attention groups; DaViT uses one number for both
    window_size: int = 12
    patch_size: tuple = (7, 3, 3, 3)
    patch_stride: tuple = (4, 2, 2, 2)
    patch_padding: tuple = (3, 1, 1, 1)
    patch_prenorm: tuple = (False, True, True, True)
    drop_path_rate: float = 0.1
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    projection_dim: int = 768  # = text d_model: visual tokens live in the encoder's embedding space
    max_pos_embeddings: int = 50  # rows/columns of the learned 2D position table
    max_temporal_embeddings: int = 100
    tower: str = "davit"

    def __post_init__(self):
        for f in ("embed_dims", "depths", "num_heads", "num_groups", "patch_size", "patch_stride",
                  "patch_padding", "patch_prenorm"):
            setattr(self, f, tuple(getattr(self, f)))
        self.validate()

    @staticmethod
    def patch_geometry(stages: int) -> dict:
        """The stem and downsampler geometry of a ``stages``-stage tower: timm's DaViT has a 7x7/4 stem
        with padding 3, then 3x3/2 downsamplers with padding 1, LayerNorm after the stem conv and
        before each downsampler conv. That is the only published geometry."""
        n = stages
        return dict(patch_size=(7,) + (3,) * (n - 1), patch_stride=(4,) + (2,) * (n - 1),
                    patch_padding=(3,) + (1,) * (n - 1), patch_prenorm=(False,) + (True,) * (n - 1))

    def validate(self):
        n = len(self.embed_dims)
        for f in ("depths", "num_heads", "num_groups", "patch_size", "patch_stride", "patch_padding",
                  "patch_prenorm"):
            if len(getattr(self, f)) != n:
                raise ConfigError(f"vision_config.{f} has {len(getattr(self, f))} entries, expected one per "
                                  f"stage ({n}, the length of embed_dims)")
        from .tower import get_tower

        get_tower(self).check(self)  # what the tower itself can build
        if self.embed_dims[-1] % 2:
            raise ConfigError("vision_config: the last embed dim must be even (2D position table halves)")


def _bart(**kw) -> dict:
    base = dict(
        vocab_size=51289, max_position_embeddings=1024, scale_embedding=False,
        bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2,
        dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, activation_function="gelu",
        tie_word_embeddings=True,
    )
    base.update(kw)
    return base


PRESETS = {
    # Florence-2-base: DaViT-B tower (~90M) + BART-base-sized encoder-decoder (~140M)
    "base": (
        dict(projection_dim=768),
        _bart(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
              decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072),
    ),
    # Florence-2-large: DaViT tower of timm's davit_huge_fl size (~360M) + BART-large-sized (~410M)
    "large": (
        dict(embed_dims=(256, 512, 1024, 2048), num_heads=(8, 16, 32, 64), num_groups=(8, 16, 32, 64),
             projection_dim=1024),
        _bart(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
              decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096,
              max_position_embeddings=4096),  # the current published -large config.json says 4096
    ),
    # a few million parameters (with a small vocabulary): tests and the CPU demo
    "tiny": (
        dict(embed_dims=(32, 64, 128, 256), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8),
             num_groups=(1, 2, 4, 8), drop_path_rate=0.0, projection_dim=128),
        _bart(d_model=128, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
              decoder_attention_heads=4, encoder_ffn_dim=512, decoder_ffn_dim=512, dropout=0.0,
              attention_dropout=0.0),
    ),
}


@dataclass
class Florence2Config:
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: BartConfig = field(default_factory=lambda: BartConfig(**PRESETS["base"][1]))
    generation: dict = field(default_factory=lambda: dict(GENERATION_DEFAULTS))
    image_token_id: int = 51289  # only the transformers-native dialect uses it (image placeholders)

    def __post_init__(self):
        if self.vision.projection_dim != self.text.d_model:
            raise ConfigError(f"vision_config.projection_dim ({self.vision.projection_dim}) must equal "
                              f"text_config.d_model ({self.text.d_model}): visual tokens are fed to the encoder")

    @property
    def vocab_size(self) -> int:
        return self.text.vocab_size

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, vision: dict | None = None, **text_overrides) -> "Florence2Config":
        """``base``, ``large`` or ``tiny``; ``vision`` overrides :class:`VisionConfig` fields (e.g.
        ``dict(window_size=8)``), other keyword arguments BART fields (e.g. ``vocab_size``)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; valid presets: {sorted(PRESETS)}")
        base_vision, text = PRESETS[name]
        unknown = sorted(set(vision or {}) - {f.name for f in fields(VisionConfig)})
        if unknown:
            raise ConfigError(f"preset vision overrides {unknown} are not VisionConfig fields; valid: "
                              f"{sorted(f.name for f in fields(VisionConfig))}")
        return cls(vision=VisionConfig(**{**base_vision, **(vision or {})}),
                   text=BartConfig(**{**text, **text_overrides}))

    @classmethod
    def from_dict(cls, d: dict) -> "Florence2Config":
        """Build from a config dict in Microsoft's or the transformers-native dialect, or ``{"preset": ...}``."""
        d = copy.deepcopy(d)
        if "preset" in d:
            return cls.preset(d.pop("preset"), **d)
        if "vision_config" not in d or "text_config" not in d:
            raise ConfigError(f"a Florence-2 config needs 'vision_config' and 'text_config' (or 'preset'); "
                              f"got keys {sorted(d)}")
        v, t = d["vision_config"], dict(d["text_config"])
        if "dim_embed" in v:
            vision = _vision_from_microsoft(v, d)
        elif "embed_dim" in v:
            vision = _vision_from_native(v)
        else:
            raise ConfigError("vision_config has neither 'dim_embed' (Microsoft's dialect) nor 'embed_dim' "
                              f"(transformers-native dialect); keys: {sorted(v)}")
        generation = dict(GENERATION_DEFAULTS)
        generation.update({k: t[k] for k in _GENERATION_KEYS_IN_TEXT_CONFIG if k in t})
        generation.update(d.get("florence_generation", {}))  # written by our own save_pretrained
        for k in ("model_type", "architectures", "transformers_version", "_name_or_path", "dtype",
                  "torch_dtype") + tuple(k for k in _GENERATION_KEYS_IN_TEXT_CONFIG if k != "forced_eos_token_id"):
            t.pop(k, None)
        if "vocab_size" not in t and "vocab_size" in d:
            t["vocab_size"] = d["vocab_size"]
        text = BartConfig(**_bart(**t))
        return cls(vision=vision, text=text, generation=generation,
                   image_token_id=d.get("image_token_id", 51289))

    @classmethod
    def from_json_file(cls, path) -> "Florence2Config":
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON: {e}") from e
        try:
            return cls.from_dict(d)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e

    # ---- serialisation -----------------------------------------------------------------------
    def _text_dict(self) -> dict:
        t = self.text.to_dict()
        for k in ("transformers_version", "_name_or_path", "architectures", "dtype"):
            t.pop(k, None)
        return t

    def to_dict(self, dialect: str = "native") -> dict:
        """``native``: what ``transformers.Florence2ForConditionalGeneration`` reads;
        ``microsoft``: the hub repos' dialect (``trust_remote_code`` modeling files)."""
        v = self.vision
        text = self._text_dict()
        if dialect == "native":
            text["model_type"] = "bart"
            return dict(
                model_type="florence2", architectures=["Florence2ForConditionalGeneration"],
                is_encoder_decoder=True, tie_word_embeddings=self.text.tie_word_embeddings,
                image_token_id=self.image_token_id, text_config=text,
                vision_config=dict(
                    model_type="florence_vision", embed_dim=list(v.embed_dims), depths=list(v.depths),
                    num_heads=list(v.num_heads), num_groups=list(v.num_groups), window_size=v.window_size,
                    patch_size=list(v.patch_size), patch_stride=list(v.patch_stride),
                    patch_padding=list(v.patch_padding), patch_prenorm=list(v.patch_prenorm),
                    drop_path_rate=v.drop_path_rate, mlp_ratio=v.mlp_ratio, qkv_bias=v.qkv_bias,
                    projection_dim=v.projection_dim, max_position_embeddings=v.max_pos_embeddings,
                    max_temporal_embeddings=v.max_temporal_embeddings, **self._tower_entry()),
                florence_generation=self.generation,
            )
        if dialect == "microsoft":
            text.update(model_type="florence2_language",
                        **{k: self.generation[k] for k in _GENERATION_KEYS_IN_TEXT_CONFIG if k in self.generation})
            return dict(
                model_type="florence2", architectures=["Florence2ForConditionalGeneration"],
                vocab_size=self.text.vocab_size, projection_dim=v.projection_dim,
                is_encoder_decoder=True, text_config=text,
                vision_config=dict(
                    model_type="davit", dim_embed=list(v.embed_dims), depths=list(v.depths),
                    num_heads=list(v.num_heads), num_groups=list(v.num_groups), window_size=v.window_size,
                    patch_size=list(v.patch_size), patch_stride=list(v.patch_stride),
                    patch_padding=list(v.patch_padding), patch_prenorm=list(v.patch_prenorm),
                    drop_path_rate=v.drop_path_rate, projection_dim=v.projection_dim,
                    enable_checkpoint=False,
                    image_pos_embed=dict(type="learned_abs_2d", max_pos_embeddings=v.max_pos_embeddings),
                    visual_temporal_embedding=dict(type="COSINE",
                                                   max_temporal_embeddings=v.max_temporal_embeddings),
                    image_feature_source=["spatial_avg_pool", "temporal_avg_pool"], **self._tower_entry()),
                florence_generation=self.generation,
            )
        raise ConfigError(f"unknown config dialect {dialect!r}; valid: 'native', 'microsoft'")

    def _tower_entry(self) -> dict:
        """``tower`` in the written vision_config when it is not Florence-2's DaViT (which the published
        dialects imply)."""
        return {} if self.vision.tower == "davit" else {"tower": self.vision.tower}

    def save(self, folder, dialect: str = "native"):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
            json.dump(self.to_dict(dialect), f, indent=2, sort_keys=True)

    def __eq__(self, other):
        return (isinstance(other, Florence2Config) and self.vision == other.vision
                and self._text_dict() == other._text_dict() and self.generation == other.generation)


def _vision_from_native(v: dict) -> VisionConfig:
    names = {f.name for f in fields(VisionConfig)}
    kw = {k: v[k] for k in names & set(v)}
    kw["embed_dims"] = v["embed_dim"]
    if "max_position_embeddings" in v:
        kw["max_pos_embeddings"] = v["max_position_embeddings"]
    return VisionConfig(**kw)


def _vision_from_microsoft(v: dict, top: dict) -> VisionConfig:
    pos = v.get("image_pos_embed", {"type": "learned_abs_2d", "max_pos_embeddings": 50})
    tmp = v.get("visual_temporal_embedding", {"type": "COSINE", "max_temporal_embeddings": 100})
    if pos.get("type") != "learned_abs_2d":
        raise ConfigError(f"vision_config.image_pos_embed.type {pos.get('type')!r} is not supported "
                          "(expected 'learned_abs_2d')")
    if tmp.get("type") != "COSINE":
        raise ConfigError(f"vision_config.visual_temporal_embedding.type {tmp.get('type')!r} is not supported "
                          "(expected 'COSINE')")
    source = v.get("image_feature_source", ["spatial_avg_pool", "temporal_avg_pool"])
    if list(source) != ["spatial_avg_pool", "temporal_avg_pool"]:
        raise ConfigError(f"vision_config.image_feature_source {source} is not supported "
                          "(expected ['spatial_avg_pool', 'temporal_avg_pool'])")
    kw = dict(embed_dims=v["dim_embed"])
    for k in ("depths", "num_heads", "num_groups", "window_size", "patch_size", "patch_stride",
              "patch_padding", "patch_prenorm", "drop_path_rate", "tower"):
        if k in v:
            kw[k] = v[k]
    proj = v.get("projection_dim", top.get("projection_dim"))
    if proj is not None:
        kw["projection_dim"] = proj
    kw["max_pos_embeddings"] = pos.get("max_pos_embeddings", 50)
    kw["max_temporal_embeddings"] = tmp.get("max_temporal_embeddings", 100)
    return VisionConfig(**kw)
