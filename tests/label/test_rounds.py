"""The data engine's rounds: label quality by filter stage (worked out by hand), and the whole loop at
toy scale (a scripted detector labels, a florence model is trained on its labels and labels again, and the
truth baseline); started again, it redoes nothing; a round left without labels stops with the reason."""
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from florence.data import SyntheticScenes
from florence.label.rounds import TIMES, choose_min_score, format_report, label_quality, run_data_engine

MAIN = "configs/florence2/florence2_tiny_synthetic.py"


class Truth(list):
    """A dataset of given annotations."""

    def __init__(self, annotations):
        super().__init__(dict(image=None, image_size=(100, 100), annotation=a) for a in annotations)


def test_label_quality_counts_each_filter_stage():
    truth = Truth([{"bboxes": [[10, 10, 40, 40], [60, 60, 90, 90]], "labels": ["circle", "square"]}])
    outputs = [{"bboxes": [[10, 10, 40, 40], [11, 10, 40, 41], [60, 60, 90, 90], [0, 0, 5, 5]],
                "labels": ["circle", "circle", "square", "circle"], "scores": [0.9, 0.8, 0.7, 0.1]}]
    rows = label_quality(outputs, truth, "<OD>", [dict(type="ScoreThreshold", min_score=0.5),
                                                  dict(type="ClassAwareNMS", iou_threshold=0.5)])
    assert [r["stage"] for r in rows] == ["unfiltered", "+ ScoreThreshold", "+ ClassAwareNMS"]
    assert [r["boxes"] for r in rows] == [4, 3, 2]
    assert [r["precision@0.5"] for r in rows] == [0.5, pytest.approx(2 / 3), 1.0]  # the duplicate is a miss
    assert all(r["recall@0.5"] == 1.0 for r in rows)
    assert rows[-1]["bbox_mAP_50"] == pytest.approx(1.0) and rows[-1]["bbox_mAP"] == pytest.approx(1.0)
    assert rows[0]["bbox_mAP_50"] == pytest.approx(1.0)  # the extra boxes rank below the true ones
    wrong = label_quality([{"bboxes": [[60, 60, 90, 90]], "labels": ["circle"], "scores": [0.9]}], truth, "<OD>")
    assert wrong[0]["precision@0.5"] == 0.0 and wrong[0]["recall@0.5"] == 0.0  # right place, wrong label


def test_the_score_threshold_is_chosen_on_labelled_items_by_count_or_f1():
    truth = Truth([{"bboxes": [[10, 10, 40, 40], [60, 60, 90, 90]], "labels": ["circle", "square"]}])
    outputs = [{"bboxes": [[10, 10, 40, 40], [0, 0, 20, 20], [60, 60, 90, 90], [50, 0, 70, 20]],
                "labels": ["circle", "circle", "square", "square"], "scores": [0.9, 0.8, 0.4, 0.2]}]
    filters = [dict(type="MinBoxSize", min_size=2), dict(type="ScoreThreshold", min_score=0.5),
               dict(type="ClassAwareNMS", iou_threshold=0.5)]
    # as many boxes as true ones (2): scores above 0.4 and up to 0.8; the lowest such threshold
    count = choose_min_score(outputs, truth, "<OD>", filters, "count")
    assert count["min_score"] == 0.425 and count["true_boxes"] == 2 and count["criterion"] == "count"
    point = next(p for p in count["curve"] if p["min_score"] == 0.425)
    assert point == dict(min_score=0.425, boxes=2, precision=0.5, recall=0.5)
    assert [p["boxes"] for p in count["curve"][:3]] == [4, 4, 4] and count["curve"][-1]["boxes"] == 0
    # at least as many boxes as true ones: the highest threshold keeping 2 (up to 0.8)
    assert choose_min_score(outputs, truth, "<OD>", filters, "at_least_count")["min_score"] == 0.8
    # F1: 1 box 0.667, 2 boxes 0.5, 3 boxes (P 2/3, R 1) 0.8, 4 boxes 0.667: keep 3, above 0.2
    assert choose_min_score(outputs, truth, "<OD>", filters, "f1")["min_score"] == 0.225
    # a rule after the threshold counts: with a duplicate of the circle, NMS keeps the count at 2 down to 0.2
    dup = [dict(outputs[0], bboxes=outputs[0]["bboxes"][:1] * 2 + outputs[0]["bboxes"][2:],
                labels=["circle", "circle", "square", "square"])]
    assert choose_min_score(dup, truth, "<OD>", filters, "count")["min_score"] == 0.225
    with pytest.raises(ValueError, match="one dict\\(type='ScoreThreshold'\\) among the filters; they hold 0"):
        choose_min_score(outputs, truth, "<OD>", filters[:1], "count")
    with pytest.raises(ValueError, match="must be one of \\('count', 'at_least_count', 'f1'\\), got 'auc'"):
        choose_min_score(outputs, truth, "<OD>", filters, "auc")
    scoped = [dict(filters[1], type="florence.ScoreThreshold")]  # the registry's scoped name is the same rule
    assert choose_min_score(outputs, truth, "<OD>", scoped, "count")["min_score"] == 0.425
    with pytest.raises(ValueError, match="the 1 labelled items hold no true regions of <OD>"):
        choose_min_score(outputs, Truth([{"bboxes": [], "labels": []}]), "<OD>", filters, "count")


def annotator(images, task):
    """A scripted detector: one "red circle" per image, at a place that follows from the pixels."""
    import numpy as np

    out = []
    for image in images:
        s = int(np.asarray(image, dtype=np.int64).sum())
        out.append({"bboxes": [[s % 20, s % 17, 30 + s % 20, 30 + s % 13]], "labels": ["red circle"],
                    "scores": [0.5 + (s % 50) / 100]})
    return out


def toy(annotator):
    scenes = dict(type="SyntheticScenes", image_size=64, tasks=["<OD>"])
    train_options = {"train_cfg.max_iters": 2, "train_dataloader.batch_size": 2, "param_scheduler": [],
                     "train_dataloader.dataset.image_size": 64, "model.model.vision.window_size": 4,
                     "default_hooks.checkpoint.interval": 2}
    return dict(tasks=["<OD>"], annotators=[annotator], images=dict(scenes, seed=777, length=6),
                filters=[dict(type="KnownLabels", labels="florence.data.synthetic:category_names"),
                         dict(type="ScoreThreshold", min_score=0.0)],
                label=dict(batch_size=3, shard_size=3, generation=dict(num_beams=1, max_new_tokens=20)),
                rounds=1, train=dict(config=MAIN, objects_from_boxes=True, cfg_options=train_options,
                                     views=["identity", "hflip"]),
                relabel=dict(views=["identity", "hflip"], merge=dict(type="Consensus", min_votes=1)),
                truth_baseline=True, evaluate=dict(dataset=dict(scenes, seed=2024, length=4), batch_size=4))


def test_the_loop_runs_end_to_end_and_a_restart_redoes_nothing(tmp_path, monkeypatch):
    report = run_data_engine(toy(annotator), tmp_path)
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    assert report["rounds"][0]["annotators"] == ["annotator"] and report["rounds"][0]["labels"] == 6
    assert [row["stage"] for row in report["rounds"][0]["heldout"]["<OD>"]] == [
        "unfiltered", "+ KnownLabels", "+ ScoreThreshold"]
    manifest = json.loads((tmp_path / "round_0" / "labels" / "manifest.json").read_text())
    assert report["rounds"][0]["labels"] == manifest["labels"] and manifest["images"] == 6
    # round 1's annotators are the model trained on round 0's labels (exported for 64 px images), read
    # through the relabel views and merged; each view measured on its own, then the merge and the filters
    model = str(tmp_path / "round_1" / "model")
    assert report["rounds"][1]["annotators"] == [f"{model} [identity]", f"{model} [hflip]"]
    assert [row["stage"] for row in report["rounds"][1]["heldout"]["<OD>"]] == [
        f"annotator {model} [identity]", f"annotator {model} [hflip]", "merged: Consensus(min_votes=1)",
        "+ KnownLabels", "+ ScoreThreshold"]
    config = report["rounds"][1]["config"]
    assert config["images"] == 6 and config["merge"] == "Consensus(min_votes=1)"
    assert config["train"]["views"] == ["identity", "hflip"]
    assert config["train"]["cfg_options"]["train_cfg.max_iters"] == 2
    # every step's seconds: labelling by stage, training with its export, measuring
    seconds = report["rounds"][1]["seconds"]
    assert {"read images", f"annotator {model} [hflip]", "merge", "KnownLabels"} <= set(seconds["label_stages"])
    assert all(seconds[k] > 0 for k in ("label", "train", "measure"))
    assert report["rounds"][0]["seconds"]["train"] is None
    assert report["truth_baseline"]["seconds"]["train"] > 0
    assert json.loads((tmp_path / "round_1" / "train.json").read_text())["iterations"] == 2
    # the student's training data: round 0's label shards, each through RandomViews' mirrors
    dumped = next((tmp_path / "round_1" / "train").glob("*.py")).read_text()
    assert dumped.count("florence.RandomViews") == 2 and "round_0/labels/shard-00001.jsonl" in dumped
    assert "'hflip'" in dumped
    assert json.loads((tmp_path / "round_1" / "model" / "preprocessor_config.json").read_text())["size"]["height"] == 64
    assert (tmp_path / "round_1" / "train" / "iter_2.pth").exists()
    truth_lines = (tmp_path / "truth" / "labels.jsonl").read_text().splitlines()
    assert len(truth_lines) == 6 and json.loads(truth_lines[0])["annotation"] == SyntheticScenes(
        seed=777, length=6, image_size=64, tasks=["<OD>"])[0]["annotation"]
    assert report["truth_baseline"]["heldout"]["<OD>"][0]["stage"] == "unfiltered"
    assert (tmp_path / "report.md").read_text() == format_report(report)

    import florence.label.rounds as rounds

    monkeypatch.setattr(rounds, "_outputs", lambda *a: pytest.fail("measured again"))
    monkeypatch.setattr(rounds, "label_quality", lambda *a: pytest.fail("measured again"))
    monkeypatch.setattr("mmengine.runner.Runner.train", lambda self: pytest.fail("trained again"))
    monkeypatch.setattr("florence.inference.pipeline", lambda *a, **k: pytest.fail("a model loaded again"))
    again = run_data_engine(toy(annotator), tmp_path)  # every step's result is there: nothing is redone
    assert again == report
    held = tmp_path / "round_0" / "heldout.json"  # as an earlier florence wrote it: no seconds
    held.write_text(json.dumps(json.loads(held.read_text())["tasks"]))
    older = run_data_engine(toy(annotator), tmp_path)
    assert older["rounds"][0]["heldout"] == report["rounds"][0]["heldout"]
    assert older["rounds"][0]["seconds"]["measure"] is None


def test_a_run_that_measures_leaves_the_last_rounds_labels_out(tmp_path):
    report = run_data_engine(dict(toy(annotator), truth_baseline=False, label_final_round=False), tmp_path)
    assert report["rounds"][1]["labels"] is None and report["rounds"][1]["heldout"]["<OD>"]
    assert (tmp_path / "round_1" / "model" / "config.json").exists() and not (tmp_path / "round_1" / "labels").exists()


def test_the_student_trains_on_labelled_data_beside_the_labels_and_alone_for_the_baseline(tmp_path):
    from florence.engine import load_config
    from florence.registry import DATASETS

    cfg = toy(annotator)
    labelled = dict(cfg["images"], seed=0, length=4)
    cfg = dict(cfg, train=dict(cfg["train"], labelled=[labelled]), truth_baseline=False, labelled_baseline=True,
               label_final_round=False)
    report = run_data_engine(cfg, tmp_path)

    def trained_on(folder):
        dumped = next((tmp_path / folder / "train").glob("*.py"))
        return DATASETS.build(load_config(str(dumped)).train_dataloader.dataset)

    student = trained_on("round_1")  # round 0's 6 labels (2 shards) and the 4 labelled scenes, each mirrored at random
    assert len(student) == 6 + 4 and [type(d.dataset).__name__ for d in student.datasets] == [
        "JsonlDataset", "JsonlDataset", "SyntheticScenes"]
    assert student.datasets[2].dataset[1]["annotation"] == SyntheticScenes(**{
        k: v for k, v in labelled.items() if k != "type"})[1]["annotation"]
    alone = trained_on("labelled")
    assert len(alone) == 4 and [type(d.dataset).__name__ for d in alone.datasets] == ["SyntheticScenes"]
    assert report["labelled_baseline"]["heldout"]["<OD>"][0]["stage"] == "unfiltered"
    assert report["labelled_baseline"]["config"]["train"]["labelled"] == ["SyntheticScenes(seed=0, length=4)"]
    assert "- trained on the labelled data alone: 0 images; " in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="labelled_baseline trains on train\\['labelled'\\] alone"):
        run_data_engine(dict(toy(annotator), labelled_baseline=True), tmp_path / "none")


def test_the_teacher_can_be_trained_on_the_labelled_data_first(tmp_path):
    cfg = toy(annotator)
    labelled = dict(cfg["images"], seed=0, length=4)
    cfg = dict(cfg, annotators=[dict(teacher="labelled", view=v) for v in ("identity", "hflip")],
               train=dict(cfg["train"], labelled=[labelled]), rounds=0, truth_baseline=False, labelled_baseline=True)
    report = run_data_engine(cfg, tmp_path)
    teacher = str(tmp_path / "labelled" / "model")  # trained once: round 0's annotator and the labelled baseline
    assert report["rounds"][0]["annotators"] == [f"{teacher} [identity]", f"{teacher} [hflip]"]
    assert report["labelled_baseline"]["model"] == teacher
    assert json.loads((tmp_path / "labelled" / "train.json").read_text())["iterations"] == 2
    assert report["rounds"][0]["labels"] == json.loads(
        (tmp_path / "round_0" / "labels" / "manifest.json").read_text())["labels"]
    with pytest.raises(ValueError, match="dict\\(teacher='labelled'\\) is the model trained on"):
        run_data_engine(dict(cfg, train=toy(annotator)["train"], labelled_baseline=False), tmp_path / "none")


def ranked(images, task):
    """A scripted detector: five "red circle" boxes per image, scored 0.9, 0.7, 0.5, 0.3 and 0.1."""
    return [{"bboxes": [[4 * k, 4 * k, 4 * k + 20, 4 * k + 20] for k in range(5)], "labels": ["red circle"] * 5,
             "scores": [0.9, 0.7, 0.5, 0.3, 0.1]} for _ in images]


def test_each_round_labels_with_the_threshold_chosen_on_the_labelled_items(tmp_path, monkeypatch):
    cfg = toy(ranked)
    dev = dict(cfg["images"], seed=999, length=4)
    cfg = dict(cfg, rounds=0, truth_baseline=False, calibrate=dict(dataset=dev, criterion="count"))
    true = sum(len(SyntheticScenes(**{k: v for k, v in dev.items() if k != "type"})[i]["annotation"]["bboxes"])
               for i in range(4))
    keep = min(range(6), key=lambda k: (abs(4 * k - true), -k))  # boxes per image closest to the truth; ties: more
    threshold = [0.925, 0.725, 0.525, 0.325, 0.125, 0.0][keep]
    report = run_data_engine(cfg, tmp_path)
    assert report["rounds"][0]["calibration"] == dict(min_score=threshold, criterion="count", true_boxes=true,
                                                      task="<OD>", items=4)
    assert report["rounds"][0]["seconds"]["calibrate"] > 0
    assert report["rounds"][0]["config"]["filters"][1] == f"ScoreThreshold(min_score={threshold})"
    shards = sorted((tmp_path / "round_0" / "labels").glob("shard-*.jsonl"))
    labels = [json.loads(line) for f in shards for line in f.read_text().splitlines()]
    assert len(labels) == 6 and all(len(x["annotation"]["bboxes"]) == keep for x in labels)
    assert f"ScoreThreshold {threshold} chosen by count on 4 labelled items ({true} true boxes)" in (
        tmp_path / "report.md").read_text()
    import florence.label.rounds as rounds

    monkeypatch.setattr(rounds, "_outputs", lambda *a: pytest.fail("chosen again"))
    assert run_data_engine(cfg, tmp_path) == report  # kept in round_0/calibration.json
    with pytest.raises(ValueError, match="calibration.json was chosen for another calibrate, filters, merge or"):
        run_data_engine(dict(cfg, calibrate=dict(dataset=dev, criterion="f1")), tmp_path)
    with pytest.raises(ValueError, match="round_0 was labelled with a calibrated threshold"):
        run_data_engine(dict(cfg, calibrate=None), tmp_path)
    for bad, message in ((dict(calibrate=dict(dataset=dev, criterion="auc")), "got 'auc'"),
                         (dict(calibrate=dict(dataset=dev, threshold=0.3)), "calibrate takes dataset"),
                         (dict(filters=cfg["filters"][:1]), "they hold 0")):
        with pytest.raises(ValueError, match=message):  # before any work
            run_data_engine(dict(cfg, **bad), tmp_path / "bad")
    assert not (tmp_path / "bad" / "round_0").exists()


def test_the_rounds_label_tar_shards_and_the_student_trains_on_their_labels(tmp_path):
    from florence.data import write_shards

    cfg = toy(ranked)
    write_shards(SyntheticScenes(seed=777, length=6, image_size=64, tasks=["<OD>"]), tmp_path / "shards",
                 samples_per_shard=4)
    cfg = dict(cfg, images=str(tmp_path / "shards"), truth_baseline=False, label_final_round=False, evaluate=None)
    report = run_data_engine(cfg, tmp_path / "run")
    assert report["rounds"][0]["labels"] == 6 and report["rounds"][0]["config"]["images"] == 6
    first = json.loads((tmp_path / "run" / "round_0" / "labels" / "shard-00000.jsonl").read_text().splitlines()[0])
    assert first["image"] == f"{tmp_path / 'shards' / 'shard-000000.tar'}:000000000"
    assert json.loads((tmp_path / "run" / "round_1" / "train.json").read_text())["iterations"] == 2
    assert (tmp_path / "run" / "round_1" / "model" / "config.json").exists()
    with pytest.raises(ValueError, match="truth_baseline trains on the images' own annotations: images must be"):
        run_data_engine(dict(cfg, truth_baseline=True), tmp_path / "truth")


def test_a_round_without_labels_stops_with_the_reason(tmp_path):
    cfg = toy(lambda images, task: [{"bboxes": [[0, 0, 9, 9]], "labels": ["moon"], "scores": [0.9]}] * len(images))
    with pytest.raises(ValueError, match="no labels to train on in .*round_0/labels: every label was filtered out"):
        run_data_engine(cfg, tmp_path)  # KnownLabels drops every "moon"
    with pytest.raises(ValueError, match="needs train=dict"):
        run_data_engine(dict(cfg, train=None), tmp_path / "untrained")


ROUNDS_RUN = Path(__file__).with_name("rounds_run.py")
RESULTS = ("round_*/labels/**/*", "round_*/model/*", "round_*/heldout.json", "truth/labels.jsonl", "truth/model/*",
           "truth/heldout.json", "report.json", "report.md")


def start_rounds(work_dir, export_pause=0.0):
    env = dict(os.environ, FLORENCE_TEST_EXPORT_PAUSE=str(export_pause), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(ROUNDS_RUN), str(work_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)


def kill(proc):
    os.killpg(proc.pid, signal.SIGKILL)  # the run and any dataloader worker of its training
    proc.wait()
    proc.stdout.close()


def results(work_dir: Path) -> dict:
    """Every result file of a data-engine run (labels, exported models, measurements, report) by its
    path, bytes compared; the work dir's own path and the seconds each step took left out."""
    files = {}
    for pattern in RESULTS:
        for path in sorted(work_dir.glob(pattern)):
            if path.is_file() and not path.name.startswith("."):
                data = path.read_bytes()
                if path.suffix in (".json", ".md"):
                    data = data.decode().replace(str(work_dir), "WORK")
                    data = untimed(json.loads(data)) if path.suffix == ".json" else data.split(TIMES)[0]
                files[str(path.relative_to(work_dir))] = data
    return files


def untimed(data):
    """``data`` (parsed JSON) without the seconds and speeds in it, at any depth."""
    if isinstance(data, dict):
        return {k: untimed(v) for k, v in data.items() if "second" not in k}
    return [untimed(v) for v in data] if isinstance(data, list) else data


def test_rounds_killed_at_random_moments_end_with_the_uninterrupted_runs_results(tmp_path):
    """The whole loop (label, train, export, label, truth baseline, measurements) SIGKILLed inside a
    model export (its weights written, its tokenizer not yet) and then at 4 random moments, started
    again after each kill: the same labels, models (bit for bit), measurements and report as a run
    never interrupted. Before exports were atomic, the restart after the first kill skipped the
    half-written export and failed on its missing tokenizer."""
    reference = tmp_path / "reference"
    proc = start_rounds(reference)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "DONE" in out, out[-4000:]
    expected = results(reference)
    assert any("round_1/model/model.safetensors" == k for k in expected) and "truth/labels.jsonl" in expected

    work = tmp_path / "killed"
    proc = start_rounds(work, export_pause=60)
    for line in proc.stdout:
        if line.startswith("EXPORTING") and "round_1" in line:
            break
    kill(proc)
    assert not (work / "round_1" / "model").exists()  # nothing under the model's name yet
    rng, kills = random.Random(26), 1
    for _ in range(4):
        proc = start_rounds(work)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=rng.uniform(1.0, 9.0))  # a whole run takes ~10 s
        if proc.poll() is None:
            kill(proc)
            kills += 1
        else:
            proc.stdout.close()
    proc = start_rounds(work)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "DONE" in out, out[-4000:]
    assert kills >= 3, f"only {kills} kills landed before the run ended"
    got = results(work)
    assert sorted(got) == sorted(expected)
    differ = [name for name in expected if got[name] != expected[name]]
    assert not differ, differ
