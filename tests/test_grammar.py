"""Task grammars as decoding constraints (``grammar=True``, the default): every task's targets are in its grammar;
a random model's constrained outputs are well-formed for every task (greedy and beams, boxes
ordered, finished before ``max_new_tokens``), where its free outputs are not; a trained model's
outputs that were already well-formed keep their token ids."""
import random

import numpy as np
import pytest
import torch
from PIL import Image

import florence
from florence.grammar import GrammarLogitsProcessor, count_malformed, output_letters
from florence.task import Grammar, list_tasks
from helpers import same_result


@pytest.fixture(scope="module")
def random_pipe(tiny_folder):
    return florence.pipeline(tiny_folder, dtype="float32")


def _ids(pipe, text: str) -> list[int]:
    return pipe.processor.tokenizer(text.replace("<pad>", ""), add_special_tokens=False)["input_ids"]


def test_every_tasks_targets_are_in_its_grammar(random_pipe):
    """The grammar each kind declares accepts what training teaches (random examples of every task):
    constraining can only remove outputs the model was never taught."""
    rng = random.Random(0)
    tok, loc = random_pipe.processor.tokenizer, random_pipe.processor.location_token_ids
    for task in list_tasks():
        assert task.grammar is not None, task
        for _ in range(20):
            _, annotation = task.example(rng, (640, 480))
            ids = [tok.bos_token_id, *tok(task.encode_target(annotation, (640, 480)), add_special_tokens=False)
                   ["input_ids"], tok.eos_token_id]
            items, bad, whole = count_malformed(ids, task.grammar, tok, loc)
            assert whole and bad == 0, (task.token, output_letters(ids, tok, loc))


def test_malformed_items_are_counted_on_tokens(random_pipe):
    tok, loc = random_pipe.processor.tokenizer, random_pipe.processor.location_token_ids
    boxes = florence.get_task("<OD>").grammar
    ok = _ids(random_pipe, "<s>car<loc_1><loc_2><loc_3><loc_4>dog<loc_5><loc_6><loc_7><loc_8></s>")
    assert count_malformed(ok, boxes, tok, loc) == (2, 0, True)
    three = _ids(random_pipe, "<s>car<loc_1><loc_2><loc_3>dog<loc_5><loc_6><loc_7><loc_8></s>")
    assert count_malformed(three, boxes, tok, loc) == (2, 1, False)
    backwards = _ids(random_pipe, "<s>car<loc_9><loc_2><loc_3><loc_4></s>")  # x2 < x1
    assert count_malformed(backwards, boxes, tok, loc) == (1, 1, False)
    polygon = florence.get_task("<REFERRING_EXPRESSION_SEGMENTATION>").grammar
    two_points = _ids(random_pipe, "<s><loc_1><loc_2><loc_3><loc_4></s>")
    assert count_malformed(two_points, polygon, tok, loc)[1:] == (1, False)


def _random_image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8))


def _inputs(task):
    return {None: None, "text": "a red square", "region": [4, 4, 40, 30]}[task.input_kind]


@pytest.mark.parametrize("num_beams", [1, 3])
def test_a_random_models_constrained_outputs_are_well_formed_for_every_task(random_pipe, num_beams):
    tok, loc = random_pipe.processor.tokenizer, random_pipe.processor.location_token_ids
    tasks = list_tasks()
    images = [_random_image(k) for k in range(len(tasks))]
    prompts = [t.prompt(_inputs(t), im.size) for t, im in zip(tasks, images)]
    gen = dict(max_new_tokens=30, num_beams=num_beams)
    free, _ = random_pipe.generate_texts(images, prompts, **gen)
    constrained, _ = random_pipe.generate_texts(
        images, prompts, **random_pipe._constrained({"classes": None}, tasks, gen))
    free_bad = 0
    for task, a, b in zip(tasks, free, constrained):
        free_bad += count_malformed(_ids(random_pipe, a), task.grammar, tok, loc)[1]
        items, bad, whole = count_malformed(_ids(random_pipe, b), task.grammar, tok, loc)
        assert bad == 0 and whole, (task.token, b)
    assert free_bad > 0  # what the grammar is for


def test_the_pipeline_and_records_take_grammar(random_pipe):
    """On by default; grammar=False (a pipeline's default or a call's) is the published decoding."""
    image = _random_image(5)
    gen = dict(max_new_tokens=30, num_beams=1)
    kept = random_pipe(image, "<OD>", **gen)
    assert kept == random_pipe(image, "<OD>", grammar=True, **gen)
    free = random_pipe(image, "<OD>", grammar=False, **gen)
    assert free != kept  # this random model's free <OD> output is malformed
    off = florence.Pipeline(random_pipe.model, random_pipe.processor, grammar=False)
    assert off(image, "<OD>", **gen) == free
    assert off(image, "<OD>", grammar=True, **gen) == kept
    assert next(off.records([image], "<OD>", grammar=True, **gen))["result"] == kept["<OD>"]
    assert next(random_pipe.records([image], "<OD>", **gen))["result"] == kept["<OD>"]


def test_boxes_keep_x2_at_least_x1():
    """The step mask itself: after x1 = bin 500, bins below 500 are masked for x2; after y1 = 300,
    below 300 for y2; a label then a box's start is unconstrained in x."""
    from florence.processing import build_tokenizer

    tok = build_tokenizer(["car"], vocab_size=300)
    loc = tok.convert_tokens_to_ids([f"<loc_{k}>" for k in range(1000)])
    proc = GrammarLogitsProcessor(tok, Grammar("(T+(L{4})+)*E", boxes=True), loc)
    car = tok("car", add_special_tokens=False)["input_ids"]
    start = [tok.eos_token_id, tok.bos_token_id, *car]
    vocab = len(tok)

    def allowed(row):
        out = proc(torch.tensor([row]), torch.zeros(1, vocab))[0]
        return {k for k, t in enumerate(loc) if out[t] == 0}

    assert allowed(start) == set(range(1000))
    assert allowed(start + [loc[500]]) == set(range(1000))
    assert allowed(start + [loc[500], loc[300]]) == set(range(500, 1000))
    assert allowed(start + [loc[500], loc[300], loc[700]]) == set(range(300, 1000))
    assert allowed(start + [loc[500], loc[300], loc[700], loc[400]]) == set(range(1000))  # a next box


@pytest.mark.parametrize("num_beams", [1, 3])
def test_the_mask_of_a_region_stays_inside_the_region(random_pipe, num_beams):
    """<REGION_TO_SEGMENTATION>'s polygon keeps inside its region with the grammar on (per row, in a
    batch mixing regions and tasks); a random model's free polygon does not."""
    from florence.task import QUANTIZER

    images = [_random_image(k) for k in range(3)]
    regions = [[4, 4, 30, 20], [30, 10, 60, 44], None]
    tasks = ["<REGION_TO_SEGMENTATION>", "<REGION_TO_SEGMENTATION>", "<OD>"]
    gen = dict(max_new_tokens=40, num_beams=num_beams)
    got = random_pipe(images, tasks, regions, **gen)
    free = random_pipe(images[:2], tasks[:2], regions[:2], grammar=False, **gen)
    outside = 0
    for out, region, image, loose in zip(got, regions, images, free):
        # the region's bins, as the prompt has them, back in pixels: where the points may be
        x1, y1, x2, y2 = QUANTIZER.dequantize(QUANTIZER.quantize_box(region, image.size), image.size)
        w, h = image.size[0] / 1000, image.size[1] / 1000  # half a bin each side of a bin's centre
        points = [p for poly in out["<REGION_TO_SEGMENTATION>"]["polygons"] for part in poly for p in
                  zip(part[0::2], part[1::2])]
        assert points and all(x1 - w <= x <= x2 + w and y1 - h <= y <= y2 + h for x, y in points), (region, points)
        outside += sum(not (x1 - w <= x <= x2 + w and y1 - h <= y <= y2 + h) for poly in
                       loose["<REGION_TO_SEGMENTATION>"]["polygons"] for part in poly
                       for x, y in zip(part[0::2], part[1::2]))
    assert outside > 0  # what the constraint is for
    same_result(got[2], random_pipe(images[2], "<OD>", **gen))  # the row without a region is as alone


def test_the_region_mask_alternates_x_and_y_per_row():
    """The step mask: inside region bins (100, 200, 300, 400) x tokens are 100..300 and y tokens
    200..400, restarting with x after <sep>; a row given no region is free."""
    from florence.processing import build_tokenizer
    from florence.task.base import POLYGON

    tok = build_tokenizer(["car"], vocab_size=300)
    loc = tok.convert_tokens_to_ids([f"<loc_{k}>" for k in range(1000)])
    grammar = Grammar(f"{POLYGON}E", item_locations=None, inside=True)
    proc = GrammarLogitsProcessor(tok, [grammar, grammar], loc, regions=[(100, 200, 300, 400), None])
    start = [tok.eos_token_id, tok.bos_token_id]

    def allowed(row, r=0):
        out = proc(torch.tensor([row, row]), torch.zeros(2, len(tok)))[r]
        return {k for k, t in enumerate(loc) if out[t] == 0}

    x, y = set(range(100, 301)), set(range(200, 401))
    assert allowed(start) == x and allowed(start, 1) == set(range(1000))
    assert allowed(start + [loc[150]]) == y
    assert allowed(start + [loc[150], loc[250]]) == x
    sep = tok.convert_tokens_to_ids("<sep>")
    row = start + [loc[150], loc[250]] * 3 + [sep]
    assert allowed(row) == x and allowed(row + [loc[120]]) == y


def test_a_region_given_backwards_is_kept_to_forwards():
    from florence.generation import _regions

    grammar = florence.get_task("<REGION_TO_SEGMENTATION>").grammar
    loc = list(range(100, 1100))  # the location tokens' ids, in bin order
    ids = torch.tensor([[7, loc[500], loc[400], loc[100], loc[50], 8], [7, 8, 8, 8, 8, 8]])
    assert _regions([grammar, grammar], ids, loc) == [(100, 50, 500, 400), None]
    assert _regions([florence.get_task("<OD>").grammar] * 2, ids, loc) is None


def test_a_row_before_bos_and_a_task_without_grammar_are_free(random_pipe):
    tok, loc = random_pipe.processor.tokenizer, random_pipe.processor.location_token_ids
    proc = GrammarLogitsProcessor(tok, [None, florence.get_task("<OD>").grammar], loc)
    scores = torch.zeros(2, len(tok))
    out = proc(torch.tensor([[tok.eos_token_id, tok.bos_token_id], [tok.eos_token_id, tok.bos_token_id]]), scores)
    assert torch.isfinite(out[0]).all() and not torch.isfinite(out[1]).all()
    out = proc(torch.tensor([[tok.eos_token_id], [tok.eos_token_id]]), scores)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("num_beams", [1, 3])
def test_a_trained_models_well_formed_outputs_keep_their_token_ids(trained_folder, num_beams):
    """The trained tiny model (OD and open-vocabulary detection on its scenes): with the grammar on,
    the same generated texts (token for token) for every one of its outputs that was well-formed."""
    pipe = florence.pipeline(trained_folder[0], dtype="float32")
    tok, loc = pipe.processor.tokenizer, pipe.processor.location_token_ids
    samples = trained_folder[1]
    tasks = [florence.get_task(s["task"]) for s in samples] + [florence.get_task("<OD>")] * len(samples)
    images = [s["image"] for s in samples] * 2
    inputs = [s["text_input"] for s in samples] + [None] * len(samples)
    prompts = [t.prompt(x, im.size) for t, x, im in zip(tasks, inputs, images)]
    gen = dict(max_new_tokens=40, num_beams=num_beams)
    free, _ = pipe.generate_texts(images, prompts, **gen)
    kept, _ = pipe.generate_texts(images, prompts, **pipe._constrained({"classes": None}, tasks, gen))
    well = [count_malformed(_ids(pipe, t), task.grammar, tok, loc)[2] for t, task in zip(free, tasks)]
    assert sum(well) >= len(free) - 1, free
    assert [k for k, w in zip(kept, well) if w] == [f for f, w in zip(free, well) if w]


def test_item_scores_are_label_probability_times_location_mass(random_pipe):
    """location_scores on a row with known distributions: a labelled box scores P(label) times the
    geometric mean of each coordinate's mass within a quarter of the box's width (x) or height (y);
    a quad's eight tokens are one item; a polygon's parts across <sep> are one item."""
    import math

    from florence.generation import location_scores

    tok, loc = random_pipe.processor.tokenizer, random_pipe.processor.location_token_ids
    label = tok("car", add_special_tokens=False)["input_ids"]
    uniform = torch.full((1000,), -math.log(1000))

    def scored(text_ids, label_probs, task, size=(1000, 1000)):
        ids = [tok.eos_token_id, tok.bos_token_id, *text_ids, tok.eos_token_id][1:]  # after the decoder start
        log_probs = torch.zeros(len(ids))
        for k, p in zip(range(1, 1 + len(label_probs)), label_probs):
            log_probs[k] = math.log(p)
        values = location_scores(ids, log_probs, uniform.expand(len(ids), 1000), tok, loc, task.grammar)
        text = tok.decode([tok.bos_token_id, *text_ids, tok.eos_token_id])
        return task.regions(task.decode_output(text, size, values))

    box = [loc[100], loc[200], loc[300], loc[260]]  # 200 bins wide, 60 high: windows 50 and 15
    got = scored(label + box, [0.8] + [0.5] * (len(label) - 1), florence.get_task("<OD>"))
    label_p = math.exp(np.mean([math.log(0.8)] + [math.log(0.5)] * (len(label) - 1)))
    assert got[0].score == pytest.approx(label_p * math.sqrt(101 / 1000 * 31 / 1000), rel=1e-5)
    quad = [loc[b] for b in (100, 200, 300, 200, 300, 260, 100, 260)]
    got = scored(label + quad, [0.9] * len(label), florence.get_task("<OCR_WITH_REGION>"))
    assert len(got) == 1 and got[0].score == pytest.approx(0.9 * math.sqrt(101 / 1000 * 31 / 1000), rel=1e-5)
    sep = tok.convert_tokens_to_ids("<sep>")
    part = [loc[b] for b in (100, 100, 300, 100, 200, 300)]  # 200 x 200: windows 50
    got = scored(part + [sep] + part, [], florence.get_task("<REFERRING_EXPRESSION_SEGMENTATION>"))
    assert len(got) == 1 and got[0].score == pytest.approx(101 / 1000, rel=1e-5)
    # malformed rows (a random model's, decoded without the grammar): a second <s>, padding, a lone
    # location token: one value per location token, no error
    ids = [tok.bos_token_id, *label, tok.bos_token_id, *box, loc[7], tok.pad_token_id, *box, tok.eos_token_id]
    values = location_scores(ids, torch.zeros(len(ids)), uniform.expand(len(ids), 1000), tok, loc,
                             florence.get_task("<OD>").grammar)
    assert len(values) == 9 and all(v <= 0 for v in values)


def test_a_trained_models_right_boxes_score_high(trained_folder):
    """What a user reads a score as: boxes that match a ground-truth box of their label score well
    above the data engine's default threshold (0.3), which a box's location-token probability alone
    never reached."""
    from florence.evaluation.functions import box_iou

    pipe = florence.pipeline(trained_folder[0], dtype="float32")
    right = []
    for sample in [s for s in trained_folder[1] if s["task"] == "<OD>"]:
        out = pipe(sample["image"], "<OD>", max_new_tokens=40, num_beams=1)["<OD>"]
        truth = list(zip(sample["annotation"]["bboxes"], sample["annotation"]["labels"]))
        right += [s for b, label, s in zip(out["bboxes"], out["labels"], out["scores"])
                  if any(label == t and box_iou(b, g) >= 0.5 for g, t in truth)]
    assert len(right) >= 4 and min(right) > 0.3, right
