"""Tokenizer: BART ids for the special tokens, the 1024 Florence tokens kept whole, offline
building, and loading from a folder in both published forms (tokenizer.json or vocab+merges)."""
import json

import pytest
import torch
from PIL import Image

from florence.processing import FLORENCE_TOKENS, Florence2Processor, build_tokenizer, load_tokenizer


def test_special_token_ids(tokenizer):
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in FLORENCE_TOKENS]
    assert ids == list(range(ids[0], ids[0] + 1024))  # contiguous, in Microsoft's order


def test_location_tokens_are_single_tokens(tokenizer):
    text = "a cat<loc_0><loc_999><loc_500><sep><poly></poly>"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2
    loc = [tokenizer.convert_tokens_to_ids(t) for t in ("<loc_0>", "<loc_999>", "<loc_500>", "<sep>")]
    assert ids[-7:-3] == loc
    assert tokenizer.decode(ids, skip_special_tokens=False) == "<s>" + text + "</s>"


def test_folder_round_trip_vocab_merges_and_tokenizer_json(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "full")
    assert (tmp_path / "full" / "tokenizer.json").is_file()
    # a BART-style folder: vocab.json + merges.txt only, Florence tokens NOT included (as in bart-base)
    base = build_tokenizer(["What does the image describe?"], vocab_size=300)
    vocab = {t: i for t, i in base.get_vocab().items() if i < len(base) - 1024}
    (tmp_path / "bart").mkdir()
    (tmp_path / "bart" / "vocab.json").write_text(json.dumps(vocab))
    merges = json.loads(base.backend_tokenizer.to_str())["model"]["merges"]
    (tmp_path / "bart" / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges))
    for folder, reference in ((tmp_path / "full", tokenizer), (tmp_path / "bart", base)):
        loaded = load_tokenizer(folder)
        text = "Locate the phrases in the caption: a cat<loc_3><loc_4>"
        assert loaded(text)["input_ids"] == reference(text)["input_ids"]
        assert len(loaded) == len(reference)


def test_missing_tokenizer(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_tokenizer(tmp_path)


def test_processor_pads_right_and_decodes(tokenizer):
    proc = Florence2Processor(tokenizer)
    out = proc(images=[Image.new("RGB", (50, 40)), Image.new("RGB", (20, 30))],
               text=["What does the image describe?", "hi"])
    assert out["pixel_values"].shape == (2, 3, 768, 768) and out["image_sizes"] == [(50, 40), (20, 30)]
    mask = out["attention_mask"]
    assert mask[0].all() and not mask[1].all() and (out["input_ids"][1][mask[1] == 0] == 1).all()
    assert mask[1].tolist() == sorted(mask[1].tolist(), reverse=True)  # right padding
    assert proc.batch_decode(torch.tensor([[0, 5, 2]]))[0].startswith("<s>")
    with pytest.raises(ValueError, match="one prompt per image"):
        proc(images=[Image.new("RGB", (5, 5))], text=["a", "b"])
