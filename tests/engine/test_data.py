"""The built-in synthetic dataset, the multitask mixer and the data preprocessor."""
import numpy as np
import pytest
import torch

import florence
from florence.data import MultiTaskDataset, SyntheticScenes, vocabulary_texts
from florence.data.synthetic import SUPPORTED_TASKS
from florence.engine import Florence2DataPreprocessor, build_tokenizer_from_cfg


def test_synthetic_is_deterministic_and_covers_every_builtin_task():
    a, b = SyntheticScenes(seed=3, length=40, cycle_tasks=True), SyntheticScenes(seed=3, length=40, cycle_tasks=True)
    for i in (0, 7, 39):
        assert np.array_equal(np.asarray(a[i]["image"]), np.asarray(b[i]["image"]))
        assert a[i]["annotation"] == b[i]["annotation"]
    assert not np.array_equal(np.asarray(a[0]["image"]), np.asarray(SyntheticScenes(seed=4, length=1)[0]["image"]))
    builtin = {t.token for t in florence.list_tasks()}
    assert builtin - set(SUPPORTED_TASKS) == {"<VQA>", "<DOCVQA>"}  # questions need real images
    assert {a[i]["task"] for i in range(15)} == set(SUPPORTED_TASKS)


def test_every_synthetic_annotation_encodes_and_round_trips():
    ds = SyntheticScenes(seed=1, length=300)
    for i in range(300):
        s = ds[i]
        task = florence.get_task(s["task"])
        prompt = task.prompt(s["text_input"], s["image_size"])
        target = task.encode_target(s["annotation"], s["image_size"])
        assert prompt and "<loc_1000>" not in target
        decoded = task.decode_output(target, s["image_size"])
        assert type(decoded) is type(s["annotation"])


def test_the_smallest_scenes_have_text_too():
    """At 32 px the regular font is wider than some words: the first word is drawn smaller, so every
    task (captions naming the words, OCR) still has its text."""
    ds = SyntheticScenes(seed=3, length=100, image_size=32, cycle_tasks=True)
    for i in range(100):
        s = ds[i]
        assert s["objects"]["labels"] and any(label.isupper() for label in s["objects"]["labels"]), i


def test_tokenizer_from_vocabulary_is_deterministic_and_covers_the_words():
    cfg = dict(texts_from="florence.data.synthetic:vocabulary_texts", vocab_size=300)
    a, b = build_tokenizer_from_cfg(cfg), build_tokenizer_from_cfg(cfg)
    assert a.get_vocab() == b.get_vocab()
    for text in vocabulary_texts():
        assert a.unk_token_id not in a(text)["input_ids"]


def test_multitask_weights_concat_and_bad_records():
    d1 = dict(type=SyntheticScenes, seed=0, length=10, image_size=64, tasks=["<OD>"])
    d2 = dict(type=SyntheticScenes, seed=1, length=5, image_size=64, tasks=["<CAPTION>"])
    concat = MultiTaskDataset([d1, d2], image_size=64)
    assert len(concat) == 15 and concat.locate(12) == (1, 2)
    mixed = MultiTaskDataset([d1, d2], weights=[3, 1], length=400, image_size=64, seed=5)
    picks = [mixed.locate(i)[0] for i in range(400)]
    assert picks == [mixed.locate(i)[0] for i in range(400)]  # deterministic
    assert 0.65 < picks.count(0) / 400 < 0.85
    sample = mixed[0]
    assert sample["inputs"].shape == (3, 64, 64) and sample["data_samples"].target

    class Broken(SyntheticScenes):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            item["annotation"] = {"bboxes": [[1, 2, float("nan"), 4]], "labels": ["x"]}
            return item
    bad = MultiTaskDataset([Broken(seed=0, length=3, image_size=64, tasks=["<OD>"])], image_size=64)
    with pytest.raises(ValueError, match=r"Broken\[1\].*<OD>.*non-finite"):
        bad[1]
    with pytest.raises(ValueError, match="weights"):
        MultiTaskDataset([d1, d2], weights=[1])


def test_preprocessor_pads_prompts_right_and_masks_label_padding():
    tok = build_tokenizer_from_cfg(dict(texts_from="florence.data.synthetic:vocabulary_texts", vocab_size=300))
    ds = MultiTaskDataset([dict(type=SyntheticScenes, seed=2, length=8, image_size=64)], image_size=64)
    batch = [ds[i] for i in range(4)]
    data = {"inputs": [b["inputs"] for b in batch], "data_samples": [b["data_samples"] for b in batch]}
    out = Florence2DataPreprocessor(tok)(data, training=True)
    assert out["pixel_values"].shape == (4, 3, 64, 64)
    for i, s in enumerate(data["data_samples"]):
        ids = tok(s.target)["input_ids"]
        n = len(ids)
        assert out["labels"][i, :n].tolist() == ids and (out["labels"][i, n:] == -100).all()
        m = int(out["attention_mask"][i].sum())
        assert out["input_ids"][i, :m].tolist() == tok(s.prompt)["input_ids"]
        assert (out["attention_mask"][i, m:] == 0).all()
    assert (out["labels"] == -100).any() and (out["attention_mask"] == 0).any()
    assert "labels" not in Florence2DataPreprocessor(tok)(data, training=False)


def test_synthetic_samples_carry_every_object_for_dense_losses():
    from florence.data.synthetic import category_names

    ds = SyntheticScenes(seed=5, length=30, image_size=96, text_size=0.2, cycle_tasks=True)  # 2 of each task
    mixed = MultiTaskDataset([ds], image_size=96)
    seen_od = 0
    for i in range(30):
        item = ds[i]
        objects = item["objects"]
        assert len(objects["bboxes"]) == len(objects["labels"]) >= 2  # a shape and a word at least
        assert set(objects["labels"]) <= set(category_names())
        if item["task"] == "<OD>":  # the detection target lists exactly the shapes among them
            assert item["annotation"]["bboxes"] == [b for b, label in zip(objects["bboxes"], objects["labels"])
                                                    if not label.isupper()]
            seen_od += 1
        assert mixed[i]["data_samples"].extra["objects"] == objects
    assert seen_od == 2
    word = next(b for b, label in zip(objects["bboxes"], objects["labels"]) if label.isupper())
    assert word[3] - word[1] > 0.1 * 96  # the font follows text_size
    for bad in (0, 0.3):
        with pytest.raises(ValueError, match="text_size"):
            SyntheticScenes(text_size=bad)


def test_synthetic_task_weights_list_or_dict():
    weights = {"<OD>": 3, "<OCR>": 1}
    by_dict = SyntheticScenes(seed=1, length=200, task_weights=weights)
    by_list = SyntheticScenes(seed=1, length=200, tasks=["<OD>", "<OCR>"], task_weights=[3, 1])
    tasks = [by_dict[i]["task"] for i in range(200)]
    assert tasks == [by_list[i]["task"] for i in range(200)]
    assert 0.6 < tasks.count("<OD>") / 200 < 0.9
    assert SyntheticScenes(tasks=["<OCR>"], task_weights=weights).task_weights == [1]
    for bad, match in (({"<OD>": 1, "<CAPTION>": -1}, "numbers >= 0"), ([0, 0], "positive sum"),
                       ([1], "2 tasks but 1")):
        with pytest.raises(ValueError, match=match):
            SyntheticScenes(tasks=None if isinstance(bad, dict) else ["<OD>", "<OCR>"], task_weights=bad)
    with pytest.raises(ValueError, match="no weight for"):
        SyntheticScenes(tasks=["<CAPTION>"], task_weights=weights)


def test_tasks_per_image_gives_one_image_several_distinct_tasks_encoded_together():
    weights = {t: 1.0 for t in SUPPORTED_TASKS}
    weights["<OD>"] = 50.0  # nearly always drawn, but never twice for one image
    one = SyntheticScenes(seed=2, length=50, task_weights=weights)
    four = SyntheticScenes(seed=2, length=50, task_weights=weights, tasks_per_image=4)
    for i in range(50):
        item = four[i]
        tokens = [t["task"] for t in item["tasks"]]
        assert len(set(tokens)) == 4 and "task" not in item
        assert tokens[0] == one[i]["task"]  # the first draw is the one-task dataset's
        assert np.array_equal(np.asarray(item["image"]), np.asarray(one[i]["image"]))  # same scene
    assert sum("<OD>" in [t["task"] for t in four[i]["tasks"]] for i in range(50)) >= 45
    with pytest.raises(ValueError, match="tasks_per_image"):
        SyntheticScenes(tasks_per_image=16)
    with pytest.raises(ValueError, match="tasks_per_image"):
        SyntheticScenes(tasks_per_image=2, cycle_tasks=True)

    ds = MultiTaskDataset([four], image_size=64)
    tok = build_tokenizer_from_cfg(dict(texts_from="florence.data.synthetic:vocabulary_texts", vocab_size=300))
    batch = [ds[0], ds[1]]
    out = Florence2DataPreprocessor(tok)(dict(inputs=[b["inputs"] for b in batch],
                                              data_samples=[b["data_samples"] for b in batch]), True)
    assert out["pixel_values"].shape == (2, 3, 64, 64)  # each image once
    assert out["image_index"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [s.task for s in out["data_samples"]] == [t["task"] for b in (four[0], four[1]) for t in b["tasks"]]
    assert out["input_ids"].shape[0] == out["labels"].shape[0] == 8
    bad = {**four[0], "tasks": [{"task": "<OD>", "annotation": {"bboxes": [[0, 0]], "labels": ["x"]}}]}
    with pytest.raises(ValueError, match=r"\['<OD>'\]"):  # the record's tasks are named
        MultiTaskDataset([[bad]], image_size=64)[0]
