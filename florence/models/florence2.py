"""Florence-2: a unified sequence-to-sequence model for vision tasks (Xiao et al., arXiv 2311.06242).

image (B, 3, H, W) -> vision tower (DaViT, timm's Florence-2 variant: ``tower.py``) -> (B, h, w, C4)
  -> + learned 2D position table -> + temporal embedding (t = 0)
  -> [mean token, h*w grid tokens] -> @ image_projection (C4 x D) -> LayerNorm
  -> in front of the prompt's token embeddings -> BART encoder-decoder (transformers) -> text and
     location tokens.

What is ours: the projector (position/temporal embeddings, pooling, projection), the attention mask
that covers image tokens plus the prompt's own mask, the loss that never counts padding, and
loading both published checkpoint layouts (``layouts.py`` beside this file). Everything else is timm's DaViT
and transformers' BART, wrapped. This is the plain model (it exports with ``torch.export``);
``florence.accel.apply(model)`` makes it fast on CPU without changing its results.

Example::

    >>> from florence.models import Florence2ForConditionalGeneration, Florence2Config
    >>> model = Florence2ForConditionalGeneration(Florence2Config.preset("tiny", vocab_size=2048)).eval()
    >>> ids = model.generate(torch.zeros(1, 3, 768, 768), torch.tensor([[0, 5, 2]]), max_new_tokens=4)
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import BartForConditionalGeneration, GenerationConfig
from transformers.modeling_outputs import BaseModelOutput, ModelOutput

from ..registry import MODELS
from .config import ConfigError, Florence2Config
from .files import CheckpointError, read_state_dict, resolve_folder, write_state_dict
from .layouts import convert_state_dict, detect_layout, load_state_dict_strict, state_dict_to_save
from .tower import build_davit, get_tower, tower_layer_id  # noqa: F401  (build_davit, tower_layer_id: older homes)

__all__ = ["Florence2ForConditionalGeneration", "Florence2Output", "build_davit", "shift_tokens_right",
           "tower_layer_id"]


# ---------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------
class LearnedPositionEmbedding2D(nn.Module):
    """Row and column tables; cell (r, c) gets concat(column[c], row[r]) (column half first)."""

    def __init__(self, dim: int, max_pos: int):
        super().__init__()
        self.row_embeddings = nn.Embedding(max_pos, dim // 2)
        self.column_embeddings = nn.Embedding(max_pos, dim - dim // 2)
        # small, like timm's position tables: at nn.Embedding's std 1 these constants swamp the
        # image-dependent part of freshly initialised DaViT features (pretrained weights overwrite it)
        nn.init.trunc_normal_(self.row_embeddings.weight, std=0.02)
        nn.init.trunc_normal_(self.column_embeddings.weight, std=0.02)

    def forward(self, h: int, w: int) -> torch.Tensor:
        max_pos = self.row_embeddings.num_embeddings
        if h > max_pos or w > max_pos:
            raise ValueError(f"image feature grid {h}x{w} exceeds the position table ({max_pos}x{max_pos}); "
                             f"use a smaller input image (at most {max_pos * 32} px per side)")
        dev = self.row_embeddings.weight.device
        col = self.column_embeddings(torch.arange(w, device=dev))  # (w, C - C//2)
        row = self.row_embeddings(torch.arange(h, device=dev))  # (h, C//2)
        pos = torch.cat([col[None].expand(h, w, -1), row[:, None].expand(h, w, -1)], dim=-1)  # (h, w, C)
        return pos.reshape(h * w, -1)  # (h*w, C), row-major like the flattened feature map


class CosineTemporalEmbedding(nn.Module):
    """1D sine/cosine table (sine on even channels, cosine on odd). Images use t = 0, which adds 1.0
    to every odd channel: leaving it out silently breaks pretrained weights."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.register_buffer("pos_idx_to_embed", self.table(dim, max_len))

    @staticmethod
    def table(dim: int, max_len: int) -> torch.Tensor:
        half = dim // 2
        freq = torch.exp(torch.arange(half).float() * -(math.log(10000) / half))
        angle = torch.arange(max_len).float()[:, None] * freq[None]  # (max_len, half)
        table = torch.empty(max_len, dim)
        table[:, 0::2] = torch.sin(angle)
        table[:, 1::2] = torch.cos(angle)
        return table

    def forward(self, t: int = 0) -> torch.Tensor:
        return self.pos_idx_to_embed[t]  # (C,)


@dataclass
class Florence2Output(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_attention_mask: torch.Tensor | None = None


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher forcing: decoder input = [decoder_start] + labels[:-1], ignored labels read as pad."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------
@MODELS.register_module()
class Florence2ForConditionalGeneration(nn.Module):
    """Vision tower (DaViT: ``tower.py``) + projector + BART. Parameter names follow Microsoft's hub
    layout (the tower uses timm's names); ``layouts.py`` maps both published layouts onto them.

    ``config`` may be a :class:`Florence2Config`, a config dict in either published dialect, or
    ``{"preset": "tiny", "vocab_size": ...}`` (the form mmengine configs use)."""

    def __init__(self, config: Florence2Config | dict | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = kwargs  # MODELS.build(dict(type=..., preset=..., vocab_size=...))
        if isinstance(config, dict):
            config = Florence2Config.from_dict(config)
        self.config = config
        v, dim = config.vision, config.vision.embed_dims[-1]
        self.vision_tower = get_tower(v).build(v)
        self.image_pos_embed = LearnedPositionEmbedding2D(dim, v.max_pos_embeddings)
        self.visual_temporal_embed = CosineTemporalEmbedding(dim, v.max_temporal_embeddings)
        self.image_projection = nn.Parameter(torch.empty(dim, v.projection_dim))  # (C4, D), no bias
        nn.init.trunc_normal_(self.image_projection, std=0.02)
        self.image_proj_norm = nn.LayerNorm(v.projection_dim)
        self.language_model = BartForConditionalGeneration(config.text)
        self.generation_config = GenerationConfig(
            **config.generation,
            bos_token_id=config.text.bos_token_id, pad_token_id=config.text.pad_token_id,
            eos_token_id=config.text.eos_token_id, decoder_start_token_id=config.text.decoder_start_token_id,
        )

    # ---- properties ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.image_projection.device

    @property
    def dtype(self) -> torch.dtype:
        return self.image_projection.dtype

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    # ---- encoding --------------------------------------------------------------------------------
    def encode_image(self, pixel_values: torch.Tensor, whole_batch: bool = False) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels -> (B, 1 + h*w, D) visual tokens (577 at 768 px). Without
        gradients the tower sees one image at a time (no slower per image, one image's activations in
        memory) unless ``whole_batch`` (a graph export traces one call for any batch size)."""
        pixels = pixel_values.to(self.dtype)
        tower, features = self.vision_tower, get_tower(self.config.vision).features
        if torch.is_grad_enabled() or whole_batch:
            x = features(tower, pixels)  # (B, h, w, C4)
        else:
            x = torch.cat([features(tower, p[None]) for p in pixels])
        B, h, w, C = x.shape
        x = x.reshape(B, h * w, C)  # (B, h*w, C4), row-major grid
        x = x + self.image_pos_embed(h, w).to(x.dtype) + self.visual_temporal_embed(0).to(x.dtype)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)  # (B, 1 + h*w, C4): [pooled, grid]
        x = x @ self.image_projection.to(x.dtype)  # (B, 1 + h*w, D)
        return self.image_proj_norm(x)

    def encoder_inputs(self, pixel_values, input_ids, attention_mask=None, image_embeds=None):
        """Visual tokens followed by the prompt's embeddings, and the mask covering both.

        ``input_ids`` are the prompt tokens only (``<s> ... </s>``, right-padded in a batch);
        ``image_embeds`` (from :meth:`encode_image`) skips the tower when given."""
        if image_embeds is None:
            image_embeds = self.encode_image(pixel_values)
        text_embeds = self.get_input_embeddings()(input_ids)  # (B, T, D)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        B, N = image_embeds.shape[:2]
        if text_embeds.shape[0] != B:
            raise ValueError(f"{B} images but {text_embeds.shape[0]} prompts: pass one prompt per image")
        embeds = torch.cat([image_embeds.to(text_embeds.dtype), text_embeds], dim=1)  # (B, N + T, D)
        mask = torch.cat([attention_mask.new_ones(B, N), attention_mask], dim=1)  # (B, N + T)
        return embeds, mask

    # ---- training / scoring ----------------------------------------------------------------------
    def forward(self, pixel_values=None, input_ids=None, attention_mask=None, decoder_input_ids=None,
                labels=None, decoder_attention_mask=None, image_embeds=None):
        """Logits for ``decoder_input_ids`` (or teacher-forced ``labels``) and, with labels, the mean
        token cross-entropy. Labels equal to -100 or the pad id never count."""
        pad = self.config.text.pad_token_id
        if labels is not None:
            labels = labels.masked_fill(labels == pad, -100)
            if decoder_input_ids is None:
                decoder_input_ids = shift_tokens_right(labels, pad, self.config.text.decoder_start_token_id)
        embeds, mask = self.encoder_inputs(pixel_values, input_ids, attention_mask, image_embeds)
        out = self.language_model(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=decoder_input_ids,
                                  decoder_attention_mask=decoder_attention_mask, use_cache=False)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(out.logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        return Florence2Output(loss=loss, logits=out.logits,
                               encoder_last_hidden_state=out.encoder_last_hidden_state,
                               encoder_attention_mask=mask)

    # ---- generation ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, pixel_values=None, input_ids=None, attention_mask=None, image_embeds=None):
        """Run the tower and the BART encoder once: ``(encoder_outputs, encoder_attention_mask)``, to
        pass to :meth:`generate` as ``encoded=`` (and to ``florence.generation.sequence_log_probs``)."""
        embeds, mask = self.encoder_inputs(pixel_values, input_ids, attention_mask, image_embeds)
        encoder = self.language_model.get_encoder()
        if len(embeds) == 1:
            return encoder(inputs_embeds=embeds, attention_mask=mask), mask
        # one input at a time: the same numbers as the batch (each row attends only to itself), less
        # memory, and no slower on CPU
        hidden = torch.cat([encoder(inputs_embeds=e[None], attention_mask=m[None]).last_hidden_state
                            for e, m in zip(embeds, mask)])
        return BaseModelOutput(last_hidden_state=hidden), mask

    @torch.no_grad()
    def generate(self, pixel_values=None, input_ids=None, attention_mask=None, image_embeds=None,
                 generation_config: GenerationConfig | None = None, encoded=None, **generation_kwargs):
        """Token ids (or a transformers generate output with ``return_dict_in_generate=True``).

        Defaults are the published ones (3 beams, up to 1024 new tokens, no_repeat_ngram_size=3,
        forced ``<s>`` first and ``</s>`` last); any transformers generation argument overrides them.
        The image and the encoder run once per call (or not at all with ``encoded=`` from
        :meth:`encode`); beams reuse the encoder output."""
        config = copy.deepcopy(generation_config or self.generation_config)
        other_kwargs = config.update(**generation_kwargs)  # e.g. logits_processor, stopping_criteria
        encoder_outputs, mask = encoded if encoded is not None else self.encode(
            pixel_values, input_ids, attention_mask, image_embeds)
        # generate expands encoder outputs for beams in place: hand it a copy
        encoder_outputs = BaseModelOutput(last_hidden_state=encoder_outputs.last_hidden_state)
        return self.language_model.generate(encoder_outputs=encoder_outputs, attention_mask=mask,
                                            generation_config=config, **other_kwargs)

    def resize_token_embeddings(self, num_tokens: int):
        """Grow (or shrink) the shared vocabulary, e.g. for a task plugin's new special tokens; new
        rows start at the mean of the old ones (in the embeddings and in an untied output layer):
        deterministic, so two exports of one checkpoint are the same file. Keeps the config in step."""
        lm = self.language_model
        means = [w.detach().float().mean(0) for w in (lm.get_input_embeddings().weight, lm.lm_head.weight)]
        old = lm.get_input_embeddings().weight.shape[0]
        lm.resize_token_embeddings(num_tokens, mean_resizing=False)
        with torch.no_grad():
            for weight, mean in zip((lm.get_input_embeddings().weight, lm.lm_head.weight), means):
                weight[old:] = mean.to(weight.dtype)
        self.config.text.vocab_size = num_tokens
        return self.get_input_embeddings()

    # ---- checkpoints -----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_hub_id, dtype=None, device=None) -> "Florence2ForConditionalGeneration":
        """Load a folder (``config.json`` + ``model.safetensors`` / sharded safetensors /
        ``pytorch_model.bin``) in Microsoft's hub layout, the transformers-native layout or ours; a hub
        id downloads through huggingface_hub. ``dtype`` defaults to float32. Anything but an exact
        match of the file and the config's model is refused, naming the keys."""
        folder = resolve_folder(path_or_hub_id)
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise CheckpointError(f"{folder} has no config.json")
        try:
            config = Florence2Config.from_json_file(config_file)
        except (ConfigError, KeyError, TypeError) as e:
            raise CheckpointError(f"{config_file} is not a usable Florence-2 config: {e}") from e
        state = read_state_dict(folder)
        layout = detect_layout(state)
        with torch.device("meta"):  # no random initialisation of weights the file replaces
            model = cls(config)
        load_state_dict_strict(model, convert_state_dict(state, layout, "florence"),
                               source=f"{folder} ({layout} layout)", assign=True)
        return model.to(device=device, dtype=dtype or torch.float32).eval()

    def save_pretrained(self, folder, layout: str = "native"):
        """Write ``config.json`` + ``model.safetensors``. ``layout="native"`` (default) is readable by
        ``transformers.Florence2ForConditionalGeneration`` too; ``"microsoft"`` is the hub layout
        (``"florence"``: our key names, the native config dialect)."""
        write_state_dict(state_dict_to_save(self, layout), folder)
        self.config.save(folder, dialect="microsoft" if layout == "microsoft" else "native")
