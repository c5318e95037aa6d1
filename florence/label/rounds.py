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
callables, ``dict(config=, checkpoint=)`` for a ``tools/train.py`` checkpoint, or ``dict(teacher="labelled")``:
Noisy Student's teacher, the model trained first on ``train["labelled"]`` alone, the labelled baseline's; with
``view="hflip"`` etc. the model reads mirrored or rescaled images, :mod:`florence.label.views`), ``tasks``,
``merge``, ``filters``,
``label`` (``batch_size``, ``shard_size``, ``generation``), ``rounds``, ``train`` (``config``,
``cfg_options``, ``objects_from_boxes``; ``views``: the student reads each sample through one of these
views drawn at random, :class:`~florence.label.views.RandomViews`; ``labelled``: datasets with true
labels the student trains on beside the pseudo-labels, Noisy Student's recipe), ``relabel`` (how round
r >= 1's student labels: ``views``, each one annotator, and ``merge``; default: the student alone),
``truth_baseline``, ``labelled_baseline`` (the same training on ``train["labelled"]`` alone: what the
pseudo-labels add), ``evaluate`` (``dataset``, ``batch_size``), ``label_final_round`` (default True;
False: the last round's model is measured but does not label ``images``), ``calibrate`` (``dataset``:
labelled items nobody trains on, ``criterion`` ``"count"``, ``"at_least_count"`` or ``"f1"``, ``task``,
``batch_size``: each round's annotators read them first and the ``ScoreThreshold`` among ``filters`` is
chosen for that round, :func:`choose_min_score`).

The report gives, per round: each annotator's label quality on the held-out images, the merged
labels', and after each filter; the config of the round; and the seconds of each step (labelling,
with its stages, training with the export, measuring).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..atomic import write_text
from .engine import _paths, _tar_parts, label
from .stages import _annotators, _name
from .filters import ScoreThreshold, apply_filters, build_filters, regions_of, rule_name
from .merge import build_merger

__all__ = ["run_data_engine", "label_quality", "choose_min_score", "format_report"]


def _build(spec):
    from ..registry import DATASETS

    return DATASETS.build(spec) if isinstance(spec, dict) else spec


def _outputs(annotators, dataset, task, batch_size, generation) -> list[tuple[str, list]]:
    """Each annotator's name and outputs for every item of ``dataset``, in memory."""
    runners = _annotators(annotators, dict(generation or {}))
    images = [dataset[i]["image"] for i in range(len(dataset))]
    return [(name, [o for s in range(0, len(images), batch_size) for o in run(images[s:s + batch_size], task)])
            for name, run in runners]


def _merged(per: list, merge, task) -> list:
    """Annotators' outputs ``per`` (from :func:`_outputs`) as the round labels them: merged by
    ``merge``, else all of them pooled (each item's outputs in turn)."""
    merger = build_merger(merge)
    if merger is None:
        return per[0][1] if len(per) == 1 else [o for outputs in zip(*(o for _, o in per)) for o in outputs]
    return [merger(list(outputs), task) for outputs in zip(*(o for _, o in per))]


def _quality(per: list, merge, dataset, task, rules) -> list[dict]:
    """The rows of :func:`label_quality` for annotators' outputs ``per`` (from :func:`_outputs`):
    with several, each annotator's first; then the merged labels (with ``merge``; else all of them
    pooled), unfiltered and after each rule."""
    rows = []
    if len(per) > 1:
        for name, outputs in per:
            rows.append(dict(label_quality(outputs, dataset, task)[0], stage=f"annotator {name}"))
    merged = label_quality(_merged(per, merge, task), dataset, task, rules)
    if build_merger(merge) is not None:
        merged[0]["stage"] = f"merged: {_describe(merge)}"
    return rows + merged


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


CRITERIA = ("count", "at_least_count", "f1")
GRID = [round(0.025 * k, 3) for k in range(40)]  # the thresholds tried: 0, 0.025, ..., 0.975


def _is_threshold(rule) -> bool:
    if isinstance(rule, dict):
        kind = rule.get("type")
        return kind is ScoreThreshold or str(kind).rpartition(".")[2] == "ScoreThreshold"  # florence.ScoreThreshold
    return isinstance(rule, ScoreThreshold)


def _with_min_score(rule, min_score: float):
    return ScoreThreshold(min_score) if isinstance(rule, ScoreThreshold) else dict(rule, min_score=min_score)


def _threshold_at(filters, criterion: str) -> int:
    """Where the one ``dict(type="ScoreThreshold")`` calibration chooses is among ``filters``."""
    if criterion not in CRITERIA:
        raise ValueError(f"calibrate criterion must be one of {CRITERIA}, got {criterion!r}")
    at = [n for n, rule in enumerate(filters) if _is_threshold(rule)]
    if len(at) != 1:
        raise ValueError("calibrate chooses the min_score of one dict(type='ScoreThreshold') among the filters; "
                         f"they hold {len(at)}")
    return at[0]


def choose_min_score(outputs, dataset, task, filters, criterion: str = "count") -> dict:
    """The ``min_score`` of the one ``dict(type="ScoreThreshold")`` among ``filters``, chosen on
    ``outputs`` (one per item of ``dataset``, or several in turn, as :func:`label_quality` takes them)
    of labelled items: of the thresholds in ``GRID``, with every rule applied, ``"count"`` keeps as many
    regions as the items hold true ones (a student learns from its labels how many objects a scene
    holds: too few labels teach it to stop early), ``"at_least_count"`` is the highest that keeps at
    least as many (never fewer labels than objects; 0 when no threshold does), ``"f1"`` has the highest
    F1 at IoU 0.5; ties go to the lower threshold. Returns ``min_score``, ``true_boxes``, ``criterion``
    and ``curve``: per threshold, the boxes kept and their precision and recall at IoU 0.5."""
    from ..evaluation.functions import box_precision_recall

    at = _threshold_at(filters, criterion)
    before, rest = build_filters(filters[:at]), build_filters(filters[at + 1:])
    repeat = max(1, len(outputs) // len(dataset))
    truth = [dataset[i // repeat] for i in range(len(outputs))]
    ready = [None if o is None else apply_filters(before, o, task, t["image_size"], {}) for o, t in zip(outputs, truth)]
    true_boxes = sum(len(regions_of(t["annotation"], task)) for t in truth)
    if not true_boxes:
        raise ValueError(f"calibrate: the {len(dataset)} labelled items hold no true regions of {task}: name a task "
                         "with regions (calibrate=dict(task=...)) and items annotated for it")
    curve = []
    for min_score in GRID:
        rules = [ScoreThreshold(min_score), *rest]  # the threshold as its rule would be built
        kept = [None if o is None else apply_filters(rules, o, task, t["image_size"], {}) for o, t in zip(ready, truth)]
        found = box_precision_recall([dict(pred=p or {}, gt=t["annotation"]) for p, t in zip(kept, truth)])
        curve.append(dict(min_score=min_score, boxes=found["boxes"], precision=found["precision@0.5"],
                          recall=found["recall@0.5"]))

    def cost(point):
        if criterion == "count":
            return abs(point["boxes"] - true_boxes)
        if criterion == "at_least_count":
            return -point["min_score"] if point["boxes"] >= true_boxes else 1
        p, r = point["precision"], point["recall"]
        return -(2 * p * r / (p + r) if p + r else 0.0)

    best = min(curve, key=cost)  # the first of equals: the lowest threshold
    return dict(min_score=best["min_score"], criterion=criterion, true_boxes=true_boxes, curve=curve)


def _train(train: dict, label_files, out: Path, objects_from_boxes: bool) -> Path:
    """A fresh model trained by ``train["config"]`` on ``label_files`` (florence JSON Lines), each sample
    through a random one of ``train["views"]`` when given, exported to ``out/model``; resumes a killed
    training, skips a finished one. ``out/train.json`` keeps the seconds it took (training and export;
    a resumed training: its last part's)."""
    model_dir = out / "model"
    if (model_dir / "config.json").exists():
        return model_dir
    started, resumed = time.perf_counter(), (out / "train" / "last_checkpoint").exists()
    from mmengine.runner import Runner

    from ..engine import load_config, trained_image_size

    if label_files and not any(f.stat().st_size for f in label_files):
        raise ValueError(f"no labels to train on in {', '.join(sorted({str(f.parent) for f in label_files}))}: "
                         "every label was filtered out (see its manifest.json) or no image was labelled")
    cfg = load_config(train["config"], train.get("cfg_options"))
    size = trained_image_size(cfg)
    sources = [dict(type="florence.JsonlDataset", ann_file=str(f), objects_from_boxes=objects_from_boxes)
               for f in label_files] + list(train.get("labelled") or [])  # Noisy Student: labelled data too
    if train.get("views"):  # input noise (florence.label.views.RandomViews, registered by florence.label)
        sources = [dict(type="florence.RandomViews", dataset=d, views=list(train["views"])) for d in sources]
    cfg.train_dataloader.dataset = dict(type="florence.MultiTaskDataset", image_size=size, datasets=sources)
    for key in ("val_dataloader", "val_cfg", "val_evaluator", "test_dataloader", "test_cfg", "test_evaluator"):
        cfg[key] = None  # measured on the held-out set below, as every annotator is
    cfg.work_dir = str(out / "train")
    cfg.resume = resumed
    runner = Runner.from_cfg(cfg)
    runner.train()
    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    model.export(model_dir, image_size=size)
    write_text(out / "train.json", json.dumps(dict(seconds=time.perf_counter() - started, resumed=resumed,
                                                   iterations=runner.iter)))
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


def _is_teacher(spec) -> bool:
    return isinstance(spec, dict) and "teacher" in spec


def _teacher(spec: dict, model: str):
    """``dict(teacher="labelled", view=...)``: the model trained on ``train["labelled"]`` alone (``model``),
    through that view."""
    return dict(model=model, view=spec["view"]) if spec.get("view") else model


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


def _describe(cfg, keys=None) -> str:
    """A merge or filter config entry (or object) in a few words, for the report: its type and its
    arguments (only ``keys``, when given)."""
    if cfg is None:
        return "none"
    if isinstance(cfg, dict):
        kind = cfg.get("type")
        kind = getattr(kind, "__name__", kind)
        shown = [k for k in cfg if k != "type"] if keys is None else [k for k in keys if k in cfg]
        return f"{kind}(" + ", ".join(f"{k}={cfg[k]}" for k in shown) + ")"
    return getattr(cfg, "__name__", type(cfg).__name__)


def _count(images) -> int:
    """How many images ``images`` holds, as :func:`~florence.label.label` reads it: a dataset, image
    files and folders of them, or tar shard folders."""
    from ..processing.image import image_files

    paths = _paths(images)
    if paths is None:
        return len(images)
    parts = _tar_parts(paths)
    return sum(map(len, parts)) if parts is not None else len(image_files(paths))


def _config(images, annotators, merge, filters, train=None) -> dict:
    """What produced a round's labels, as the report names it."""
    out = dict(images=_count(images), annotators=[_name(a) for a in annotators], merge=_describe(merge),
               filters=[_describe(f) for f in filters])
    if train is not None:
        out["train"] = _train_config(train)
    return out


def _train_config(train: dict) -> dict:
    return dict(config=str(train.get("config")), views=list(train.get("views") or []) or None,
                cfg_options=dict(train.get("cfg_options") or {}),
                labelled=[_describe(d, keys=("seed", "length", "ann_file")) for d in train.get("labelled") or []]
                or None)


def _seconds(path: Path):
    return json.loads(path.read_text())["seconds"] if path.exists() else None


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
    relabel = dict(cfg.get("relabel") or {})
    unknown = set(relabel) - {"views", "merge"}
    if unknown:
        raise ValueError(f"relabel takes views and merge, got {sorted(unknown)}")
    evaluate = cfg.get("evaluate") or {}
    heldout = _build(evaluate["dataset"]) if evaluate.get("dataset") else None
    train, rounds = cfg.get("train"), int(cfg.get("rounds", 0))
    if (rounds > 0 or cfg.get("truth_baseline")) and not (train or {}).get("config"):
        raise ValueError("rounds > 0 and truth_baseline train a model: the config needs train=dict(config=PATH, ...)")
    if cfg.get("labelled_baseline") and not (train or {}).get("labelled"):
        raise ValueError("labelled_baseline trains on train['labelled'] alone: the config needs "
                         "train=dict(config=PATH, labelled=[dataset, ...])")
    if cfg.get("truth_baseline") and _paths(images) is not None:
        raise ValueError("truth_baseline trains on the images' own annotations: images must be a dataset "
                         f"(e.g. dict(type='JsonlDataset', ...)), got {images!r:.80}")
    objects = bool((train or {}).get("objects_from_boxes", False))
    calibrate = dict(cfg.get("calibrate") or {})
    unknown = set(calibrate) - {"dataset", "criterion", "task", "batch_size"}
    if unknown or (calibrate and "dataset" not in calibrate):
        raise ValueError("calibrate takes dataset (labelled items), criterion, task and batch_size, "
                         f"got {sorted(calibrate)}")
    if calibrate:  # the config's mistakes before any work
        _threshold_at(filters, calibrate.get("criterion", "count"))
    report = dict(tasks=tasks, rounds=[], truth_baseline=None, labelled_baseline=None)

    def calibrated(annotators, merge_cfg, where: Path):
        """``filters`` with the ``ScoreThreshold`` chosen for these annotators on ``calibrate["dataset"]``
        (kept in ``where``: chosen once), and the choice."""
        if not calibrate:
            if where.exists():
                raise ValueError(f"{where.parent} was labelled with a calibrated threshold ({where}) and the config "
                                 "has no calibrate now: put it back, or start the run in a new work dir")
            return filters, None
        basis = json.loads(json.dumps(dict(calibrate=calibrate, filters=[_describe(f) for f in filters],
                                           merge=_describe(merge_cfg), annotators=[_name(a) for a in annotators]),
                                      default=lambda o: getattr(o, "__name__", type(o).__name__)))  # stable names
        if not where.exists():
            started = time.perf_counter()
            dev = _build(calibrate["dataset"])
            dev = [dev[i] for i in range(len(dev))]
            task = calibrate.get("task", tasks[0])
            per = _outputs(annotators, dev, task, calibrate.get("batch_size", 32), generation)
            chosen = choose_min_score(_merged(per, merge_cfg, task), dev, task, filters,
                                      calibrate.get("criterion", "count"))
            write_text(where, json.dumps(dict(chosen, task=task, items=len(dev), basis=basis,
                                              seconds=time.perf_counter() - started)))
        chosen = json.loads(where.read_text())
        if chosen.pop("basis", basis) != basis:  # (a file without one: written before florence kept it)
            raise ValueError(f"{where} was chosen for another calibrate, filters, merge or annotators than the "
                             "config's now: start the run in a new work dir (or delete that round to redo it)")
        return [_with_min_score(f, chosen["min_score"]) if _is_threshold(f) else f for f in filters], chosen

    items = []  # the held-out items, read (or drawn) once for every measurement

    def measure(annotators, merge_cfg, rules, where: Path):
        """The annotators' label quality on the held-out images (kept in ``where``: measured once), and
        the seconds it took."""
        if heldout is None:
            return None, None
        if not where.exists():
            started = time.perf_counter()
            items[:] = items or [heldout[i] for i in range(len(heldout))]
            quality = {t: _quality(_outputs(annotators, items, t, evaluate.get("batch_size", 32), generation),
                                   merge_cfg, items, t, rules) for t in tasks}
            write_text(where, json.dumps(dict(tasks=quality, seconds=time.perf_counter() - started)))
        done = json.loads(where.read_text())
        if "tasks" not in done:  # measured by an earlier florence, which kept no seconds
            return done, None
        return done["tasks"], done["seconds"]

    teachers = [a for a in cfg["annotators"] if _is_teacher(a)]  # Noisy Student: trained first, on labelled data
    if teachers and (any(a["teacher"] != "labelled" for a in teachers) or not (train or {}).get("labelled")):
        raise ValueError("an annotator dict(teacher='labelled') is the model trained on train['labelled'] alone: "
                         "the config needs train=dict(config=PATH, labelled=[dataset, ...])")
    teacher = str(_train(train, [], work_dir / "labelled", objects)) if teachers else None
    annotators = [_teacher(a, teacher) if _is_teacher(a) else _exported(a, work_dir / "annotators" / _export_name(a, k))
                  for k, a in enumerate(cfg["annotators"])]
    for r in range(rounds + 1):
        here = work_dir / f"round_{r}"
        if r > 0:
            model = _train(train, _labels(work_dir / f"round_{r - 1}" / "labels"), here, objects)
            views = relabel.get("views") or []
            annotators = [dict(model=str(model), view=v) for v in views] if views else [str(model)]
            merge = relabel.get("merge")
        rules, chosen = calibrated(annotators, merge, here / "calibration.json")
        quality, measured = measure(annotators, merge, rules, here / "heldout.json")  # first: the quick number
        if r == rounds and not cfg.get("label_final_round", True):  # a run that measures: the last model's labels
            manifest = dict(labels=None, filters=None, bad_images=[])  # would train no one
        else:
            manifest = label(annotators, images, tasks, here / "labels", filters=rules, merge=merge, **opts,
                             generation=generation)
        report["rounds"].append(dict(
            round=r, annotators=[_name(a) for a in annotators], labels=manifest["labels"],
            filters=manifest["filters"], bad_images=len(manifest["bad_images"]), heldout=quality,
            calibration=chosen and {k: v for k, v in chosen.items() if k not in ("curve", "seconds")},
            config=_config(images, annotators, merge, rules, train if r > 0 else None),
            seconds=dict(label=manifest.get("seconds"), label_stages=manifest.get("stage_seconds"),
                         calibrate=(chosen or {}).get("seconds"),
                         train=_seconds(here / "train.json") if r > 0 else None, measure=measured)))
        _save(work_dir, report)

    def baseline(key: str, folder: Path, label_files: list, count: int):
        model = _train(train, label_files, folder, objects)
        quality, measured = measure([str(model)], None, (), folder / "heldout.json")
        report[key] = dict(model=str(model), heldout=quality, config=dict(images=count, train=_train_config(train)),
                           seconds=dict(train=_seconds(folder / "train.json"), measure=measured))
        _save(work_dir, report)

    if cfg.get("truth_baseline"):  # checked above: images is a dataset
        truth = work_dir / "truth"
        if not (truth / "labels.jsonl").exists():
            write_jsonl(images, truth / "labels.jsonl")
        baseline("truth_baseline", truth, [truth / "labels.jsonl"], len(images))
    if cfg.get("labelled_baseline"):  # what the student learns from the labelled data alone
        baseline("labelled_baseline", work_dir / "labelled", [], 0)
    _save(work_dir, report)
    return report


def _save(work_dir: Path, report: dict) -> None:
    write_text(work_dir / "report.json", json.dumps(report, indent=1))
    write_text(work_dir / "report.md", format_report(report))


def format_report(report: dict) -> str:
    """The report as markdown: per round and task, the label quality on the held-out images by stage
    (the truth baseline's model last); then what produced each round's labels, and the seconds of
    each step."""
    lines = ["| labels of | task | stage | boxes | precision@0.5 | recall@0.5 | mAP@0.5 | mAP |",
             "|---|---|---|---|---|---|---|---|"]
    runs = [(f"round {r['round']}", r) for r in report["rounds"]]
    if report.get("truth_baseline"):
        runs.append(("trained on the truth", report["truth_baseline"]))
    if report.get("labelled_baseline"):
        runs.append(("trained on the labelled data alone", report["labelled_baseline"]))
    for who, run in runs:
        for task, rows in (run["heldout"] or {}).items():
            for row in rows:
                lines.append(f"| {who} | {task} | {row['stage']} | {row['boxes']} | {row['precision@0.5']:.3f} | "
                             f"{row['recall@0.5']:.3f} | {row['bbox_mAP_50']:.3f} | {row['bbox_mAP']:.3f} |")
    lines += ["", "Config of each row:", ""]
    for who, run in runs:
        config = run.get("config") or {}
        parts = [f"{config.get('images')} images"]
        if "annotators" in config:
            parts += [f"annotators {', '.join(config['annotators'])}", f"merge {config['merge']}",
                      f"filters {', '.join(config['filters']) or 'none'}"]
        if run.get("calibration"):
            c = run["calibration"]
            parts.append(f"ScoreThreshold {c['min_score']} chosen by {c['criterion']} on {c['items']} labelled items "
                         f"({c['true_boxes']} true boxes)")
        if config.get("train"):
            t = config["train"]
            parts.append(f"trained by {t['config']}" + (f", input views {', '.join(t['views'])}" if t["views"] else "")
                         + (f", {t['cfg_options']}" if t["cfg_options"] else "")
                         + (f", with labelled data {', '.join(t['labelled'])}" if t.get("labelled") else ""))
        lines.append(f"- {who}: " + "; ".join(parts))
    lines += ["", TIMES, "", "| labels of | label | of which | train + export | calibrate | measure |",
              "|---|---|---|---|---|---|"]
    for who, run in runs:
        s = run.get("seconds") or {}
        stages = sorted((s.get("label_stages") or {}).items(), key=lambda kv: -kv[1])
        stages = ", ".join(f"{k} {v:.1f}" for k, v in stages)
        lines.append(f"| {who} | {_s(s.get('label'))} | {stages} | {_s(s.get('train'))} | {_s(s.get('calibrate'))} | "
                     f"{_s(s.get('measure'))} |")
    return "\n".join(lines) + "\n"


TIMES = "Seconds per step (a step resumed after a kill: its last part):"


def _s(seconds) -> str:
    return "" if seconds is None else f"{seconds:.1f}"
