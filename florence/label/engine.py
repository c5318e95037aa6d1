"""The data engine's labelling run: images -> annotators -> filters -> shards of labels.

:func:`label` annotates images with one or more annotators (florence checkpoints, pipelines, or any
callable ``annotator(images, task) -> [output, ...]`` in the published output formats, e.g. a wrapped
mmdet detector), batched, merges the annotators' outputs of each image by consensus when asked
(:mod:`florence.label.merge`), runs each label through the filter rules (:mod:`florence.label.filters`)
and writes the kept labels as shards: ``shard-00000.jsonl`` (florence JSON Lines, one line per label:
``{"image", "task", "annotation", "annotator"}``, which :class:`~florence.data.JsonlDataset` reads for
training) and, written after it, ``shard-00000.json`` (the shard's counts and its bad images). Both
are written atomically (temporary name, then rename), so a shard with a ``.json`` is complete: a run
killed at any moment and started again skips the finished shards and loses nothing already written.
With N processes (``torchrun``; or ``rank`` / ``world_size``) shard k is process k mod N's.
``manifest.json`` sums every finished shard: images, labels written, items and samples each rule
removed, bad images with their errors, throughput. An image that cannot be read is recorded there
and never stops the run. ``plan.json`` keeps the run's images, tasks and shard size: restarting with
other ones is an error instead of a mix of two runs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import sys
import time
from pathlib import Path

from ..atomic import write_bytes, write_text
from .filters import apply_filters, build_filters
from .merge import build_merger

__all__ = ["label", "read_manifest"]


def _sources(images, out_dir: Path) -> list:
    """``(name, image)`` per image: files (a folder, a path, or a list of them) by their absolute path;
    dataset items (``dict(image=PIL or path)``, as florence datasets give them) saved once under
    ``out_dir/images/`` and named relative to ``out_dir`` (where the shards are: the folder can move)."""
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    if isinstance(images, (list, tuple)) and all(isinstance(i, (str, os.PathLike)) for i in images):
        from ..processing.image import image_files

        return [(str(Path(p).resolve()), str(p)) for p in image_files(images)]
    folder = out_dir / "images"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(len(images)):
        image = images[i]["image"] if isinstance(images[i], dict) else images[i]
        if isinstance(image, (str, os.PathLike)):
            out.append((str(Path(image).resolve()), str(image)))
            continue
        path = folder / f"{i:06d}.png"
        if not path.exists():
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            write_bytes(path, buffer.getvalue())
        out.append((f"images/{path.name}", str(path)))
    return out


def _name(spec) -> str:
    """How the manifest and the labels name an annotator."""
    if isinstance(spec, dict) and "view" in spec:  # a model read through a view (florence.label.views)
        from .views import View

        return f"{_name(spec.get('model'))} [{View.parse(spec['view'])}]"
    if isinstance(spec, (str, os.PathLike)):
        return str(spec)
    inference = sys.modules.get("florence.inference")  # not imported: spec is no Pipeline (and needs no model code)
    if inference is not None and isinstance(spec, inference.Pipeline):
        return "florence"
    return getattr(spec, "__name__", type(spec).__name__)


def _annotators(specs, generation) -> list[tuple]:
    """(name, callable(images, task) -> outputs) of each annotator spec; a model that several specs
    name (views of one checkpoint) loads once."""
    loaded: dict = {}
    return [_annotator(spec, generation, loaded) for spec in specs]


def _annotator(spec, generation, loaded: dict | None = None):
    """(name, callable(images, task) -> outputs) of a checkpoint folder / hub id, a Pipeline, a callable,
    or ``dict(model=one of those, view="hflip+scale:0.75")`` (:class:`~florence.label.views.View`).
    ``loaded``: pipelines already loaded, by folder (filled in)."""
    name = _name(spec)
    if isinstance(spec, dict):
        from .views import Augmented

        unknown = set(spec) - {"model", "view"}
        if unknown or "model" not in spec:
            raise ValueError(f"an annotator dict is dict(model=..., view=...), got keys {sorted(spec)}")
        return name, Augmented(_annotator(spec["model"], generation, loaded)[1], spec.get("view", "identity"))
    if isinstance(spec, (str, os.PathLike)):
        from ..inference import pipeline

        loaded = {} if loaded is None else loaded
        if str(spec) not in loaded:
            loaded[str(spec)] = pipeline(str(spec), dtype="auto")
        spec = loaded[str(spec)]
    inference = sys.modules.get("florence.inference")
    if inference is not None and isinstance(spec, inference.Pipeline):
        pipe = spec

        def run(images, task):
            results = pipe(images, task, errors="record", batch_size=len(images), **generation)
            return [r.get(task, r) if "error" not in r else r for r in results]

        return name, run
    if callable(spec):
        return name, spec
    raise TypeError(f"an annotator is a checkpoint folder, a hub id, a florence Pipeline or a callable, got {spec!r}")


def label(annotators, images, tasks, out_dir, filters=(), batch_size: int = 8, shard_size: int = 256,
          merge=None, keep_empty: bool = False, generation: dict | None = None, rank: int | None = None,
          world_size: int | None = None, progress: bool = True) -> dict:
    """Label ``images`` for ``tasks`` with ``annotators``; returns the manifest (also written as
    ``out_dir/manifest.json``).

    Args:
        annotators: one or a list of: checkpoint folder / hub id, :class:`~florence.Pipeline`,
            ``callable(images: list of PIL images, task: str) -> list of outputs`` (one per image; an
            output ``{"error": message}`` records that image as bad), or ``dict(model=one of those,
            view="hflip")``: the model reading mirrored or rescaled images, its regions mapped back
            (:mod:`florence.label.views`; views of one model load it once).
        images: a folder, image paths, or a florence dataset (items with ``image``).
        tasks: task tokens to annotate every image for (e.g. ``["<OD>", "<MORE_DETAILED_CAPTION>"]``).
        filters: rules or their config entries (``dict(type="ScoreThreshold", min_score=0.3)``), run on
            each label (after ``merge``).
        merge: how several annotators' outputs of one image and task become one label, before the
            filters (``dict(type="Consensus", min_votes=2)``, :mod:`florence.label.merge`; or a callable
            ``merge(outputs, task) -> output | None``, ``None`` for an annotator that failed on the
            image); default: one label per annotator.
        keep_empty: keep region outputs that the filters left without any item (default: drop them).
        generation: generation arguments for florence annotators (``num_beams``, ``max_new_tokens``).
        rank: this process's share: every ``world_size``-th shard from ``rank`` (default:
            torchrun's ``RANK``).
        world_size: the number of processes sharing the run (default: torchrun's ``WORLD_SIZE``).
    """
    from ..task import get_task

    tasks = [get_task(t).token for t in ([tasks] if isinstance(tasks, str) else tasks)]  # unknown: an error now
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    rules, merger = build_filters(filters), build_merger(merge)
    sources = _sources(images, out_dir)
    _check_plan(out_dir, dict(images=[path for path, _ in sources], tasks=tasks, shard_size=shard_size))
    annotators = annotators if isinstance(annotators, list) else [annotators]
    shards = [sources[i:i + shard_size] for i in range(0, len(sources), shard_size)]
    todo = [k for k in range(len(shards)) if k % world_size == rank and not (out_dir / f"shard-{k:05d}.json").exists()]
    # models load only when there is something left to label
    runners = _annotators(annotators, dict(generation or {})) if todo else [(_name(a), None) for a in annotators]
    labeller = _Labeller(runners=runners, tasks=tasks, rules=rules, merger=merger, keep_empty=keep_empty)

    for k in todo:  # a killed run's half-written shard files (florence.atomic's temporary names)
        for stale in out_dir.glob(f".shard-{k:05d}.*.tmp"):
            stale.unlink(missing_ok=True)
    from tqdm import tqdm

    bar = tqdm(total=sum(len(shards[k]) for k in todo), unit="img", desc="label", disable=not progress or rank != 0)
    done = 0  # labels this run wrote (the progress bar's count)

    def advance(images: int, labels: int):
        bar.update(images)
        bar.set_postfix(labels=done + labels, refresh=False)

    for k in todo:
        started = time.perf_counter()
        lines, bad, counts, stages = labeller.shard(shards[k], batch_size=batch_size, advance=advance)
        seconds = time.perf_counter() - started
        write_text(out_dir / f"shard-{k:05d}.jsonl", "".join(line + "\n" for line in lines))
        done += len(lines)
        write_text(out_dir / f"shard-{k:05d}.json", json.dumps(dict(
            shard=k, images=len(shards[k]), labels=len(lines), filters=counts, bad_images=bad, seconds=seconds,
            stage_seconds=stages)))
    bar.close()
    return _write_manifest(out_dir, len(shards), tasks, [n for n, _ in runners])


@dataclasses.dataclass
class _Labeller:
    """What each shard and each image of a run go through: the annotators (``runners``: name and
    ``annotate(images, task)``), then the merge (``merger``, or one label per annotator), then the
    filter ``rules``; region labels left empty are dropped unless ``keep_empty``."""
    runners: list
    tasks: list
    rules: list
    merger: object
    keep_empty: bool
    seconds: dict = dataclasses.field(default_factory=dict)  # the current shard's seconds per stage

    def shard(self, sources, *, batch_size: int, advance) -> tuple[list, list, dict, dict]:
        """The label lines (JSON), bad images, filter counts and seconds per stage (reading images,
        each annotator, the merge, each filter) of one shard's ``(name, source)`` images, in batches;
        ``advance(images, labels so far)`` after each batch."""
        from ..processing.image import load_image

        lines, bad, counts, self.seconds = [], [], {}, {}
        for start in range(0, len(sources), batch_size):
            chunk, loaded = sources[start:start + batch_size], []
            with self.timed("read images"):
                for path, source in chunk:
                    try:
                        loaded.append((path, load_image(source)))
                    except (OSError, ValueError) as e:
                        bad.append({"image": path, "error": str(e)})
            for task in self.tasks:
                given = []
                for name, run in self.runners:
                    with self.timed(f"annotator {name}"):
                        given.append((name, run([im for _, im in loaded], task) if loaded else []))
                for i, (path, image) in enumerate(loaded):
                    answers = [(name, outputs[i]) for name, outputs in given]
                    lines += self.image(path, image.size, task, answers, bad=bad, counts=counts)
            advance(len(chunk), len(lines))
        return lines, bad, counts, self.seconds

    @contextlib.contextmanager
    def timed(self, stage: str):
        started = time.perf_counter()
        yield
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started

    def image(self, path: str, size, task: str, answers, *, bad: list, counts: dict) -> list:
        """The label lines of one image and task from each annotator's ``(name, output)``; an output
        ``{"error": ...}`` is recorded in ``bad``, the filters count what they remove in ``counts``."""
        outputs = []  # one per annotator, None where it failed on the image
        for name, output in answers:
            failed = isinstance(output, dict) and "error" in output
            if failed:
                bad.append({"image": path, "error": str(output["error"]), "annotator": name})
            outputs.append(None if failed else output)
        candidates = [(name, o) for (name, _), o in zip(answers, outputs) if o is not None]
        if self.merger is not None and candidates:
            with self.timed("merge"):
                merged = self.merger(outputs, task)
            candidates = [("consensus", merged)] if merged is not None else []
        lines = []
        for name, output in candidates:
            kept = apply_filters(self.rules, output, task, size, counts, self.seconds)
            if kept is None or (not self.keep_empty and _empty(kept, task)):
                continue
            lines.append(json.dumps({"image": path, "task": task, "annotation": kept, "annotator": name}))
        return lines


def _check_plan(out_dir: Path, plan: dict) -> None:
    """The run's images, tasks and shard size, kept in ``plan.json``: a restart must continue the same
    run (other images or tasks would mix two runs' shards)."""
    path = out_dir / "plan.json"
    if path.exists():
        before = json.loads(path.read_text())
        changed = [k for k in plan if before.get(k) != plan[k]]
        if changed:
            raise ValueError(f"{out_dir} holds labels of another run (its {', '.join(changed)} differ): continue it "
                             "with the same images, tasks and shard size, or write to a new folder")
    else:
        write_text(path, json.dumps(plan))


def _empty(output, task) -> bool:
    """A region output without regions (a text output is never empty here)."""
    from ..task import get_task

    task = get_task(task)
    return bool(task.region_kinds) and isinstance(output, dict) and not task.regions(output)


def _write_manifest(out_dir: Path, n_shards: int, tasks, annotators) -> dict:
    stats = [json.loads(p.read_text()) for p in sorted(out_dir.glob("shard-*.json"))]
    filters: dict = {}
    for s in stats:
        for rule, c in s["filters"].items():
            total = filters.setdefault(rule, {"items": 0, "samples": 0})
            total["items"] += c["items"]
            total["samples"] += c["samples"]
    seconds = sum(s["seconds"] for s in stats)
    images = sum(s["images"] for s in stats)
    stages: dict = {}  # seconds per stage, over the shards (older shards have none)
    for s in stats:
        for stage, t in s.get("stage_seconds", {}).items():
            stages[stage] = stages.get(stage, 0.0) + t
    manifest = dict(tasks=tasks, annotators=annotators, shards=n_shards, shards_done=len(stats), images=images,
                    labels=sum(s["labels"] for s in stats), filters=filters,
                    bad_images=[b for s in stats for b in s["bad_images"]],
                    images_per_second=images / seconds if seconds else None, seconds=seconds,
                    stage_seconds=stages,
                    files=[f"shard-{s['shard']:05d}.jsonl" for s in stats])
    write_text(out_dir / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


def read_manifest(out_dir) -> dict:
    return json.loads((Path(out_dir) / "manifest.json").read_text())
