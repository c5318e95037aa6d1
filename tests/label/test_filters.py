"""The data engine's filter rules on the published output formats, with counts per rule; NMS
against a greedy NMS written from its definition."""
import random

import pytest

from florence.label.filters import (ClassAwareNMS, KnownLabels, MinBoxSize, ScoreThreshold, TextComplexity,
                                    TooManyObjects, WholeImageBoxes, apply_filters, build_filters, content_words)

SIZE = (200, 100)


def od(boxes, labels, scores=None):
    out = {"bboxes": boxes, "labels": labels}
    if scores is not None:
        out["scores"] = scores
    return out


def test_score_threshold_keeps_aligned_lists():
    out = ScoreThreshold(0.5)(od([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]], ["a", "b", "c"], [0.9, 0.2, 0.5]),
                              "<OD>", SIZE)
    assert out == od([[0, 0, 10, 10], [1, 1, 2, 2]], ["a", "c"], [0.9, 0.5])
    no_scores = od([[0, 0, 10, 10]], ["a"])
    assert ScoreThreshold(0.5)(no_scores, "<OD>", SIZE) == no_scores
    assert ScoreThreshold(0.5)("a caption", "<CAPTION>", SIZE) == "a caption"


def _iou(a, b):
    iw, ih = max(0, min(a[2], b[2]) - max(a[0], b[0])), max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def greedy_nms(boxes, labels, scores, threshold):
    """Per label: take the best remaining box, drop the ones overlapping it by more than threshold."""
    keep = []
    for label in set(labels):
        order = sorted((i for i in range(len(boxes)) if labels[i] == label), key=lambda i: -scores[i])
        while order:
            best = order.pop(0)
            keep.append(best)
            order = [i for i in order if _iou(boxes[best], boxes[i]) <= threshold]
    return sorted(keep)


def test_class_aware_nms_equals_greedy_nms_from_its_definition():
    rng = random.Random(0)
    for _ in range(20):
        boxes = []
        for _ in range(rng.randint(1, 25)):
            x, y = rng.uniform(0, 150), rng.uniform(0, 60)
            boxes.append([x, y, x + rng.uniform(5, 50), y + rng.uniform(5, 40)])
        labels = [rng.choice("ab") for _ in boxes]
        scores = [rng.random() for _ in boxes]
        out = ClassAwareNMS(0.5)(od(boxes, labels, scores), "<OD>", SIZE)
        keep = greedy_nms(boxes, labels, scores, 0.5)
        assert out == od([boxes[i] for i in keep], [labels[i] for i in keep], [scores[i] for i in keep])
    same = od([[0, 0, 10, 10], [1, 0, 11, 10], [1, 0, 11, 10]], ["a", "a", "b"], [0.6, 0.9, 0.1])
    assert ClassAwareNMS(0.5)(same, "<OD>", SIZE)["labels"] == ["a", "b"]  # the other label's box stays
    assert ClassAwareNMS(0.5)(same, "<OD>", SIZE)["scores"] == [0.9, 0.1]


def test_box_size_and_whole_image_rules_on_boxes_quads_and_polygons():
    boxes = od([[0, 0, 200, 100], [10, 10, 12, 40], [10, 10, 50, 50]], ["all", "thin", "ok"])
    assert MinBoxSize(4)(boxes, "<OD>", SIZE)["labels"] == ["all", "ok"]
    assert WholeImageBoxes(0.95)(boxes, "<OD>", SIZE)["labels"] == ["thin", "ok"]
    quads = {"quad_boxes": [[0, 0, 200, 0, 200, 100, 0, 100], [5, 5, 30, 5, 30, 20, 5, 20]], "labels": ["ALL", "WORD"],
             "scores": [0.9, 0.8]}
    assert WholeImageBoxes(0.95)(quads, "<OCR_WITH_REGION>", SIZE) == {"quad_boxes": [quads["quad_boxes"][1]],
                                                                       "labels": ["WORD"], "scores": [0.8]}
    polygons = {"polygons": [[[10, 10, 11, 10, 11, 60]], [[10, 10, 60, 10, 60, 60], [70, 70, 80, 70, 80, 80]]],
                "labels": ["", ""]}
    assert MinBoxSize(4)(polygons, "<REGION_TO_SEGMENTATION>", SIZE)["polygons"] == [polygons["polygons"][1]]


def test_text_rules_default_scorer_and_a_pluggable_one():
    assert content_words("A cat.") == 1 and content_words("A red car is parked next to a tall green tree.") == 6
    assert TextComplexity(3)("A cat.", "<CAPTION>", SIZE) is None
    assert TextComplexity(3)("A red car parked by a tree.", "<CAPTION>", SIZE) == "A red car parked by a tree."
    assert TooManyObjects(2)(od([[0, 0, 5, 5]] * 3, ["a"] * 3), "<OD>", SIZE) is None
    scorer = "tests.label.test_filters:words_and_letters"
    assert TextComplexity(10, scorer=scorer)("abc defgh", "<CAPTION>", SIZE) is None  # 8 letters < 10
    assert TooManyObjects(1, scorer=scorer)("abc defgh", "<CAPTION>", SIZE) is None  # 2 words > 1


def words_and_letters(text):
    return len(text.split()), sum(c.isalpha() for c in text)


def test_apply_filters_counts_per_rule_and_builds_from_config():
    rules = build_filters([dict(type="ScoreThreshold", min_score=0.5), dict(type="ClassAwareNMS", iou_threshold=0.5),
                           dict(type="TooManyObjects", max_objects=1)])
    counts = {}
    out = apply_filters(rules, od([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], ["a", "a", "a"],
                                  [0.9, 0.8, 0.1]), "<OD>", SIZE, counts)
    assert out == od([[0, 0, 10, 10]], ["a"], [0.9])
    assert apply_filters(rules, od([[0, 0, 10, 10], [50, 50, 60, 60]], ["a", "b"], [0.9, 0.9]), "<OD>", SIZE,
                         counts) is None
    assert counts == {"ScoreThreshold": {"items": 1, "samples": 0}, "ClassAwareNMS": {"items": 1, "samples": 0},
                      "TooManyObjects": {"items": 0, "samples": 1}}
    with pytest.raises(KeyError, match="NoSuchRule"):
        build_filters([dict(type="NoSuchRule")])


def test_known_labels_keeps_the_ontology():
    output = {"bboxes": [[0, 0, 9, 9], [1, 1, 9, 9], [2, 2, 9, 9]], "labels": ["red circle", "a red circle", "moon"],
              "scores": [0.9, 0.8, 0.7]}
    kept = KnownLabels("florence.data.synthetic:category_names")(output, "<OD>", (64, 64))
    assert kept == {"bboxes": [[0, 0, 9, 9]], "labels": ["red circle"], "scores": [0.9]}
    assert KnownLabels(["moon"])(output, "<OD>", (64, 64))["labels"] == ["moon"]
    assert KnownLabels(["moon"])("A moon.", "<CAPTION>", (64, 64)) == "A moon."  # texts stay
    with pytest.raises(ValueError, match="at least one label"):
        KnownLabels([])
    # a string must name a function, as a config's other "module:function" strings
    with pytest.raises(ValueError, match="expected 'module:function', got 'moon'"):
        KnownLabels("moon")
    with pytest.raises(ValueError, match="'florence.data.synthetic:no_such' names no function"):
        KnownLabels("florence.data.synthetic:no_such")
