"""``Florence2Processor``: images and prompt text -> model inputs; generated ids -> text."""
from __future__ import annotations

import copy
from pathlib import Path

from .image import ImageProcessor
from .quantizer import NUM_BINS, QUANTIZER, loc_token
from .tokenizer import load_tokenizer

__all__ = ["Florence2Processor"]


class Florence2Processor:
    """Pairs the published image preprocessing with the checkpoint's tokenizer.

    >>> proc = Florence2Processor(build_tokenizer(["a red square"]))
    >>> batch = proc(images=[img1, img2], text=["What does the image describe?"] * 2)
    >>> sorted(batch)
    ['attention_mask', 'image_sizes', 'input_ids', 'pixel_values']

    ``text`` is the prompt as the model reads it (task tokens such as ``<OD>`` are expanded to
    their natural-language prompts by the task plugins). Prompts are right-padded; the model's
    encoder mask covers the image tokens plus each prompt's own mask.
    """

    def __init__(self, tokenizer, image_processor: ImageProcessor | None = None):
        self.tokenizer = tokenizer
        self.image_processor = image_processor or ImageProcessor()
        self.quantizer = QUANTIZER  # the published one, shared (kept for callers of this attribute)
        self._loc_ids = None

    @classmethod
    def from_pretrained(cls, folder, **image_kwargs) -> "Florence2Processor":
        """The folder's tokenizer and its ``preprocessor_config.json`` (image size, mean, std; the
        published 768 px without one); ``image_kwargs`` override the file."""
        return cls(load_tokenizer(Path(folder)), ImageProcessor.from_pretrained(folder, **image_kwargs))

    def save_pretrained(self, folder):
        """The tokenizer files and ``preprocessor_config.json``. The tokenizer is saved without the
        truncation and padding its backend keeps from its last call (they would make the saved file
        depend on what the tokenizer encoded before: not part of the tokenizer)."""
        tokenizer = copy.deepcopy(self.tokenizer)
        tokenizer.backend_tokenizer.no_truncation()
        tokenizer.backend_tokenizer.no_padding()
        tokenizer.save_pretrained(str(folder))
        self.image_processor.save_pretrained(folder)

    def __call__(self, images=None, text=None, max_length: int | None = None):
        out = {}
        if images is not None:
            out["pixel_values"], out["image_sizes"] = self.image_processor(images, return_sizes=True)
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            enc = self.tokenizer(texts, padding=True, padding_side="right", truncation=max_length is not None,
                                 max_length=max_length, return_tensors="pt")
            out["input_ids"], out["attention_mask"] = enc["input_ids"], enc["attention_mask"]
            if images is not None and len(texts) != len(out["image_sizes"]):
                raise ValueError(f"{len(out['image_sizes'])} images but {len(texts)} prompts: "
                                 "pass one prompt per image")
        return out

    @property
    def location_token_ids(self) -> list[int]:
        """Vocabulary ids of ``<loc_0>`` ... ``<loc_999>``."""
        if self._loc_ids is None:
            ids = self.tokenizer.convert_tokens_to_ids([loc_token(i) for i in range(NUM_BINS)])
            unk = self.tokenizer.unk_token_id
            if any(i is None or i == unk for i in ids):
                raise ValueError("the tokenizer lacks the Florence-2 location tokens <loc_0>..<loc_999>")
            self._loc_ids = ids
        return self._loc_ids

    def batch_decode(self, ids, skip_special_tokens: bool = False) -> list[str]:
        """Token ids -> text; special tokens (location tokens included) are kept by default, as the
        output parsers need them."""
        return self.tokenizer.batch_decode(ids, skip_special_tokens=skip_special_tokens,
                                           clean_up_tokenization_spaces=False)
