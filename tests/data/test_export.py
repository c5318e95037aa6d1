"""Datasets out and back in: florence JSON Lines (exact), Roboflow / maestro JSON Lines (the same
prompts and targets; coordinates within one location bin) and COCO json (boxes, labels, scores)."""
import json
import math

import pytest

from florence.data import (CocoDetection, JsonlDataset, MultiTaskDataset, SyntheticScenes, write_coco, write_jsonl,
                           write_maestro)
from florence.data.writers import samples_of


def scenes(**kw):
    return SyntheticScenes(seed=3, length=kw.pop("length", 15), image_size=64, **kw)


def close(a, b, tol):
    """Same structure and text; numbers within ``tol``."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=tol)
    return a == b


def test_florence_jsonl_round_trip_is_exact(tmp_path):
    ds = scenes(cycle_tasks=True)  # one scene per task: all 15
    assert write_jsonl(ds, tmp_path / "out" / "data.jsonl") == 15
    back = JsonlDataset(str(tmp_path / "out" / "data.jsonl"))
    assert len(back) == 15
    for (_, item, task), read in zip(samples_of(ds), back):
        assert read["task"] == task["task"] and read["image_size"] == item["image_size"]
        assert close(read["text_input"], task["text_input"], 1e-9), task["task"]
        assert close(read["annotation"], task["annotation"], 1e-9), task["task"]


def test_maestro_round_trip_keeps_prompts_targets_and_one_bin(tmp_path):
    ds = scenes(cycle_tasks=True)
    ann_file = write_maestro(ds, tmp_path / "export", split="train")
    assert ann_file == tmp_path / "export" / "train" / "annotations.jsonl"
    assert all(set(json.loads(line)) == {"image", "prefix", "suffix"} for line in ann_file.read_text().splitlines())
    back = JsonlDataset(str(ann_file))
    original, reread = MultiTaskDataset([ds], image_size=64), MultiTaskDataset([back], image_size=64)
    for i in range(15):
        a, b = original[i]["data_samples"], reread[i]["data_samples"]
        assert (b.task, b.prompt, b.target) == (a.task, a.prompt, a.target)  # what the model sees and learns
        tol = 64 / 1000  # one location bin of a 64 px image
        assert close(b.annotation, a.annotation, tol), (a.task, a.annotation, b.annotation)


def test_coco_round_trip_with_scores(tmp_path):
    ds = scenes(length=4, tasks=["<OD>"])
    coco = write_coco(ds, tmp_path / "coco" / "instances.json")
    assert len(coco["images"]) == 4 and len(coco["annotations"]) == sum(len(it["annotation"]["bboxes"]) for it in
                                                                        (ds[i] for i in range(4)))
    back = CocoDetection(str(tmp_path / "coco" / "instances.json"))
    for i, read in enumerate(back):
        assert close(read["annotation"], ds[i]["annotation"], 1e-6)
    # labels the model made: per-box scores go into the json
    labelled = [dict(ds[0], annotation=dict(ds[0]["annotation"], scores=[0.9 - 0.1 * k for k in
                                                                          range(len(ds[0]["annotation"]["bboxes"]))]))]
    coco = write_coco(labelled, tmp_path / "scored" / "instances.json")
    assert [a["score"] for a in coco["annotations"]] == pytest.approx(labelled[0]["annotation"]["scores"])
    with pytest.raises(ValueError, match="box tasks"):
        write_coco(ds, tmp_path / "x.json", tasks=["<CAPTION>"])


def test_the_older_module_name_warns_and_gives_the_writers():
    import importlib
    import sys

    import florence.data.writers as writers

    sys.modules.pop("florence.data.export", None)
    with pytest.deprecated_call(match="florence.data.writers"):
        old = importlib.import_module("florence.data.export")
    assert old.write_coco is writers.write_coco and old.samples_of is writers.samples_of
