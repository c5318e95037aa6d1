"""Batched inference: mixed-task batches equal one-at-a-time results, scores equal transformers'
beam transition scores, and n-gram blocking leaves location tokens alone by default."""
import random

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LogitsProcessorList, NoRepeatNGramLogitsProcessor

import florence
from florence.generation import TextNoRepeatNGramLogitsProcessor, sequence_log_probs

GEN = dict(max_new_tokens=16)


def images(n, seed=0):
    rs = np.random.RandomState(seed)
    return [Image.fromarray((rs.rand(rs.randint(40, 300), rs.randint(40, 300), 3) * 255).astype(np.uint8))
            for _ in range(n)]


def strip_scores(result):
    (token, value), = result.items()
    return token, ({k: v for k, v in value.items() if k != "scores"} if isinstance(value, dict) else value)


def test_batched_mixed_tasks_equal_single(tiny_pipeline):
    tasks = florence.list_tasks()
    imgs = images(len(tasks))
    rng = random.Random(0)
    inputs = [t.example(rng, im.size)[0] for t, im in zip(tasks, imgs)]
    batched = tiny_pipeline(imgs, tasks, inputs, batch_size=8, **GEN)
    assert [next(iter(r)) for r in batched] == [t.token for t in tasks]
    located = 0
    for im, task, text_input, got in zip(imgs, tasks, inputs, batched):
        single = tiny_pipeline(im, task, text_input, **GEN)
        assert strip_scores(got) == strip_scores(single)
        value, ref = got[task.token], single[task.token]
        if isinstance(value, dict) and "scores" in value:
            located += 1
            assert np.allclose(value["scores"], ref["scores"], atol=1e-4)
            assert all(0 < s <= 1 for s in value["scores"])
    assert located >= 5  # the random model does emit locations: the comparison covers scores


def test_scores_equal_transformers_beam_transition_scores(tiny_pipeline):
    pipe = tiny_pipeline
    model, proc = pipe.model, pipe.processor
    batch = proc(images=images(2, seed=3), text=["Locate the objects with category name in the image."] * 2)
    encoded = model.encode(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    out = model.generate(encoded=encoded, num_beams=3, max_new_tokens=12, no_repeat_ngram_size=0,
                         output_scores=True, return_dict_in_generate=True)
    ref = model.language_model.compute_transition_scores(out.sequences, out.scores, out.beam_indices)
    ours = sequence_log_probs(model, encoded, out.sequences)
    is_loc = torch.isin(out.sequences[:, 1:], torch.tensor(proc.location_token_ids))
    assert is_loc.sum() >= 6
    n = ref.shape[1]
    assert torch.allclose(ours[:, :n][is_loc[:, :n]], ref[is_loc[:, :n]], atol=1e-4)


def test_text_ngram_blocker_equals_transformers_without_skips():
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 4):
        ids = torch.randint(0, 6, (5, 30), generator=g)
        scores = torch.randn(5, 8, generator=g)
        ref = NoRepeatNGramLogitsProcessor(n)(ids, scores.clone())
        assert torch.equal(TextNoRepeatNGramLogitsProcessor(n)(ids, scores.clone()), ref)


def test_text_ngram_blocker_exempts_location_tokens():
    loc = [10, 11, 12]
    blocker = TextNoRepeatNGramLogitsProcessor(3, loc)
    # a repeated location trigram (10 11 12 ... 10 11 -> 12) stays allowed
    assert torch.isfinite(blocker(torch.tensor([[2, 0, 10, 11, 12, 5, 10, 11]]), torch.zeros(1, 13))[0, 12])
    # a repeated text trigram (5 6 7 ... 5 6 -> 7) is blocked, as published
    assert blocker(torch.tensor([[2, 0, 5, 6, 7, 10, 5, 6]]), torch.zeros(1, 13))[0, 7] == -float("inf")
    # a text token after a mixed prefix is not blocked (the n-gram contains a location token)
    assert torch.isfinite(blocker(torch.tensor([[2, 0, 10, 6, 7, 9, 10, 6]]), torch.zeros(1, 13))[0, 7])


def test_block_location_ngrams_restores_published_generation(tiny_folder):
    pipe = florence.pipeline(tiny_folder, block_location_ngrams=True, scores=False)
    im = images(1, seed=5)[0]
    prompt = florence.get_task("<OD>").prompt()
    texts, _ = pipe.generate_texts([im], [prompt], max_new_tokens=24)
    b = pipe.processor(images=[im], text=[prompt])
    ref = pipe.model.generate(b["pixel_values"], b["input_ids"], b["attention_mask"], max_new_tokens=24)
    assert texts == pipe.processor.batch_decode(ref)
    with pytest.warns(DeprecationWarning, match="Pipeline.generate_texts"):  # the older name
        assert pipe.generate([im], [prompt], max_new_tokens=24)[0] == texts


def test_default_blocking_lets_location_trigrams_repeat(tiny_folder):
    """Text-only blocking (the default) lets a trigram of location tokens repeat, which the published
    blocking forbids, and still blocks every repeated trigram with a text token in it."""
    im = images(1, seed=7)[0]
    prompt = florence.get_task("<OD>").prompt()
    default = florence.pipeline(tiny_folder, scores=False)
    published = florence.pipeline(tiny_folder, block_location_ngrams=True, scores=False)
    loc = set(default.processor.location_token_ids)

    def trigrams(text):
        ids = default.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        return [tuple(t) for t in np.lib.stride_tricks.sliding_window_view(ids, 3)]

    def repeated(grams):
        return {g for g in grams if grams.count(g) > 1}

    a, _ = default.generate_texts([im], [prompt], max_new_tokens=40, num_beams=1)
    b, _ = published.generate_texts([im], [prompt], max_new_tokens=40, num_beams=1)
    again = repeated(trigrams(a[0]))
    assert any(all(t in loc for t in g) for g in again)  # a location trigram repeats
    assert all(any(t in loc for t in g) for g in again)  # no all-text trigram does
    assert a != b and not repeated(trigrams(b[0]))  # the published blocking allows no repeat at all


def test_inputs_folder_errors_and_broadcast(tiny_pipeline, tmp_path):
    for i, im in enumerate(images(2)):
        im.save(tmp_path / f"{i}.png")
    (tmp_path / "2.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.raises(ValueError, match=r"2\.jpg"):
        tiny_pipeline(tmp_path, "<CAPTION>", **GEN)
    out = tiny_pipeline(tmp_path, "<CAPTION>", errors="record", **GEN)
    assert len(out) == 3 and "<CAPTION>" in out[0] and "<CAPTION>" in out[1]
    assert "2.jpg" in out[2]["error"]
    # one pixel box for every image of a region task; one text per image for a text-input task
    out = tiny_pipeline(images(2), "<REGION_TO_CATEGORY>", [5, 5, 30, 30], **GEN)
    assert len(out) == 2
    with pytest.raises(ValueError, match="2 images but 3 text inputs"):
        tiny_pipeline(images(2), "<CAPTION_TO_PHRASE_GROUNDING>", ["a", "b", "c"], **GEN)
    with pytest.raises(florence.TaskError, match="needs a text input"):
        tiny_pipeline(images(1), "<CAPTION_TO_PHRASE_GROUNDING>", **GEN)


def test_pipeline_dtype_auto_and_bf16_run_on_any_cpu(tiny_folder):
    """``dtype="auto"`` picks bf16 only where this CPU computes it natively; an explicit bf16
    runs everywhere (through the fallbacks on CPUs without it) and parses to the same kind of result."""
    from florence import hardware

    auto = florence.pipeline(str(tiny_folder), dtype="auto")
    assert auto.model.dtype == (torch.bfloat16 if hardware.native_bf16("cpu") else torch.float32)
    with hardware.limited(onednn=[torch.float32]):  # what an AVX2-only CPU has, on any machine
        assert florence.pipeline(str(tiny_folder), dtype="auto").model.dtype == torch.float32
        bf16 = florence.pipeline(str(tiny_folder), dtype=torch.bfloat16)
        got = bf16(images(1)[0], "<OD>", **GEN)
    assert bf16.model.dtype == torch.bfloat16 and set(got["<OD>"]) >= {"bboxes", "labels"}
