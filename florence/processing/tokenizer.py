"""The BART byte-level BPE tokenizer with Florence-2's 1024 added tokens.

``load_tokenizer(folder)`` reads a checkpoint's tokenizer (``tokenizer.json``, or ``vocab.json`` +
``merges.txt``) and makes sure the Florence tokens are there, added the way Microsoft's processor
adds them. ``build_tokenizer(texts)`` trains a small byte-level BPE offline (``tokenizers``) with
the same special tokens and the same id layout (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3), for
tests and for models trained from scratch.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import BartTokenizer

__all__ = ["FLORENCE_TOKENS", "BART_VOCAB_SIZE", "load_tokenizer", "build_tokenizer", "add_florence_tokens"]

# In the order Microsoft's processor adds them (the misspelling "desciption" is in the real vocabulary).
FLORENCE_TOKENS = (
    ["<od>", "</od>", "<ocr>", "</ocr>"]
    + [f"<loc_{i}>" for i in range(1000)]
    + ["<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>",
       "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>",
       "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>"]
)
assert len(FLORENCE_TOKENS) == 1024


def add_florence_tokens(tokenizer):
    """Add the Florence tokens the tokenizer lacks, as special tokens (kept whole, never split)."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in FLORENCE_TOKENS if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing},
                                     replace_extra_special_tokens=False)
    return tokenizer


def load_tokenizer(folder):
    """The checkpoint folder's BART tokenizer with every Florence token present."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file():
        try:
            tok = BartTokenizer.from_pretrained(str(folder))
        except Exception as e:
            raise ValueError(f"cannot load the tokenizer in {folder}: {type(e).__name__}: {e}") from e
    else:
        raise FileNotFoundError(f"{folder} has no tokenizer (tokenizer.json, or vocab.json + merges.txt); "
                                "build one offline with florence.processing.build_tokenizer(texts)")
    return add_florence_tokens(tok)


BART_VOCAB_SIZE = 50265  # BART's byte-level BPE; the Florence tokens follow from this id on


def build_tokenizer(texts, vocab_size: int = 1000, save_dir=None, pad_to: int | None = None):
    """Train a byte-level BPE on ``texts`` (an iterable of strings) and return a BART tokenizer with
    BART's special-token ids plus the 1024 Florence tokens. ``vocab_size`` counts the BPE part; the
    Florence tokens come on top. ``pad_to`` (e.g. ``BART_VOCAB_SIZE``) fills the BPE part up to that
    size with placeholder words no text tokenizes to (`` w123``), so that the Florence tokens get their
    published ids and every id of a published-size model decodes (benchmarks on random weights).
    With ``save_dir``, writes vocab.json + merges.txt (+ tokenizer files) that :func:`load_tokenizer`
    reads back."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    model = json.loads(bpe.to_str())["model"]
    for i in range(len(model["vocab"]), pad_to or 0):  # no merge builds these: never produced by encoding
        model["vocab"][f"\u0120w{i}"] = i
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = BartTokenizer(vocab=model["vocab"], merges=merges)
    tok = add_florence_tokens(tok)
    if save_dir is not None:
        os.makedirs(save_dir, exist_ok=True)
        tok.save_pretrained(str(save_dir))
    return tok
