"""From a batch of samples to model inputs: the tokenizer a config names and the data preprocessor
(pixels stacked, prompts and targets tokenised, labels with padding masked)."""
from __future__ import annotations

import torch
from mmengine.model import BaseDataPreprocessor

from .._lazy import named
from ..data.multitask import ImageTasks
from ..processing import build_tokenizer, load_tokenizer

__all__ = ["Florence2DataPreprocessor", "build_tokenizer_from_cfg", "call_named"]


def call_named(spec: str):
    """The result of calling the function a ``"module:function"`` string names."""
    return named(spec)()


def build_tokenizer_from_cfg(cfg, pretrained=None):
    """A tokenizer from a folder path, from ``dict(texts_from="module:function", vocab_size=N)`` (a
    byte-level BPE trained offline on that function's texts; deterministic), or from the
    ``pretrained`` checkpoint folder when ``cfg`` is None."""
    if cfg is None:
        if pretrained is None:
            raise ValueError("give tokenizer= (a folder, or dict(texts_from=..., vocab_size=...)) or pretrained=")
        from ..models.files import resolve_folder

        return load_tokenizer(resolve_folder(pretrained))
    if isinstance(cfg, str):
        return load_tokenizer(cfg)
    if isinstance(cfg, dict) and "texts_from" in cfg:
        texts = call_named(cfg["texts_from"])
        return build_tokenizer(texts, vocab_size=cfg.get("vocab_size", 1000))
    raise ValueError(f"tokenizer must be a folder or dict(texts_from='module:function', vocab_size=N), got {cfg!r}")


class Florence2DataPreprocessor(BaseDataPreprocessor):
    """Stacks pixels, tokenises prompts and targets per batch (right padding), and makes labels:
    ``<s> target </s>`` with padding set to -100. A batch holding :class:`~florence.data.ImageTasks`
    (several tasks of one image) is flattened into its samples, with ``image_index`` giving each
    sample's row of ``pixel_values``."""

    def __init__(self, tokenizer, max_prompt_tokens: int = 256, max_target_tokens: int = 1024):
        super().__init__()
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.max_target_tokens = max_target_tokens

    def _tokenize(self, texts, max_length):
        return self.tokenizer(list(texts), padding=True, padding_side="right", truncation=True,
                              max_length=max_length, return_tensors="pt")

    def forward(self, data: dict, training: bool = False) -> dict:
        """The model's inputs for a batch (``inputs``: pixels, ``data_samples``); ``training`` adds ``labels``."""
        samples, image_index = [], []
        for i, item in enumerate(data["data_samples"]):
            group = item.samples if isinstance(item, ImageTasks) else [item]
            samples.extend(group)
            image_index.extend([i] * len(group))
        pixels = data["inputs"]
        pixels = torch.stack(pixels) if isinstance(pixels, (list, tuple)) else pixels
        prompts = self._tokenize([s.prompt for s in samples], self.max_prompt_tokens)
        out = dict(pixel_values=pixels, input_ids=prompts["input_ids"], attention_mask=prompts["attention_mask"],
                   data_samples=samples)
        if len(samples) != len(pixels):  # one image per sample otherwise: nothing to record
            out["image_index"] = torch.tensor(image_index)
        if training:
            targets = self._tokenize([s.target for s in samples], self.max_target_tokens)
            out["labels"] = targets["input_ids"].masked_fill(targets["attention_mask"] == 0, -100)
        return self.cast_data(out)
