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
With N processes (``torchrun``; or ``rank`` / ``world_size``) shard k is process k mod N's; with
``engine="ray"`` the same pipeline runs on Ray Data, model replicas as actors and the shards written
by the driver (:mod:`florence.label.ray_engine`).
``manifest.json`` sums every finished shard: images, labels written, items and samples each rule
removed, bad images with their errors, throughput. An image that cannot be read is recorded there
and never stops the run. ``plan.json`` keeps the run's images, tasks and shard size: restarting with
other ones is an error instead of a mix of two runs.
"""
from __future__ import annotations

import io
import json
import os
import socket
import time
from pathlib import Path

from ..atomic import write_bytes, write_text
from ..cluster import check_engine
from .filters import build_filters
from .merge import build_merger
from .stages import TarPart, _Labeller, _annotators, _name, add_counts, add_seconds

__all__ = ["label", "read_manifest"]


def _paths(images) -> list | None:
    """``images`` as a list of paths when it names files or folders (a path, or a list of them); None: a
    dataset."""
    items = [images] if isinstance(images, (str, os.PathLike)) else images
    ok = isinstance(items, (list, tuple)) and all(isinstance(i, (str, os.PathLike)) for i in items)
    return list(items) if ok else None


def _sources(images, out_dir: Path) -> list:
    """``(name, image)`` per image: files (a folder, a path, or a list of them) by their absolute path;
    dataset items (``dict(image=PIL or path)``, as florence datasets give them) saved once under
    ``out_dir/images/`` and named relative to ``out_dir`` (where the shards are: the folder can move)."""
    paths = _paths(images)
    if paths is not None:
        from ..processing.image import image_files

        return [(str(Path(p).resolve()), str(p)) for p in image_files(paths)]
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


def _tar_parts(images) -> list[TarPart] | None:
    """The tars of ``images`` when it names florence shard folders (:func:`florence.data.write_shards`:
    a folder, its ``manifest.json``, or a list of them); None when it names none."""
    items = _paths(images)
    if items is None:
        return None
    from ..data.shards import is_shard_folder, read_manifest, shard_urls
    from ..processing.image import IMAGE_SUFFIXES

    # a path with an image's suffix is an image: no look at the file system for each of them
    folders = [i for i in items if Path(i).suffix.lower() not in IMAGE_SUFFIXES and is_shard_folder(i)]
    if not folders:
        return None
    if len(folders) < len(items):
        raise ValueError(f"label: images mix tar shard folders ({folders[0]}) with image files or folders "
                         f"({next(i for i in items if i not in folders)}): label them in separate runs")
    # local tars by their absolute paths, as image files are named: the labels train from any folder (JsonlDataset)
    return [TarPart(url, n) for folder in folders for url, n in shard_urls(*read_manifest(Path(folder).resolve()))]


def label(annotators, images, tasks, out_dir, filters=(), batch_size: int = 8, shard_size: int = 256,
          merge=None, keep_empty: bool = False, generation: dict | None = None, rank: int | None = None,
          world_size: int | None = None, progress: bool = True, engine: str = "local", address: str | None = None,
          replicas: int = 1, cpus_per_replica: float = 1, gpus_per_replica: float = 0) -> dict:
    """Label ``images`` for ``tasks`` with ``annotators``; returns the manifest (also written as
    ``out_dir/manifest.json``).

    Args:
        annotators: one or a list of: checkpoint folder / hub id, :class:`~florence.Pipeline`,
            ``callable(images: list of PIL images, task: str) -> list of outputs`` (one per image; an
            output ``{"error": message}`` records that image as bad), or ``dict(model=one of those,
            view="hflip")``: the model reading mirrored or rescaled images, its regions mapped back
            (:mod:`florence.label.views`; views of one model load it once).
        images: a folder, image paths, or a florence dataset (items with ``image``); or tar shard
            folders (:func:`florence.data.write_shards`, ``florence shards``): each tar one label
            shard, streamed where it is labelled, its images named ``TAR:KEY``.
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
        engine: ``"local"`` (this process, or its torchrun share) or ``"ray"``: the same pipeline on Ray
            Data (:mod:`florence.label.ray_engine`; the ``ray`` extra), writing the same shards.
        address: the Ray cluster (``"auto"``, ``"ray://host:10001"``); default: the one this process is
            connected to, else a local one.
        replicas: the Ray engine's model replicas (actors, each loading the annotators once).
        cpus_per_replica: the CPUs each replica holds (its torch threads).
        gpus_per_replica: the GPUs each replica holds.
    """
    from ..task import get_task

    tasks = [get_task(t).token for t in ([tasks] if isinstance(tasks, str) else tasks)]  # unknown: an error now
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_engine("label", engine, replicas, cpus_per_replica, gpus_per_replica)
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if engine == "ray" and world_size > 1:
        raise ValueError("label: engine='ray' schedules the whole run from one driver; start it once, not under "
                         f"torchrun (world_size {world_size})")
    rules, merger = build_filters(filters), build_merger(merge)  # a bad config fails here, before any engine starts
    shards = _tar_parts(images)  # tar shard folders: one label shard per tar, read as a stream where it is labelled
    if shards is None:
        sources = _sources(images, out_dir)
        _check_plan(out_dir, dict(images=[path for path, _ in sources], tasks=tasks, shard_size=shard_size))
        shards = [sources[i:i + shard_size] for i in range(0, len(sources), shard_size)]
    else:
        _check_plan(out_dir, dict(images=[p.url for p in shards], samples=[p.samples for p in shards], tasks=tasks))
    annotators = annotators if isinstance(annotators, list) else [annotators]
    todo = [k for k in range(len(shards)) if k % world_size == rank and not (out_dir / f"shard-{k:05d}.json").exists()]
    names = [_name(a) for a in annotators]

    for k in todo:  # a killed run's half-written shard files (florence.atomic's temporary names)
        for stale in out_dir.glob(f".shard-{k:05d}.*.tmp"):
            stale.unlink(missing_ok=True)
    from tqdm import tqdm

    bar = tqdm(total=sum(len(shards[k]) for k in todo), unit="img", desc="label", disable=not progress or rank != 0)
    done = 0  # labels this run wrote (the progress bar's count)

    def advance(images: int, labels: int):
        bar.update(images)
        bar.set_postfix(labels=done + labels, refresh=False)

    def write_shard(k, lines, bad, counts, seconds, stages, nodes):
        nonlocal done
        write_text(out_dir / f"shard-{k:05d}.jsonl", "".join(line + "\n" for line in lines))
        done += len(lines)
        write_text(out_dir / f"shard-{k:05d}.json", json.dumps(dict(
            shard=k, images=len(shards[k]), labels=len(lines), filters=counts, bad_images=bad, seconds=seconds,
            stage_seconds=stages, nodes=nodes)))

    if engine == "ray":
        from . import ray_engine

        ray_engine.run({k: shards[k] for k in todo}, write_shard, annotators=annotators, tasks=tasks, filters=filters,
                       merge=merge, keep_empty=keep_empty, batch_size=batch_size, generation=generation,
                       address=address, replicas=replicas, cpus_per_replica=cpus_per_replica,
                       gpus_per_replica=gpus_per_replica, advance=advance)
    elif todo:  # models load only when there is something left to label
        labeller = _Labeller(runners=_annotators(annotators, dict(generation or {})), tasks=tasks, rules=rules,
                             merger=merger, keep_empty=keep_empty)
        for k in todo:
            started = time.perf_counter()
            lines, bad, counts, stages = labeller.shard(shards[k], batch_size=batch_size, advance=advance)
            write_shard(k, lines, bad, counts, time.perf_counter() - started, stages, [socket.gethostname()])
    bar.close()
    return _write_manifest(out_dir, len(shards), tasks, names)


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


def _write_manifest(out_dir: Path, n_shards: int, tasks, annotators) -> dict:
    stats = [json.loads(p.read_text()) for p in sorted(out_dir.glob("shard-*.json"))]
    filters, stages = {}, {}  # counts per rule and seconds per stage, over the shards (older shards have no stages)
    for s in stats:
        add_counts(filters, s["filters"])
        add_seconds(stages, s.get("stage_seconds", {}))
    seconds = sum(s["seconds"] for s in stats)
    images = sum(s["images"] for s in stats)
    manifest = dict(tasks=tasks, annotators=annotators, shards=n_shards, shards_done=len(stats), images=images,
                    labels=sum(s["labels"] for s in stats), filters=filters,
                    bad_images=[b for s in stats for b in s["bad_images"]],
                    images_per_second=images / seconds if seconds else None, seconds=seconds,
                    stage_seconds=stages,
                    shard_seconds={str(s["shard"]): s["seconds"] for s in stats},
                    shard_nodes={str(s["shard"]): s.get("nodes") for s in stats},  # the machines that labelled it
                    files=[f"shard-{s['shard']:05d}.jsonl" for s in stats])
    write_text(out_dir / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


def read_manifest(out_dir) -> dict:
    return json.loads((Path(out_dir) / "manifest.json").read_text())
