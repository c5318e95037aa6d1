"""Consensus of annotators: weighted box fusion with votes, worked out by hand; texts voted; the
labelling run merges before it filters."""
import json
import random

import pytest

from florence.data.synthetic import make_scene
from florence.label import Consensus, label


def od(boxes, labels, scores):
    return {"bboxes": boxes, "labels": labels, "scores": scores}


A = od([[10, 10, 30, 30], [50, 50, 60, 60]], ["circle", "square"], [0.9, 0.8])
B = od([[12, 10, 32, 30], [50, 50, 60, 60]], ["circle", "triangle"], [0.6, 0.7])  # same square, other label
C = od([[11, 11, 31, 31], [0, 0, 5, 5]], ["circle", "circle"], [0.3, 0.9])


def test_boxes_two_of_three_agree_on_are_fused_by_score():
    merged = Consensus(min_votes=2, iou_threshold=0.5)([A, B, C], "<OD>")
    assert merged["labels"] == ["circle"]  # the square and the triangle have one vote each, the far box one
    w = [0.9, 0.6, 0.3]  # clustered in order of score: A's, B's, C's circle
    expect = [sum(wi * b[j] for wi, b in zip(w, ([10, 10, 30, 30], [12, 10, 32, 30], [11, 11, 31, 31]))) / sum(w)
              for j in range(4)]
    assert merged["bboxes"][0] == pytest.approx(expect)
    assert merged["scores"] == [pytest.approx((0.9 + 0.6 + 0.3) / 3, abs=1e-4)]
    one = Consensus(min_votes=1, iou_threshold=0.5)([A, B, C], "<OD>")
    assert sorted(one["labels"]) == ["circle", "circle", "square", "triangle"]
    assert one["scores"] == sorted(one["scores"], reverse=True)
    assert one["scores"][one["labels"].index("square")] == pytest.approx(0.8 / 3, abs=1e-4)


def test_weights_missing_annotators_and_texts():
    merged = Consensus(min_votes=2, iou_threshold=0.5, weights=[2, 1, 1])([A, None, C], "<OD>")
    assert merged["labels"] == ["circle"] and merged["scores"] == [pytest.approx((2 * 0.9 + 0.3) / 4, abs=1e-4)]
    assert Consensus(min_votes=3)([A, None, C], "<OD>") == {"bboxes": [], "labels": [], "scores": []}
    assert Consensus(min_votes=2)(["a red circle", "a cat", "a red circle"], "<CAPTION>") == "a red circle"
    assert Consensus(min_votes=2)(["a red circle", "a cat", None], "<CAPTION>") is None
    with pytest.raises(ValueError, match="one kind"):
        Consensus()([A, {"quad_boxes": [[0, 0, 1, 0, 1, 1, 0, 1]], "labels": ["x"]}], "<OD>")
    with pytest.raises(ValueError, match="2 weights for 3"):
        Consensus(weights=[1, 1])([A, B, C], "<OD>")
    with pytest.raises(ValueError, match="min_votes"):
        Consensus(min_votes=0)


def test_label_merges_annotators_then_filters(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        make_scene(random.Random(i), 64).image.save(folder / f"{i}.png")

    def annotator(output):
        return lambda images, task: [output] * len(images)

    manifest = label([annotator(A), annotator(B), annotator(C)], folder, ["<OD>"], tmp_path / "labels",
                     merge=dict(type="Consensus", min_votes=1, iou_threshold=0.5),
                     filters=[dict(type="ScoreThreshold", min_score=0.25)], progress=False)
    lines = [json.loads(line) for line in (tmp_path / "labels" / "shard-00000.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and {r["annotator"] for r in lines} == {"consensus"}
    # fused: circle 0.6, square 0.267, triangle 0.233 and the far circle 0.3; the threshold drops the triangle
    assert sorted(lines[0]["annotation"]["labels"]) == ["circle", "circle", "square"]
    assert manifest["filters"]["ScoreThreshold"] == {"items": 3, "samples": 0}
