"""Labelling on Ray Data (``label(..., engine="ray")``): the local engine's pipeline as streaming stages
over a Ray cluster, writing the same shards and manifest.

Each row is one of the local engine's batches (shard k's images ``j * batch_size`` on), so every model
sees the batches it sees locally and the labels equal a local run's; or a whole tar of a shard folder (a
label shard), read where it is labelled and cut into the same batches there: the driver never reads its
images and holds a row per tar, not per batch. The stages:

1. read: decode the batch's images (an unreadable image is recorded, as locally);
2. annotate: an actor pool of ``replicas`` model replicas, each loading the annotators once;
3. merge and filters.

Replicas on GPUs (``gpus_per_replica > 0``) run these as three Ray Data stages: reading and filtering in
actors holding no CPU of their own, as many as the replicas, so the GPU never waits for a decode. Replicas
on CPUs run all three in the replica's own process: decoding there competes for the same cores either way,
and each extra actor is a process that imports florence and torch (on 2 CPUs, 2 replicas: the split
stages took 8-12% longer and 9-10 s more to the first shard, ``benchmarks/label_ray.py``).

The driver collects each shard's batches as they stream in and writes the shard (labels, then its
counts) once its last batch has come, atomically, as the local engine does. Ray Data restarts a replica
whose process dies and runs its batch again; the driver keeps one result per batch, so every image is
labelled exactly once (a tar: all its batches run again, the same way). A driver killed and started again
skips the finished shards. Images and tars are read by path (tars also by any URL webdataset opens): on
several machines they must be on a file system every node sees (so must ``out_dir``, where dataset items
are saved as PNG files before labelling).
"""
from __future__ import annotations

import pickle
import socket

from ..cluster import ray_data
from .filters import build_filters
from .merge import build_merger
from .stages import TarPart, _Labeller, _annotators, add_counts, add_seconds, batches

__all__ = ["run"]

# decoding a batch and filtering its labels are light next to the models: they hold no CPU of their own,
# so they run beside replicas that hold every CPU of a machine (with any share, those replicas starve them)
LIGHT_CPUS = 0


def _stage(runners=(), tasks=(), rules=(), merger=None, keep_empty=False):
    return _Labeller(runners=list(runners), tasks=list(tasks), rules=list(rules), merger=merger,
                     keep_empty=keep_empty)


class _Stage:
    """A stage as a Ray Data row function: the row's payload (pickled: Ray Data would turn images and
    nested lists into columns) through :meth:`step`, a dict in and a dict out."""

    def __call__(self, row: dict) -> dict:
        return dict(row, payload=pickle.dumps(self.step(pickle.loads(row["payload"]))))


class _First(_Stage):
    """The first stage, a Ray Data ``flat_map``: a row's images (a batch, or a tar read here as a stream) in
    batches of ``batch_size``, a row each."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size

    def __call__(self, row: dict):
        for i, chunk in enumerate(batches(pickle.loads(row["payload"])["sources"], self.batch_size)):
            yield dict(shard=row["shard"], batch=row["batch"] + i, images=len(chunk),
                       payload=pickle.dumps(self.step(dict(sources=chunk))))


class _Read(_First):
    """Stage 1: the batch's images decoded."""

    def step(self, got: dict) -> dict:
        stage, bad = _stage(), []
        loaded = stage.read(got["sources"], bad)
        return dict(loaded=loaded, bad=bad, seconds=stage.seconds)


class _Annotate(_Stage):
    """Stage 2: one model replica (the annotators, loaded once per actor)."""

    def __init__(self, annotators, tasks, generation):
        self.stage = _stage(_annotators(annotators, dict(generation or {})), tasks)
        self.node = socket.gethostname()

    def step(self, got: dict) -> dict:
        self.stage.seconds = dict(got["seconds"])
        given = self.stage.annotate([image for _, image in got["loaded"]])
        sized = [(path, image.size) for path, image in got["loaded"]]  # the pixels stop here
        return dict(sized=sized, bad=got["bad"], given=given, seconds=self.stage.seconds, node=self.node)


class _Finish(_Stage):
    """Stage 3: the merge and the filters."""

    def __init__(self, tasks, filters, merge, keep_empty):
        self.stage = _stage((), tasks, build_filters(filters), build_merger(merge), keep_empty)

    def step(self, got: dict) -> dict:
        self.stage.seconds = dict(got["seconds"])
        bad, counts = list(got["bad"]), {}
        lines = self.stage.finish(got["sized"], got["given"], bad, counts)
        return dict(lines=lines, bad=bad, counts=counts, seconds=self.stage.seconds, node=got["node"])


class _Label(_First):
    """The three stages in one actor: a replica on CPUs decodes, annotates and filters its own batches
    (the batch passes between them as it is, unpickled)."""

    def __init__(self, batch_size, annotators, tasks, generation, filters, merge, keep_empty):
        super().__init__(batch_size)
        self.stages = [_Read(batch_size), _Annotate(annotators, tasks, generation),
                       _Finish(tasks, filters, merge, keep_empty)]

    def step(self, got: dict) -> dict:
        for stage in self.stages:
            got = stage.step(got)
        return got


def _parts(images, batch_size: int):
    """(first batch, images) of each row of a shard: a row per batch, a tar (:class:`TarPart`) whole."""
    if isinstance(images, TarPart):
        return [(0, images)]
    return [(j, images[s:s + batch_size]) for j, s in enumerate(range(0, len(images), batch_size))]


# None: split the stages where the replicas hold GPUs (True / False: always, for tests and measurements)
SPLIT_STAGES = None


def run(shards: dict, write_shard, *, annotators, tasks, filters, merge, keep_empty, batch_size, generation,
        address=None, replicas: int = 1, cpus_per_replica: float = 1, gpus_per_replica: float = 0,
        advance=None) -> None:
    """Label ``shards`` (shard index -> its ``(name, source)`` images, or a :class:`TarPart`) on Ray;
    ``write_shard(k, lines, bad, counts, seconds, stage_seconds, nodes)`` is called once per shard, on the
    driver, when its last batch is done; ``advance(images, labels)`` after each batch."""
    rows = [dict(shard=k, batch=j, payload=pickle.dumps(dict(sources=part)))
            for k, images in shards.items() for j, part in _parts(images, batch_size)]
    if not rows:  # every shard is written: nothing to start Ray for
        return
    ray = ray_data(address, job="label(engine='ray')")
    n_batches = {k: -(-len(images) // batch_size) for k, images in shards.items()}
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))  # a block per row: streamed and retried alone
    pool = ray.data.ActorPoolStrategy(size=replicas)
    replica = dict(compute=pool, num_cpus=cpus_per_replica, num_gpus=gpus_per_replica or None)
    if bool(gpus_per_replica) if SPLIT_STAGES is None else SPLIT_STAGES:
        # the light stages are actors too, as many as the replicas: each process imports florence (and torch) once
        ds = ds.flat_map(_Read, fn_constructor_args=(batch_size,), compute=pool, num_cpus=LIGHT_CPUS)
        ds = ds.map(_Annotate, fn_constructor_args=(annotators, tasks, generation), **replica)
        ds = ds.map(_Finish, fn_constructor_args=(tasks, filters, merge, keep_empty), compute=pool,
                    num_cpus=LIGHT_CPUS)
    else:
        ds = ds.flat_map(_Label, fn_constructor_args=(batch_size, annotators, tasks, generation, filters, merge,
                                                      keep_empty), **replica)
    pending: dict = {k: {} for k in shards}
    unwritten = 0  # labels of batches whose shard is not written yet
    for row in ds.iter_rows():
        k, j = int(row["shard"]), int(row["batch"])
        pending[k][j] = pickle.loads(row["payload"])  # a batch run again after a replica died: one result
        unwritten += len(pending[k][j]["lines"])
        if len(pending[k]) == n_batches[k]:
            done = pending.pop(k)
            parts = [done[b] for b in range(n_batches[k])]
            unwritten -= sum(len(part["lines"]) for part in parts)
            lines, bad, counts, stages = [], [], {}, {}
            for part in parts:  # in batch order: the local engine's order of lines, bad images and counts
                lines += part["lines"]
                bad += part["bad"]
                add_counts(counts, part["counts"])
                add_seconds(stages, part["seconds"])
            write_shard(k, lines, bad, counts, sum(stages.values()), stages, sorted({p["node"] for p in parts}))
        if advance is not None:
            advance(int(row["images"]), unwritten)
