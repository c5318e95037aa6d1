"""Text outputs: captions, OCR, what a region is."""
from __future__ import annotations

from ...parsing import clean_text
from ..base import Grammar, Task
from .common import random_phrase, random_box, _text


class TextTask(Task):
    """Output is text (captions, OCR, region category / description / OCR). The annotation is a
    string, or a list of reference strings (evaluation against several captions): the first is the
    training target."""
    output_kind = "text"

    @property
    def grammar(self) -> Grammar:
        """Text; a region task may end it with a box (the published ``<REGION_TO_CATEGORY>`` does)."""
        return Grammar("T*(L{4})?E" if self.input_kind == "region" else "T*E", boxes=True)

    def encode_target(self, annotation, image_size) -> str:
        if isinstance(annotation, (list, tuple)) and annotation:
            annotation = annotation[0]
        return _text(self.token, annotation, "a string").strip()

    def decode_output(self, text, image_size, scores=None) -> str:
        return clean_text(text).strip()

    def example(self, rng, image_size):
        text_input = random_box(rng, image_size) if self.input_kind == "region" else None
        return text_input, random_phrase(rng, rng.randint(1, 6))
