"""The task contract, for every registered task: published prompts, encode/decode round trips
within one location bin, and parsers that never raise on malformed text."""
import math
import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import florence
from florence.evaluation.task_metric import is_malformed
from florence.parsing import clean_text
from florence.processing.quantizer import LOC_TOKEN
from florence.task import TaskError

TASKS = florence.list_tasks()
IDS = [t.name for t in TASKS]


def test_all_published_tasks_registered():
    published = {"<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OCR>", "<OCR_WITH_REGION>", "<OD>",
                 "<DENSE_REGION_CAPTION>", "<REGION_PROPOSAL>", "<CAPTION_TO_PHRASE_GROUNDING>",
                 "<REFERRING_EXPRESSION_SEGMENTATION>", "<REGION_TO_SEGMENTATION>", "<OPEN_VOCABULARY_DETECTION>",
                 "<REGION_TO_CATEGORY>", "<REGION_TO_DESCRIPTION>", "<REGION_TO_OCR>"}
    assert published <= {t.token for t in TASKS}
    assert florence.task.plugin_errors() == []


@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_prompt_equals_published(task, native_processor):
    rng = random.Random(0)
    size = (640, 480)
    text_input, _ = task.example(rng, size)
    ours = task.prompt(text_input, size)
    given_input = "" if text_input is None else (text_input if isinstance(text_input, str)
                                                 else florence.Quantizer().box_tokens(text_input, size))
    assert ours == native_processor._construct_prompts([task.token + given_input])[0]


@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_prompt_input_checks(task):
    if task.input_kind is None:
        with pytest.raises(TaskError, match="takes no input"):
            task.prompt("unexpected text")
    else:
        with pytest.raises(TaskError, match="needs"):
            task.prompt(None)
    if task.input_kind == "region":
        assert task.prompt([64, 48, 320, 240], (640, 480)) == task.template.format(
            input="<loc_100><loc_100><loc_500><loc_500>")
        assert "<loc_1><loc_2><loc_3><loc_4>" in task.prompt("<loc_1><loc_2><loc_3><loc_4>")
        for bad in ([1, 2, 3], "<loc_1><loc_2>", "<loc_1><loc_2><loc_3><loc_1000>"):
            with pytest.raises(TaskError, match="region"):
                task.prompt(bad, (640, 480))


def close(a, b, tol):
    """Same structure; numbers within ``tol``."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= tol
    return a == b


@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_round_trip_within_one_bin(task):
    rng = random.Random(task.name)
    for _ in range(100):
        size = (rng.randint(16, 4000), rng.randint(16, 4000))
        _, annotation = task.example(rng, size)
        target = task.encode_target(annotation, size)
        assert "<loc_1000>" not in target
        decoded = task.decode_output("</s><s>" + target + "</s>", size)
        assert close(annotation, decoded, max(size) / 1000), (annotation, target, decoded)
        assert not is_malformed(decoded), decoded  # what the metrics count as invalid, never from a parser


@pytest.mark.parametrize("task", [t for t in TASKS if t.output_kind != "text"], ids=lambda t: t.name)
def test_scores_are_mean_location_log_probs(task):
    rng = random.Random(1)
    size = (500, 300)
    _, annotation = task.example(rng, size)
    text = task.encode_target(annotation, size)
    n_locs = text.count("<loc_")
    log_probs = [-0.01 * (i + 1) for i in range(n_locs)]
    out = task.decode_output(text, size, log_probs)
    assert not is_malformed(out), out
    items = [len(v) for k, v in out.items() if k in ("bboxes", "quad_boxes", "polygons")]
    assert len(out["scores"]) == sum(items) > 0
    per_item = n_locs // sum(items) if task.output_kind in ("boxes", "quads") else None
    if per_item:  # fixed-size items: item k owns location tokens [k * per_item, (k + 1) * per_item)
        for k, s in enumerate(out["scores"]):
            assert s == pytest.approx(math.exp(sum(log_probs[k * per_item:(k + 1) * per_item]) / per_item))
    assert "scores" not in task.decode_output(text, size, log_probs[:-1])  # misaligned: ignored


PIECES = ["<loc_0>", "<loc_999>", "<loc_1000>", "<loc_123456789>", "<loc_>", "<loc_-1>", "<sep>", "<poly>",
          "</poly>", "<s>", "</s>", "<pad>", "<od>", "</od>", "<", ">", "a", " red box", "é", "\n", "<loc_5",
          "loc_7>", "<<loc_3>>", "<obj>", "<ground>", " ", "0"]
malformed = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=5)), max_size=60).map("".join)


@pytest.mark.parametrize("task", TASKS, ids=IDS)
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile
@given(text=malformed, scores=st.none() | st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30),
       w=st.integers(1, 5000), h=st.integers(1, 5000))
# every failure the fuzzer found so far, run first, every time
@example(text="<loc_0><loc_0><loc_0><loc_0>", scores=None, w=1, h=1)  # a two-point polygon
@example(text="><loc_0><loc_999><loc_0><loc_0>", scores=None, w=1, h=1)  # inverted corners (y2 < y1)
def test_decode_never_raises(task, text, scores, w, h):
    """Any text (and any scores) parses to a well-formed output, never an exception. CI draws the same
    300 texts every run (tests/conftest.py's ``ci`` profile: derandomized); whoever changes a parser
    also runs the long random search: ``pytest tests/tasks/test_contract.py -k decode
    --hypothesis-profile=fuzz`` (20,000 new texts per task), and adds what it finds as an ``@example``."""
    out = task.decode_output(text, (w, h), scores)
    assert isinstance(out, (str, dict)) and not is_malformed(out), out
    if scores:  # also with one score per location token, so the scoring path runs
        n = len(LOC_TOKEN.findall(clean_text(text)))
        aligned = (scores * (n // len(scores) + 1))[:n]
        out = task.decode_output(text, (w, h), aligned)
        assert isinstance(out, (str, dict)) and not is_malformed(out), out


@pytest.mark.parametrize("task", [t for t in TASKS if t.output_kind != "text"], ids=lambda t: t.name)
def test_bad_annotations_named(task):
    with pytest.raises(TaskError, match=task.token.strip("<>")):
        task.encode_target("not a dict", (100, 100))
    key = {"boxes": "bboxes", "open_vocabulary": "bboxes", "quads": "quad_boxes", "polygons": "polygons"}[
        task.output_kind]
    with pytest.raises(TaskError, match="non-finite|numbers|coordinates"):
        task.encode_target({key: [[1, 2, float("nan"), 4, 5, 6, 7, 8]] if key != "polygons" else [[[1, float("nan"), 3, 4]]],
                            "labels": ["x"], "bboxes_labels": ["x"]}, (100, 100))


@pytest.mark.parametrize("task", [t for t in TASKS if t.output_kind in ("boxes", "open_vocabulary")],
                         ids=lambda t: t.name)
def test_inverted_box_corners_come_ordered(task):
    """x2 < x1 and y2 < y1 as generated: the rectangle the two corners span, in (x1, y1, x2, y2)
    order (the published parser returns the inverted box); the quad of OCR keeps its points."""
    out = task.decode_output("</s><s>car<loc_600><loc_800><loc_100><loc_200></s>", (1000, 500), [-0.1] * 4)
    assert out["bboxes"] == [[100.5, 100.25, 600.5, 400.25]] and out["scores"] == [pytest.approx(math.exp(-0.1))]
    assert not is_malformed(out)
    quad = florence.get_task("<OCR_WITH_REGION>").decode_output(
        "</s><s>AB<loc_600><loc_800><loc_100><loc_800><loc_100><loc_200><loc_600><loc_200></s>", (1000, 500))
    assert quad["quad_boxes"] == [[600.5, 400.25, 100.5, 400.25, 100.5, 100.25, 600.5, 100.25]]
