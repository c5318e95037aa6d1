"""Dataset adapters: each reads a small file in its real format (written here, with a few PNG images
and some bad records), its items go through MultiTaskDataset unchanged, and bad records raise
naming file and record or are skipped with one warning."""
import json
import math
import pickle
import re
import warnings

import pytest
from PIL import Image

from florence.data import MultiTaskDataset
from florence.data.adapters import (CocoCaptions, CocoDetection, JsonlDataset, OcrDataset, PhraseGrounding,
                                    RefCoco, VqaDataset)
from florence.evaluation.functions import METRIC_FUNCTIONS
from florence.registry import DATASETS
from florence.task import TaskError, get_task

A, B = (64, 48), (32, 32)  # image sizes of a.png and b.png


@pytest.fixture
def img_dir(tmp_path):
    for name, size in (("a.png", A), ("b.png", B), ("c.png", (40, 40))):
        Image.new("RGB", size, (200, 100, 50)).save(tmp_path / name)
    return tmp_path


def locs(coords, size):
    """Location tokens computed from the quantizer's rule: bin = floor(coord / side * 1000), at most 999."""
    w, h = size
    return "".join(f"<loc_{min(999, math.floor(v / (w if k % 2 == 0 else h) * 1000))}>" for k, v in enumerate(coords))


def sample(ds, index=0):
    """The TaskSample MultiTaskDataset makes of item ``index``."""
    return MultiTaskDataset([ds], image_size=64)[index]["data_samples"]


def write_json(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def load_skipping(cls, *args, **kwargs):
    """The dataset built with on_bad_record="skip", and its one warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = cls(*args, on_bad_record="skip", **kwargs)
    ours = [str(w.message) for w in caught if "bad records" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    return ds, ours[0]


def raises_naming(file, where, reason):
    return pytest.raises(ValueError, match=re.escape(file) + ".*" + re.escape(where) + ".*" + reason)


# ---- COCO -------------------------------------------------------------------------------------------
COCO_IMAGES = [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
               {"id": 2, "file_name": "b.png", "width": 32, "height": 32},
               {"id": 3, "file_name": "missing.png", "width": 10, "height": 10}]


def test_coco_detection(img_dir):
    anns = [dict(image_id=1, category_id=1, bbox=[10, 5, 20, 15]),
            dict(image_id=1, category_id=2, bbox=[33, 21, 30.5, 27.3]),  # y2 = 48.3: clipped to 48
            dict(image_id=1, category_id=1, bbox=[0, 0, 5, 5], iscrowd=1),  # crowd: left out, not bad
            dict(image_id=2, category_id=2, bbox=[1, 2, 40, 5]),  # bad: x2 = 41 > 32
            dict(image_id=2, category_id=7, bbox=[1, 2, 4, 5]),  # bad: unknown category
            dict(image_id=2, category_id=1, bbox=[3, 3, float("nan"), 4]),  # bad: NaN
            dict(image_id=3, category_id=1, bbox=[1, 1, 2, 2]),  # bad: missing image
            dict(image_id=2, category_id=1, bbox=[5, 7, 11, 13]),
            dict(image_id=1, category_id=1, bbox=[10, 10, 0, 5])]  # bad: empty box
    ann_file = write_json(img_dir / "instances.json", {
        "images": COCO_IMAGES, "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [dict(a, id=i, iscrowd=a.get("iscrowd", 0)) for i, a in enumerate(anns)]})
    tasks = ("<OD>", "<REGION_PROPOSAL>", "<REGION_TO_CATEGORY>")
    with raises_naming("instances.json", "annotations[3]", "box outside the image"):
        CocoDetection(ann_file, str(img_dir), tasks=tasks)
    ds, warning = load_skipping(CocoDetection, ann_file, str(img_dir), tasks=tasks)
    assert ds.skipped == {"box outside the image": 1, "unknown category": 1, "non-finite coordinates": 1,
                          "missing image": 1, "degenerate box": 1}
    assert "skipped 5 bad records" in warning
    assert [it["task"] for it in ds] == ["<OD>"] * 2 + ["<REGION_PROPOSAL>"] * 2 + ["<REGION_TO_CATEGORY>"] * 3
    boxes = [[10, 5, 30, 20], [33, 21, 63.5, 48]]
    assert ds[0] == dict(image=str(img_dir / "a.png"), image_size=A, task="<OD>", text_input=None,
                         annotation={"bboxes": boxes, "labels": ["cat", "dog"]})
    assert ds[2]["annotation"] == {"bboxes": boxes, "labels": ["", ""]}
    assert ds[1]["annotation"] == {"bboxes": [[5, 7, 16, 20]], "labels": ["cat"]}
    s = sample(ds, 0)
    assert s.prompt == "Locate the objects with category name in the image."
    assert s.target == "cat" + locs(boxes[0], A) + "dog" + locs(boxes[1], A)
    assert s.target.endswith("<loc_999>")  # the bottom edge, clipped to the image
    assert sample(ds, 2).target == locs(boxes[0], A) + locs(boxes[1], A)
    s = sample(ds, 4)
    assert s.prompt == f"What is the region {locs(boxes[0], A)}?" and s.target == "cat"


def test_roboflow_coco_export(img_dir):
    """Roboflow's COCO export as it is written: ``_annotations.coco.json`` beside the split's images, a
    category 0 that names the dataset (the supercategory of the rest; no annotation uses it), empty
    ``segmentation`` lists and extra fields."""
    split = img_dir / "train"
    split.mkdir()
    (img_dir / "a.png").rename(split / "a.png")
    export = {
        "info": {"description": "Exported from roboflow.com"}, "licenses": [{"id": 1, "name": "CC BY 4.0"}],
        "categories": [{"id": 0, "name": "vehicles-abc1", "supercategory": "none"},
                       {"id": 1, "name": "car", "supercategory": "vehicles-abc1"},
                       {"id": 2, "name": "truck", "supercategory": "vehicles-abc1"}],
        "images": [{"id": 0, "license": 1, "file_name": "a.png", "height": A[1], "width": A[0],
                    "date_captured": "2026-01-01T00:00:00+00:00"}],
        "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "bbox": [10, 5, 20, 15], "area": 300,
                         "segmentation": [], "iscrowd": 0},
                        {"id": 1, "image_id": 0, "category_id": 2, "bbox": [30, 20, 10, 10], "area": 100,
                         "segmentation": [], "iscrowd": 0}]}
    ds = CocoDetection(write_json(split / "_annotations.coco.json", export))  # images beside the json
    assert [it["annotation"] for it in ds] == [{"bboxes": [[10, 5, 30, 20], [30, 20, 40, 30]], "labels": ["car", "truck"]}]
    assert ds[0]["image"] == str(split / "a.png")


def test_coco_captions(img_dir):
    ann_file = write_json(img_dir / "captions.json", {"images": COCO_IMAGES[:1], "annotations": [
        {"id": 1, "image_id": 1, "caption": " A cat sits. "}, {"id": 2, "image_id": 1, "caption": ""},
        {"id": 3, "image_id": 9, "caption": "A dog."}, {"id": 4, "image_id": 1, "caption": "An orange square."}]})
    with raises_naming("captions.json", "annotations[1]", "empty text"):
        CocoCaptions(ann_file, str(img_dir))
    ds, _ = load_skipping(CocoCaptions, ann_file, str(img_dir))
    assert ds.skipped == {"empty text": 1, "unknown image id": 1}
    assert [it["annotation"] for it in ds] == ["A cat sits.", "An orange square."]
    s = sample(ds)
    assert (s.prompt, s.target) == ("What does the image describe?", "A cat sits.")
    with pytest.warns(UserWarning, match="skipped 2"):
        detailed = CocoCaptions(ann_file, str(img_dir), task="<DETAILED_CAPTION>", on_bad_record="skip")
    assert sample(detailed).prompt == "Describe in detail what is shown in the image."


# ---- RefCOCO ----------------------------------------------------------------------------------------
def test_refcoco(img_dir):
    instances = write_json(img_dir / "instances.json", {"images": COCO_IMAGES[:2], "annotations": [
        {"id": 10, "image_id": 1, "bbox": [10, 5, 20, 15], "segmentation": [[10, 5, 30, 5, 30, 20, 10, 20]]},
        {"id": 11, "image_id": 2, "bbox": [1, 1, 10, 10], "segmentation": [[1, 1, 5, 5, 9, 9]]},  # collinear
        {"id": 12, "image_id": 2, "bbox": [2, 3, 11, 13], "segmentation": [[2, 3, 13, 3, 7, 16]]}]})
    refs = [dict(ref_id=0, ann_id=10, image_id=1, split="train", sentences=[{"sent": "the cat"}, {"sent": "left one"}]),
            dict(ref_id=1, ann_id=11, image_id=2, split="train", sentences=[{"sent": "a line"}]),  # bad polygon
            dict(ref_id=2, ann_id=12, image_id=2, split="val", sentences=[{"sent": "the triangle"}]),
            dict(ref_id=3, ann_id=12, image_id=2, split="train", sentences=[{"sent": " "}, {"sent": "the triangle"}]),
            dict(ref_id=4, ann_id=99, image_id=2, split="train", sentences=[{"sent": "nothing"}])]
    refs_p = img_dir / "refs(unc).p"
    refs_p.write_bytes(pickle.dumps(refs))
    refs_json = write_json(img_dir / "refs.json", refs)
    with raises_naming("refs(unc).p", "refs[1]", "degenerate polygon"):
        RefCoco(str(refs_p), instances, str(img_dir))
    ds, _ = load_skipping(RefCoco, str(refs_p), instances, str(img_dir))
    assert ds.skipped == {"degenerate polygon": 1, "empty text": 1, "unknown annotation id": 1}
    assert [(it["task"][:4], it["text_input"]) for it in ds] == [
        ("<OPE", "the cat"), ("<REF", "the cat"), ("<OPE", "left one"), ("<REF", "left one"),
        ("<OPE", "the triangle"), ("<REF", "the triangle")]
    assert ds[0]["annotation"] == {"bboxes": [[10, 5, 30, 20]], "bboxes_labels": ["the cat"], "polygons": [],
                                   "polygons_labels": []}
    assert ds[1]["annotation"] == {"polygons": [[[10, 5, 30, 5, 30, 20, 10, 20]]], "labels": [""]}
    s = sample(ds, 0)
    assert (s.prompt, s.target) == ("Locate the cat in the image.", "the cat" + locs([10, 5, 30, 20], A))
    s = sample(ds, 1)
    assert (s.prompt, s.target) == ("Locate the cat in the image with mask", locs([10, 5, 30, 5, 30, 20, 10, 20], A))
    from_json, _ = load_skipping(RefCoco, refs_json, instances, str(img_dir))
    assert list(from_json) == list(ds)
    # boxes only: the bad polygon does not matter; split=None takes every split
    with pytest.warns(UserWarning, match="skipped 2"):
        boxes = RefCoco(refs_json, instances, str(img_dir), split=None, tasks=["<OPEN_VOCABULARY_DETECTION>"],
                        on_bad_record="skip")
    assert [it["text_input"] for it in boxes] == ["the cat", "left one", "a line", "the triangle", "the triangle"]
    # polygons only: a box outside the image does not matter
    data = json.loads(open(instances).read())
    data["annotations"][0]["bbox"] = [10, 5, 90, 15]
    outside = write_json(img_dir / "outside.json", data)
    masks = RefCoco(refs_json, outside, str(img_dir), tasks=["<REFERRING_EXPRESSION_SEGMENTATION>"],
                    on_bad_record="skip")
    assert [it["text_input"] for it in masks][:2] == ["the cat", "left one"]
    with raises_naming("refs.json", "refs[0]", "box outside the image"):
        RefCoco(refs_json, outside, str(img_dir), tasks=["<OPEN_VOCABULARY_DETECTION>"])


# ---- phrase grounding ---------------------------------------------------------------------------------
def test_phrase_grounding(img_dir):
    good = {"image": "a.png", "caption": "A cat and a dog.", "phrases": [
        {"phrase": "A cat", "boxes": [[10, 5, 30, 20]]}, {"phrase": "a dog", "boxes": [[33, 21, 50, 40], [1, 1, 5, 5]]},
        {"phrase": "the sky", "boxes": []}]}
    bird = {"image": "b.png", "caption": "A bird."}
    lines = [json.dumps(good),
             json.dumps(dict(bird, phrases=[{"phrase": "A bird", "boxes": [[20, 20, 10, 30]]}])),
             "{not json",
             "",
             json.dumps({"image": "nope.png", "caption": "A fish.", "phrases": []}),
             json.dumps(dict(bird, phrases=[{"phrase": "A bird", "boxes": [[3, 4, 21, 25]]}]))]
    ann_file = img_dir / "grounding.jsonl"
    ann_file.write_text("\n".join(lines) + "\n")
    with raises_naming("grounding.jsonl", "record 1 (line 2)", "degenerate box"):
        PhraseGrounding(str(ann_file), str(img_dir))
    ds, _ = load_skipping(PhraseGrounding, str(ann_file), str(img_dir))
    assert ds.skipped == {"degenerate box": 1, "malformed JSON": 1, "missing image": 1}
    assert len(ds) == 2
    assert ds[0]["annotation"] == {"bboxes": [[10, 5, 30, 20], [33, 21, 50, 40], [1, 1, 5, 5]],
                                   "labels": ["A cat", "a dog", "a dog"]}
    s = sample(ds)
    assert s.prompt == "Locate the phrases in the caption: A cat and a dog."
    assert s.target == ("A cat" + locs([10, 5, 30, 20], A) + "a dog" + locs([33, 21, 50, 40], A)
                        + "a dog" + locs([1, 1, 5, 5], A))
    as_list = PhraseGrounding(write_json(img_dir / "grounding.json", [good]), str(img_dir))
    assert list(as_list) == [ds[0]]


# ---- VQA ----------------------------------------------------------------------------------------------
def test_vqa_task_prompt_is_the_question():
    vqa = get_task("<VQA>")
    assert vqa.prompt("How many cats?") == "<VQA>How many cats?"  # token + question, as the published processor
    assert vqa.encode_target(["2", "3", "2", "3"], (1, 1)) == "2"  # most common answer; ties: the first
    assert vqa.encode_target("two", (1, 1)) == "two"
    with pytest.raises(TaskError, match="VQA"):
        vqa.encode_target([], (1, 1))
    assert get_task("docvqa").prompt("Total?") == "<DOCVQA>Total?" and get_task("docvqa").metrics == ("anls",)


def test_vqav2(img_dir):
    for i, size in ((1, A), (2, B)):
        Image.new("RGB", size).save(img_dir / f"COCO_val2014_{i:012d}.jpg")
    questions = write_json(img_dir / "questions.json", {"data_subtype": "val2014", "questions": [
        {"image_id": 1, "question": "How many cats?", "question_id": 10},
        {"image_id": 2, "question": "  ", "question_id": 11},
        {"image_id": 3, "question": "Where?", "question_id": 12},
        {"image_id": 2, "question": "What colour?", "question_id": 13}]})  # no annotation
    answers = ["2"] * 6 + ["3"] * 3 + ["two"]
    annotations = write_json(img_dir / "annotations.json", {"annotations": [
        {"question_id": q, "multiple_choice_answer": "2", "answers": [{"answer": a} for a in answers]}
        for q in (10, 11, 12)]})
    with raises_naming("questions.json", "questions[1]", "empty text"):
        VqaDataset(questions, annotations, str(img_dir))
    with pytest.raises(ValueError, match="annotations_file"):
        VqaDataset(questions, None, str(img_dir))
    ds, _ = load_skipping(VqaDataset, questions, annotations, str(img_dir))
    assert ds.skipped == {"empty text": 1, "missing image": 1, "no answers": 1}
    assert ds[0] == dict(image=str(img_dir / "COCO_val2014_000000000001.jpg"), image_size=A, task="<VQA>",
                         text_input="How many cats?", annotation=answers)
    s = sample(ds)
    assert (s.prompt, s.target, s.annotation) == ("<VQA>How many cats?", "2", answers)
    # the annotation is the metric's ground truth: leave-one-out over the 10 answers ("two" counts as "2")
    assert METRIC_FUNCTIONS["vqa_accuracy"]([dict(pred="3", gt=s.annotation)])["vqa_accuracy"] == pytest.approx(0.9)


def test_textvqa_and_docvqa(img_dir):
    textvqa = write_json(img_dir / "textvqa.json", {"data": [
        {"image_id": "a", "question": "What is written?", "answers": ["stop", "STOP", "stop"], "question_id": 1},
        {"image_id": "b", "question": "What brand?", "answers": [], "question_id": 2}]})
    with raises_naming("textvqa.json", "data[1]", "no answers"):
        VqaDataset(textvqa, img_dir=str(img_dir), image_name="{image_id}.png")
    ds, _ = load_skipping(VqaDataset, textvqa, img_dir=str(img_dir), image_name="{image_id}.png")
    assert len(ds) == 1 and sample(ds).target == "stop" and ds[0]["image"] == str(img_dir / "a.png")
    docvqa = write_json(img_dir / "docvqa.json", {"data": [
        {"questionId": 5, "question": "What is the total?", "image": "b.png", "answers": ["$12", "12"]}]})
    s = sample(VqaDataset(docvqa, img_dir=str(img_dir), task="<DOCVQA>"))
    assert (s.task, s.prompt, s.target) == ("<DOCVQA>", "<DOCVQA>What is the total?", "$12")
    assert METRIC_FUNCTIONS["anls"]([dict(pred="12", gt=s.annotation)])["ANLS"] == 1.0


# ---- OCR ----------------------------------------------------------------------------------------------
def test_textocr(img_dir):
    anns = {  # deliberately not in reading order
        "w3": {"image_id": "img_a", "utf8_string": "WORLD", "points": [30, 6, 50, 6, 50, 14, 30, 14]},
        "w1": {"image_id": "img_a", "utf8_string": "HELLO", "points": [5, 5, 25, 5, 25, 15, 5, 15]},
        "w4": {"image_id": "img_a", "utf8_string": ".", "points": [1, 40, 4, 40, 4, 44, 1, 44]},  # illegible
        "w2": {"image_id": "img_a", "utf8_string": "BYE", "bbox": [10, 30, 15, 10]},
        "w5": {"image_id": "img_a", "utf8_string": "FAR", "points": [60, 5, 70, 5, 70, 10, 60, 10]},  # outside
        "w6": {"image_id": "img_b", "utf8_string": "X", "points": [1, 1, 5, 1, 5, 5, 1, 5]},  # missing image
        "w7": {"image_id": "img_a", "utf8_string": "", "points": [1, 1, 5, 1, 5, 5, 1, 5]},  # empty
        "w8": {"image_id": "img_a", "utf8_string": "POLY", "points": [40, 30, 50, 28, 60, 30, 60, 40, 50, 42, 40, 40]},
    }
    ann_file = write_json(img_dir / "textocr.json", {
        "imgs": {"img_a": {"id": "img_a", "file_name": "a.png", "width": 64, "height": 48},
                 "img_b": {"id": "img_b", "file_name": "missing.png", "width": 10, "height": 10}},
        "anns": {k: dict(v, id=k) for k, v in anns.items()},
        "imgToAnns": {"img_a": [k for k in anns if k != "w6"], "img_b": ["w6"]}})
    with raises_naming("textocr.json", "anns['w5']", "quad outside the image"):
        OcrDataset(ann_file, str(img_dir))
    ds, _ = load_skipping(OcrDataset, ann_file, str(img_dir))
    assert ds.skipped == {"quad outside the image": 1, "missing image": 1, "empty text": 1}
    assert [it["task"] for it in ds] == ["<OCR>", "<OCR_WITH_REGION>"]
    quads = [[5, 5, 25, 5, 25, 15, 5, 15], [30, 6, 50, 6, 50, 14, 30, 14], [10, 30, 25, 30, 25, 40, 10, 40],
             [40, 28, 60, 28, 60, 42, 40, 42]]  # the 6-point polygon's enclosing rectangle
    words = ["HELLO", "WORLD", "BYE", "POLY"]
    assert ds[1]["annotation"] == {"quad_boxes": quads, "labels": words}
    s = sample(ds, 0)
    assert (s.prompt, s.target) == ("What is the text in the image?", "HELLO WORLD BYE POLY")
    assert sample(ds, 1).target == "".join(w + locs(q, A) for w, q in zip(words, quads))


# ---- generic JSON Lines -------------------------------------------------------------------------------
def test_jsonl(img_dir):
    records = [
        {"image": "a.png", "task": "<OD>", "annotation": {"bboxes": [[10, 5, 30, 20]], "labels": ["cat"]}},
        {"image": "b.png", "task": "<DOCVQA>", "text_input": "Total?", "target": "$12"},
        {"image": "a.png", "prefix": "Read the serial number.", "target": "SN 4711"},
        {"image": "a.png", "task": "<NOPE>", "target": "x"},
        {"image": "gone.png", "task": "<OD>", "annotation": {"bboxes": [[1, 1, 5, 5]], "labels": ["cat"]}},
        {"image": "a.png", "task": "<REFERRING_EXPRESSION_SEGMENTATION>", "text_input": "the cat",
         "annotation": {"polygons": [[[1, 1, 5, 5]]], "labels": [""]}},  # a 2-point polygon
        {"image": str(img_dir / "a.png"), "task": "<REGION_TO_CATEGORY>", "text_input": [10, 5, 30, 20],
         "annotation": "cat"},
        {"image": "a.png", "task": "<OPEN_VOCABULARY_DETECTION>",  # the task needs a text input
         "annotation": {"bboxes": [[1, 1, 5, 5]], "bboxes_labels": ["x"], "polygons": [], "polygons_labels": []}},
        {"image": "c.png", "task": "<OD>", "target": "car<loc_100><loc_200><loc_300><loc_400>"},
    ]
    ann_file = img_dir / "custom.jsonl"
    ann_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    with raises_naming("custom.jsonl", "record 3 (line 4)", "unknown task"):
        JsonlDataset(str(ann_file))
    ds, warning = load_skipping(JsonlDataset, str(ann_file))
    assert ds.skipped == {"unknown task": 1, "missing image": 1, "degenerate polygon": 1, "rejected by the task": 1}
    assert "kept 5 samples" in warning
    s = sample(ds, 0)
    assert s.target == "cat" + locs([10, 5, 30, 20], A)
    s = sample(ds, 1)  # raw target: verbatim
    assert (s.task, s.prompt, s.target, s.annotation) == ("<DOCVQA>", "<DOCVQA>Total?", "$12", "$12")
    s = sample(ds, 2)  # custom prompt: verbatim
    assert (s.task, s.prompt, s.target) == ("<VQA>", "Read the serial number.", "SN 4711")
    assert sample(ds, 3).prompt == f"What is the region {locs([10, 5, 30, 20], A)}?"
    s = sample(ds, 4)  # raw target with locations: verbatim, and parsed as the ground truth
    assert s.target == "car<loc_100><loc_200><loc_300><loc_400>"
    assert s.annotation["labels"] == ["car"] and s.annotation["bboxes"][0] == pytest.approx([4.02, 8.02, 12.02, 16.02])


def test_maestro_roboflow_jsonl(img_dir):
    """Roboflow's / maestro's export: ``{"image", "prefix", "suffix"}`` lines. A prefix that starts
    with a task token becomes that task (its real prompt, the rest as its input, its metrics); any
    other prefix stays a verbatim prompt."""
    od_target = "cat" + locs([10, 5, 30, 20], A)
    records = [
        {"image": "a.png", "prefix": "<OD>", "suffix": od_target},
        {"image": "a.png", "prefix": "<CAPTION_TO_PHRASE_GROUNDING>an orange cat", "suffix": "an orange cat" +
         locs([10, 5, 30, 20], A)},
        {"image": "b.png", "prefix": "What colour is the square?", "suffix": "orange"},
        {"image": "a.png", "prefix": "<REGION_TO_CATEGORY><loc_156><loc_104><loc_468><loc_416>", "suffix": "cat"},
        {"image": "a.png", "prefix": "<OD>"},  # nothing to learn
        {"image": "a.png", "prefix": "<CAPTION_TO_PHRASE_GROUNDING>a cat", "text_input": "a dog", "suffix": "x"},
    ]
    (img_dir / "train").mkdir()
    for name in ("a.png", "b.png"):
        (img_dir / name).rename(img_dir / "train" / name)
    ann_file = img_dir / "train" / "annotations.jsonl"
    ann_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    ds, warning = load_skipping(JsonlDataset, str(ann_file))
    assert ds.skipped == {"no target (or suffix) or annotation": 1, "two task inputs": 1}
    s = sample(ds, 0)
    od = get_task("<OD>")
    assert (s.task, s.prompt, s.target) == ("<OD>", od.prompt(None, A), od_target)
    assert "<OD>" not in s.prompt  # the task token is expanded, not passed to the model verbatim
    assert s.annotation["labels"] == ["cat"] and s.annotation["bboxes"][0] == pytest.approx([10, 5, 30, 20], abs=0.1)
    assert "coco_bbox_map" in od.metrics  # evaluated as <OD>, not as <VQA>
    s = sample(ds, 1)
    grounding = get_task("<CAPTION_TO_PHRASE_GROUNDING>")
    assert (s.task, s.text_input, s.prompt) == (grounding.token, "an orange cat", grounding.prompt("an orange cat", A))
    s = sample(ds, 2)  # free text: a custom prompt, verbatim
    assert (s.task, s.prompt, s.target) == ("<VQA>", "What colour is the square?", "orange")
    s = sample(ds, 3)  # a region given as location tokens
    assert s.task == "<REGION_TO_CATEGORY>" and "<loc_156><loc_104><loc_468><loc_416>" in s.prompt


def test_jsonl_labelled_boxes_feed_the_objects_head_when_asked(img_dir):
    """``objects_from_boxes=True``: a sample whose annotation is labelled boxes carries them as its
    image's objects (the training-only objects head's targets); other samples carry none."""
    boxes = {"bboxes": [[10, 5, 30, 20]], "labels": ["cat"]}
    ann_file = img_dir / "labels.jsonl"
    ann_file.write_text(json.dumps({"image": "a.png", "task": "<OD>", "annotation": boxes}) + "\n"
                        + json.dumps({"image": "a.png", "task": "<CAPTION>", "annotation": "A cat."}) + "\n")
    with_objects = MultiTaskDataset([JsonlDataset(str(ann_file), objects_from_boxes=True)], image_size=64)
    assert with_objects[0]["data_samples"].extra["objects"] == boxes
    assert "objects" not in with_objects[1]["data_samples"].extra
    plain = MultiTaskDataset([JsonlDataset(str(ann_file))], image_size=64)
    assert "objects" not in plain[0]["data_samples"].extra


def test_configs_and_arguments(img_dir):
    ann_file = img_dir / "one.jsonl"
    ann_file.write_text(json.dumps({"image": "a.png", "task": "<CAPTION>", "annotation": "An orange image."}) + "\n")
    mixed = MultiTaskDataset([dict(type="JsonlDataset", ann_file=str(ann_file))], image_size=64)
    assert mixed[0]["data_samples"].target == "An orange image."
    assert isinstance(DATASETS.build(dict(type="JsonlDataset", ann_file=str(ann_file))), JsonlDataset)
    with pytest.raises(ValueError, match="on_bad_record"):
        JsonlDataset(str(ann_file), on_bad_record="ignore")
    with pytest.raises(ValueError, match="cannot be made from image annotations"):
        CocoDetection(str(ann_file), str(img_dir), tasks=["<DOCVQA>"])
    with pytest.raises(ValueError, match="tasks must name at least one task"):
        CocoDetection(str(ann_file), str(img_dir), tasks=[])
