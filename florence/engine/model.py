"""The mmengine face of Florence-2: a ``BaseModel`` with its data preprocessor.

``mode="loss"`` returns the token cross-entropy (pad labels never count); ``mode="predict"``
generates, parses through each sample's task plugin and returns the samples with ``pred``
filled in for the metrics.
"""
from __future__ import annotations

import importlib
import math

import torch
from mmengine.model import BaseDataPreprocessor, BaseModel

from ..inference import add_task_tokens, generate_texts
from ..models import Florence2ForConditionalGeneration
from ..processing import Florence2Processor, build_tokenizer, load_tokenizer
from ..processing.quantizer import NUM_BINS, loc_token
from ..registry import MODELS
from ..task import get_task

__all__ = ["Florence2Model", "Florence2DataPreprocessor", "build_tokenizer_from_cfg"]


def build_tokenizer_from_cfg(cfg, pretrained=None):
    """A tokenizer from a folder path, from ``dict(texts_from="module:function", vocab_size=N)`` (a
    byte-level BPE trained offline on that function's texts; deterministic), or from the
    ``pretrained`` checkpoint folder when ``cfg`` is None."""
    if cfg is None:
        if pretrained is None:
            raise ValueError("give tokenizer= (a folder, or dict(texts_from=..., vocab_size=...)) or pretrained=")
        from ..checkpoint import resolve_folder

        return load_tokenizer(resolve_folder(pretrained))
    if isinstance(cfg, str):
        return load_tokenizer(cfg)
    if isinstance(cfg, dict) and "texts_from" in cfg:
        module, _, name = cfg["texts_from"].partition(":")
        texts = getattr(importlib.import_module(module), name)()
        return build_tokenizer(texts, vocab_size=cfg.get("vocab_size", 1000))
    raise ValueError(f"tokenizer must be a folder or dict(texts_from='module:function', vocab_size=N), got {cfg!r}")


class Florence2DataPreprocessor(BaseDataPreprocessor):
    """Stacks pixels, tokenises prompts and targets per batch (right padding), and makes labels:
    ``<s> target </s>`` with padding set to -100."""

    def __init__(self, tokenizer, max_prompt_tokens: int = 256, max_target_tokens: int = 1024):
        super().__init__()
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.max_target_tokens = max_target_tokens

    def _tokenize(self, texts, max_length):
        return self.tokenizer(list(texts), padding=True, padding_side="right", truncation=True,
                              max_length=max_length, return_tensors="pt")

    def forward(self, data: dict, training: bool = False) -> dict:
        samples = data["data_samples"]
        pixels = data["inputs"]
        pixels = torch.stack(pixels) if isinstance(pixels, (list, tuple)) else pixels
        prompts = self._tokenize([s.prompt for s in samples], self.max_prompt_tokens)
        out = dict(pixel_values=pixels, input_ids=prompts["input_ids"], attention_mask=prompts["attention_mask"],
                   data_samples=samples)
        if training:
            targets = self._tokenize([s.target for s in samples], self.max_target_tokens)
            out["labels"] = targets["input_ids"].masked_fill(targets["attention_mask"] == 0, -100)
        return self.cast_data(out)


def sinusoidal_location_init_(model, tokenizer, scale: float | None = None):
    """Give ``<loc_0>`` ... ``<loc_999>`` embeddings that vary smoothly with the bin (sines and
    cosines of the bin index at geometric frequencies), so neighbouring bins start close and the
    tied output layer's location logits are smooth: from-scratch training learns coordinates far
    faster than with independent random rows."""
    emb = model.get_input_embeddings().weight
    d = emb.shape[1]
    ids = tokenizer.convert_tokens_to_ids([loc_token(i) for i in range(NUM_BINS)])
    pos = torch.arange(NUM_BINS, dtype=torch.float32)[:, None] / NUM_BINS
    freqs = torch.exp(torch.linspace(0, math.log(NUM_BINS / 4), d // 2))[None] * math.pi
    table = torch.cat([torch.sin(pos * freqs), torch.cos(pos * freqs)], dim=1)
    table = table * (scale if scale is not None else emb.detach().std().item() * math.sqrt(2))
    with torch.no_grad():
        emb[ids, : table.shape[1]] = table.to(emb.dtype)


@MODELS.register_module()
class Florence2Model(BaseModel):
    """Florence-2 for mmengine's Runner.

    Args:
        model: config of :class:`Florence2ForConditionalGeneration` (e.g. ``dict(preset="tiny")``;
            ``vocab_size`` defaults to the tokenizer's size).
        pretrained: a checkpoint folder or hub id to start from instead (either layout).
        tokenizer: see :func:`build_tokenizer_from_cfg` (default: the pretrained folder's).
        generation: generation arguments for ``mode="predict"`` (default: the checkpoint's).
        block_location_ngrams: the published n-gram blocking over location tokens (default off).
        location_init: ``"sinusoidal"`` to initialise location-token embeddings smoothly (from scratch).
        max_prompt_tokens, max_target_tokens: truncation lengths.
    """

    def __init__(self, model: dict | None = None, pretrained: str | None = None, tokenizer=None,
                 generation: dict | None = None, block_location_ngrams: bool = False,
                 location_init: str | None = None, max_prompt_tokens: int = 256, max_target_tokens: int = 1024,
                 init_cfg=None):
        tokenizer = build_tokenizer_from_cfg(tokenizer, pretrained)
        super().__init__(data_preprocessor=Florence2DataPreprocessor(tokenizer, max_prompt_tokens, max_target_tokens),
                         init_cfg=init_cfg)
        if (model is None) == (pretrained is None):
            raise ValueError("Florence2Model needs exactly one of model=dict(...) (from scratch) or pretrained=PATH")
        if pretrained is not None:
            self.model = Florence2ForConditionalGeneration.from_pretrained(pretrained)
        else:
            cfg = dict(model)
            cfg.setdefault("vocab_size", len(tokenizer))
            self.model = Florence2ForConditionalGeneration(cfg)
        if location_init == "sinusoidal":
            sinusoidal_location_init_(self.model, tokenizer)
        elif location_init is not None:
            raise ValueError(f"location_init must be None or 'sinusoidal', got {location_init!r}")
        add_task_tokens(self.model, tokenizer)
        self.processor = Florence2Processor(tokenizer)
        self.generation = dict(generation or {})
        self.block_location_ngrams = block_location_ngrams

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def forward(self, pixel_values, input_ids, attention_mask=None, labels=None, data_samples=None,
                mode: str = "tensor"):
        if mode == "loss":
            return {"loss": self.model(pixel_values, input_ids, attention_mask, labels=labels).loss}
        if mode == "predict":
            return self.predict(pixel_values, input_ids, attention_mask, data_samples)
        if mode == "tensor":
            return self.model(pixel_values, input_ids, attention_mask, labels=labels).logits
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def predict(self, pixel_values, input_ids, attention_mask, data_samples):
        texts, scores = generate_texts(self.model, self.processor, pixel_values, input_ids, attention_mask,
                                       block_location_ngrams=self.block_location_ngrams, **self.generation)
        for sample, text, sc in zip(data_samples, texts, scores):
            sample.text = text
            sample.pred = get_task(sample.task).decode_output(text, sample.image_size, sc)
        return data_samples
