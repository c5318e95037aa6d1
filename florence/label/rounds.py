"""The data engine's rounds (``tools/data_engine.py``): label, then train on the labels and label again.

Round 0 labels ``images`` with ``annotators`` (merge, filters: :func:`florence.label.label`). Round
r >= 1 trains a fresh model with ``train.config`` (the project's trainer; its training data replaced by
round r-1's label shards) and labels ``images`` again with it. With ``truth_baseline`` the same training
also runs on the images' own annotations, for comparison. With ``evaluate.dataset`` (held-out images
with ground truth) every annotator is measured there: its labels before filtering and after each filter
(precision / recall at IoU 0.5 and mAP, :func:`label_quality`), and each trained model. Every step
writes its result under ``work_dir`` and is skipped when that result is complete, so a killed run
started again continues where it stopped (labels by shard, training from its last checkpoint).

Config keys (``configs/data_engine/*.py``): ``images``, ``annotators`` (checkpoint folders, hub ids,
callables, or ``dict(config=, checkpoint=)`` for a ``tools/train.py`` checkpoint; with ``view="hflip"``
etc. the model reads mirrored or rescaled images, :mod:`florence.label.views`), ``tasks``, ``merge``, ``filters``,
``label`` (``batch_size``, ``shard_size``, ``generation``), ``rounds``, ``train`` (``config``,
``cfg_options``), ``truth_baseline``, ``evaluate`` (``dataset``, ``batch_size``).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_text
from .engine import _annotators, _name, label
from .filters import apply_filters, build_filters, rule_name
from .merge import build_merger

__all__ = ["run_data_engine", "label_quality", "format_report"]


def _build(spec):
    from ..registry import DATASETS

    return DATASETS.build(spec) if isinstance(spec, dict) else spec


def _outputs(annotators, merge, dataset, task, batch_size, generation) -> list:
    """Each annotator's output (merged when asked) for every item of ``dataset``, in memory."""
    runners = _annotators(annotators, dict(generation or {}))
    merger = build_merger(merge)
    images = [dataset[i]["image"] for i in range(len(dataset))]
    per = [[o for s in range(0, len(images), batch_size) for o in run(images[s:s + batch_size], task)]
           for _, run in runners]
    if merger is None:
        return per[0] if len(per) == 1 else [o for outputs in zip(*per) for o in outputs]
    return [merger(list(outputs), task) for outputs in zip(*per)]


def label_quality(outputs, dataset, task, filters=()) -> list[dict]:
    """Rows ``{stage, boxes, precision@0.5, recall@0.5, bbox_mAP_50, bbox_mAP}`` of ``outputs`` (one
    per item of ``dataset``, whose ``annotation`` is the truth): unfiltered, then after each rule."""
    from ..evaluation.functions import box_precision_recall, coco_bbox_map

    rules = build_filters(filters)
    repeat = max(1, len(outputs) // len(dataset))  # several unmerged annotators: each output in turn
    truth = [dataset[i // repeat] for i in range(len(outputs))]
    rows, preds = [], list(outputs)
    for n in range(len(rules) + 1):
        if n:  # one more rule on the previous stage's outputs (a dropped sample stays dropped)
            preds = [None if p is None else apply_filters(rules[n - 1:n], p, task, t["image_size"], {})
                     for p, t in zip(preds, truth)]
        samples = [dict(pred=p if p is not None else {}, gt=t["annotation"], image_size=t["image_size"])
                   for p, t in zip(preds, truth)]
        stage = "unfiltered" if n == 0 else "+ " + rule_name(rules[n - 1])
        found = coco_bbox_map(samples)
        rows.append(dict(stage=stage, **box_precision_recall(samples), bbox_mAP_50=found["bbox_mAP_50"],
                         bbox_mAP=found["bbox_mAP"]))
    return rows


def _train(train: dict, label_files, out: Path, objects_from_boxes: bool) -> Path:
    """A fresh model trained by ``train["config"]`` on ``label_files`` (florence JSON Lines), exported to
    ``out/model``; resumes a killed training, skips a finished one."""
    model_dir = out / "model"
    if (model_dir / "config.json").exists():
        return model_dir
    from mmengine.runner import Runner

    from ..engine import load_config, trained_image_size

    if not any(f.stat().st_size for f in label_files):
        raise ValueError(f"no labels to train on in {', '.join(sorted({str(f.parent) for f in label_files}))}: "
                         "every label was filtered out (see its manifest.json) or no image was labelled")
    cfg = load_config(train["config"], train.get("cfg_options"))
    size = trained_image_size(cfg)
    cfg.train_dataloader.dataset = dict(type="florence.MultiTaskDataset", image_size=size, datasets=[
        dict(type="florence.JsonlDataset", ann_file=str(f), objects_from_boxes=objects_from_boxes)
        for f in label_files])
    for key in ("val_dataloader", "val_cfg", "val_evaluator", "test_dataloader", "test_cfg", "test_evaluator"):
        cfg[key] = None  # measured on the held-out set below, as every annotator is
    cfg.work_dir = str(out / "train")
    cfg.resume = (out / "train" / "last_checkpoint").exists()
    runner = Runner.from_cfg(cfg)
    runner.train()
    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    model.export(model_dir, image_size=size)
    return model_dir


def _exported(spec, folder: Path):
    """An annotator: ``dict(config=CONFIG, checkpoint=PTH or its work dir)`` (a training checkpoint)
    exported to ``folder`` once, with ``view=`` the exported model read through that view
    (``dict(model=folder, view=...)``); anything else as it is."""
    if not isinstance(spec, dict) or "model" in spec:
        return spec
    if "view" in spec:
        return dict(model=_exported({k: v for k, v in spec.items() if k != "view"}, folder), view=spec["view"])
    if not (folder / "config.json").exists():
        from ..engine import export_checkpoint, load_config

        checkpoint = Path(spec["checkpoint"])
        if checkpoint.is_dir():  # a work dir: its latest checkpoint
            pointer = checkpoint / "last_checkpoint"
            if not pointer.exists():
                raise FileNotFoundError(f"annotator checkpoint {checkpoint} is a folder without last_checkpoint: "
                                        "name a .pth written by tools/train.py, or its work dir")
            checkpoint = Path(pointer.read_text().strip())
        export_checkpoint(load_config(spec["config"], spec.get("cfg_options")), checkpoint, folder)
    return str(folder)


def _export_name(spec, k: int) -> str:
    """The folder a training checkpoint annotator is exported to: one per checkpoint, which its views
    share."""
    if not isinstance(spec, dict) or "model" in spec:
        return str(k)
    import hashlib

    key = json.dumps([str(spec.get("config")), str(spec.get("checkpoint")), spec.get("cfg_options")], sort_keys=True)
    return "model-" + hashlib.sha1(key.encode()).hexdigest()[:10]


def _labels(out_dir: Path) -> list[Path]:
    return [out_dir / f for f in json.loads((out_dir / "manifest.json").read_text())["files"]]


def run_data_engine(cfg, work_dir) -> dict:
    """Run the rounds of ``cfg`` (a dict or mmengine Config) under ``work_dir``; returns the report
    (also ``work_dir/report.json`` and ``report.md``)."""
    from ..data.writers import write_jsonl

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    tasks = list(cfg["tasks"])
    images = _build(cfg["images"])
    opts = dict(cfg.get("label") or {})
    generation = opts.pop("generation", None)
    filters, merge = list(cfg.get("filters") or []), cfg.get("merge")
    evaluate = cfg.get("evaluate") or {}
    heldout = _build(evaluate["dataset"]) if evaluate.get("dataset") else None
    train = cfg.get("train")
    if (int(cfg.get("rounds", 0)) > 0 or cfg.get("truth_baseline")) and not (train or {}).get("config"):
        raise ValueError("rounds > 0 and truth_baseline train a model: the config needs train=dict(config=PATH, ...)")
    objects = bool((train or {}).get("objects_from_boxes", False))
    report = dict(tasks=tasks, rounds=[], truth_baseline=None)

    items = []  # the held-out items, read (or drawn) once for every measurement

    def measure(annotators, merge_cfg, rules, where: Path):
        """The annotators' label quality on the held-out images (kept in ``where``: measured once)."""
        if heldout is None:
            return None
        if not where.exists():
            items[:] = items or [heldout[i] for i in range(len(heldout))]
            write_text(where, json.dumps({t: label_quality(_outputs(annotators, merge_cfg, items, t, evaluate.get(
                "batch_size", 32), generation), items, t, rules) for t in tasks}))
        return json.loads(where.read_text())

    annotators = [_exported(a, work_dir / "annotators" / _export_name(a, k)) for k, a in enumerate(cfg["annotators"])]
    for r in range(int(cfg.get("rounds", 0)) + 1):
        here = work_dir / f"round_{r}"
        if r > 0:
            model = _train(train, _labels(work_dir / f"round_{r - 1}" / "labels"), here, objects)
            annotators, merge = [str(model)], None
        manifest = label(annotators, images, tasks, here / "labels", filters=filters, merge=merge, **opts,
                         generation=generation)
        report["rounds"].append(dict(round=r, annotators=[_name(a) for a in annotators],
                                     labels=manifest["labels"], filters=manifest["filters"],
                                     bad_images=len(manifest["bad_images"]),
                                     heldout=measure(annotators, merge, filters, here / "heldout.json")))
        _save(work_dir, report)
    if cfg.get("truth_baseline"):
        truth = work_dir / "truth"
        if not (truth / "labels.jsonl").exists():
            write_jsonl(images, truth / "labels.jsonl")
        model = _train(train, [truth / "labels.jsonl"], truth, objects)
        report["truth_baseline"] = dict(model=str(model),
                                        heldout=measure([str(model)], None, (), truth / "heldout.json"))
    _save(work_dir, report)
    return report


def _save(work_dir: Path, report: dict) -> None:
    write_text(work_dir / "report.json", json.dumps(report, indent=1))
    write_text(work_dir / "report.md", format_report(report))


def format_report(report: dict) -> str:
    """The report as markdown: per round and task, the label quality on the held-out images by stage;
    the truth baseline's model last."""
    lines = ["| labels of | task | stage | boxes | precision@0.5 | recall@0.5 | mAP@0.5 | mAP |",
             "|---|---|---|---|---|---|---|---|"]
    runs = [(f"round {r['round']} ({', '.join('/'.join(Path(a).parts[-2:]) or a for a in r['annotators'])})",
             r["heldout"]) for r in report["rounds"]]
    if report.get("truth_baseline"):
        runs.append(("trained on the truth", report["truth_baseline"]["heldout"]))
    for who, heldout in runs:
        for task, rows in (heldout or {}).items():
            for row in rows:
                lines.append(f"| {who} | {task} | {row['stage']} | {row['boxes']} | {row['precision@0.5']:.3f} | "
                             f"{row['recall@0.5']:.3f} | {row['bbox_mAP_50']:.3f} | {row['bbox_mAP']:.3f} |")
    return "\n".join(lines) + "\n"
