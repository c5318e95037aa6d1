"""florence.regions: the score threshold and class-aware NMS of every location task, against a
plain greedy NMS written out here, and the same selection through the pipeline, the data engine's
rules and the CLI."""
import json
import random

import pytest

import florence
from florence.label.filters import ClassAwareNMS, ScoreThreshold, apply_filters
from florence.regions import select


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def greedy_nms(boxes, labels, scores, threshold) -> list[int]:
    """The textbook algorithm: highest score first, drop same-label boxes overlapping it by more."""
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept = []
    for i in order:
        if all(labels[i] != labels[k] or iou(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return sorted(kept)


def random_boxes(rng, n):
    out = []
    for _ in range(n):  # clustered, so that many overlap
        cx, cy = rng.choice([(30, 30), (60, 40), (35, 35)])
        w, h = rng.uniform(10, 30), rng.uniform(10, 30)
        x, y = cx + rng.uniform(-6, 6), cy + rng.uniform(-6, 6)
        out.append([x - w / 2, y - h / 2, x + w / 2, y + h / 2])
    return out


@pytest.mark.parametrize("seed", range(20))
def test_select_is_a_threshold_then_greedy_class_aware_nms(seed):
    rng = random.Random(seed)
    n = rng.randint(0, 12)
    out = {"bboxes": random_boxes(rng, n), "labels": [rng.choice(["cat", "dog"]) for _ in range(n)],
           "scores": [rng.random() for _ in range(n)]}
    threshold, overlap = rng.choice([0.0, 0.3, 0.6]), rng.choice([0.3, 0.5, 0.7])
    kept = [i for i in range(n) if out["scores"][i] >= threshold]
    sub = {k: [v[i] for i in kept] for k, v in out.items()}
    want = greedy_nms(sub["bboxes"], sub["labels"], sub["scores"], overlap)
    got = select(out, "<OD>", score_threshold=threshold, nms=overlap)
    assert got == {k: [v[i] for i in want] for k, v in sub.items()}
    # the data engine's rules are the same selection
    counts = {}
    assert apply_filters([ScoreThreshold(threshold), ClassAwareNMS(overlap)], out, "<OD>", (100, 100), counts) == got


def test_select_reads_every_location_kind_through_its_task():
    quads = {"quad_boxes": [[0, 0, 10, 0, 10, 5, 0, 5], [1, 0, 11, 0, 11, 5, 1, 5], [40, 40, 50, 40, 50, 45, 40, 45]],
             "labels": ["cat", "cat", "cat"], "scores": [0.5, 0.9, 0.2]}
    assert select(quads, "<OCR_WITH_REGION>", nms=0.5) == {
        "quad_boxes": [quads["quad_boxes"][1], quads["quad_boxes"][2]], "labels": ["cat", "cat"], "scores": [0.9, 0.2]}
    assert select(quads, "<OCR_WITH_REGION>", score_threshold=0.4)["scores"] == [0.5, 0.9]
    polygons = {"polygons": [[[0, 0, 10, 0, 10, 10]], [[0, 0, 10, 0, 10, 11]]], "polygons_labels": ["a", "a"],
                "bboxes": [], "bboxes_labels": [], "scores": [0.3, 0.4]}
    got = select(polygons, "<OPEN_VOCABULARY_DETECTION>", nms=0.5)
    assert got["polygons"] == [[[0, 0, 10, 0, 10, 11]]] and got["scores"] == [0.4]


def test_what_select_leaves_alone_and_what_it_refuses():
    unscored = {"bboxes": [[0, 0, 5, 5], [0, 0, 5, 5]], "labels": ["a", "a"]}
    assert select(unscored, "<OD>", score_threshold=0.9) == unscored  # no scores: nothing to threshold
    assert select(unscored, "<OD>", nms=0.5) == {"bboxes": [[0, 0, 5, 5]], "labels": ["a"]}  # the first stays
    assert select("a cat", "<CAPTION>", score_threshold=0.5, nms=0.5) == "a cat"
    scored = dict(unscored, scores=[0.1, 0.2])
    assert select(scored, "<OD>") == scored  # both off: the published output
    for kwargs, message in ((dict(score_threshold=1.5), "score_threshold must be a number in \\[0, 1\\]"),
                            (dict(nms=0), "nms must be a number in \\(0, 1\\]"),
                            (dict(nms="high"), "nms must be")):
        with pytest.raises(ValueError, match=message):
            select(scored, "<OD>", **kwargs)


@pytest.fixture(scope="module")
def pipe(trained_folder):
    return florence.pipeline(trained_folder[0], dtype="float32")


def test_the_pipeline_selects_with_its_defaults_or_the_calls(pipe, trained_folder):
    image = trained_folder[1][0]["image"]
    gen = dict(max_new_tokens=40, num_beams=1)
    full = pipe(image, "<OD>", **gen)["<OD>"]
    assert len(full["bboxes"]) >= 2 and len(full["scores"]) == len(full["bboxes"])  # something to select from
    threshold = sorted(full["scores"])[-1]  # the best one only
    want = select(full, "<OD>", score_threshold=threshold, nms=0.5)
    assert len(want["bboxes"]) == 1 and pipe(image, "<OD>", score_threshold=threshold, nms=0.5, **gen)["<OD>"] == want
    strict = florence.pipeline(trained_folder[0], dtype="float32", score_threshold=threshold, nms=0.5)
    assert strict(image, "<OD>", **gen)["<OD>"] == want
    assert strict(image, "<OD>", score_threshold=None, nms=None, **gen)["<OD>"] == full  # a call turns them off
    assert [r["result"] for r in strict.records([image], "<OD>", **gen)] == [want]
    with pytest.raises(ValueError, match="score_threshold"):
        pipe(image, "<OD>", score_threshold=-1)


def test_infer_takes_the_same_options(trained_folder, tmp_path, capsys):
    from florence.cli import main

    trained_folder[1][0]["image"].save(tmp_path / "a.png")
    runs = {}
    for name, flags in (("all", []), ("kept", ["--score-threshold", "0.95", "--nms", "0.5"])):
        out = tmp_path / f"{name}.jsonl"
        assert main(["infer", str(tmp_path / "a.png"), "--model", str(trained_folder[0]), "--task", "<OD>",
                     "--out", str(out), "--max-new-tokens", "40", "--num-beams", "1", "--dtype", "float32",
                     *flags]) == 0
        runs[name] = json.loads(out.read_text())["result"]
    assert runs["all"]["bboxes"] and runs["kept"] == select(runs["all"], "<OD>", score_threshold=0.95, nms=0.5)
    with pytest.raises(SystemExit) as e:
        main(["infer", "a.png", "--model", "m", "--task", "<OD>", "--out", "o.jsonl", "--nms", "0"])
    assert e.value.code == 2 and "--nms must be a number in (0, 1], got '0'" in capsys.readouterr().err
