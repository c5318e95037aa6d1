"""Multitask training data: samples of any registered tasks, mixed across datasets by weight.

A source dataset yields ``dict(image, image_size, task, text_input, annotation)`` (``image`` a
PIL image, array or path; ``annotation`` in the task's output format). :class:`MultiTaskDataset`
turns each into model inputs through the task plugin: the prompt from ``task.prompt``, the target
text from ``task.encode_target``, the pixels from the published preprocessing at the configured
size. An item may instead carry the text verbatim: ``prompt`` (a custom prompt) and ``target_text``
(a raw target; ``annotation`` then only serves evaluation). An item with several annotations of
one image lists them as ``tasks=[dict(task, text_input, annotation), ...]``: they become one
:class:`ImageTasks`, whose image the model encodes once for all of them. Tokenisation and padding
happen per batch in the model's data preprocessor.
"""
from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import torch

from ..processing.image import ImageProcessor
from ..registry import DATASETS
from ..task import get_task
from .shards import epoch_part, reader_placement, worker_slot

__all__ = ["ImageTasks", "MultiTaskDataset", "MultiTaskStream", "TaskSample", "model_inputs"]


@dataclass
class TaskSample:
    """What one sample carries besides its pixels (kept as an object so mmengine's collate leaves it
    alone): the task, its prompt and target text, and the ground truth for evaluation."""
    task: str
    prompt: str
    target: str
    annotation: Any
    image_size: tuple
    text_input: Any = None
    source: str = ""
    pred: Any = None
    text: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class ImageTasks:
    """The samples of one image (several tasks on the same pixels): the model runs the image
    encoder once and each sample's prompt and target on its features. Not a sequence, so mmengine's
    collate keeps it whole; :class:`~florence.engine.Florence2DataPreprocessor` flattens a batch
    of them and records which image each sample belongs to."""
    samples: list


def _build(cfg):
    return DATASETS.build(cfg) if isinstance(cfg, dict) else cfg


def _weights(weights, n: int) -> list:
    """``weights`` checked: one non-negative number per dataset, with a positive sum."""
    weights = list(weights)
    if len(weights) != n or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights must be {n} non-negative numbers with a positive sum, got {weights}")
    return weights


@DATASETS.register_module()
class MultiTaskDataset(torch.utils.data.Dataset):
    """Mix source datasets.

    Args:
        datasets: source datasets or their configs.
        weights: sampling weight per dataset. ``None`` concatenates them (every sample once per
            epoch); with weights, sample ``i`` draws its dataset by weight and a random item of it,
            deterministically from ``(seed, i)``.
        length: samples per epoch with weights (default: the sources' total).
        image_size: side of the model's input image (768 for published checkpoints).
        seed: seed of the weighted draw.
    """

    def __init__(self, datasets, weights=None, length: int | None = None, image_size: int = 768, seed: int = 0):
        self.datasets = [_build(d) for d in datasets]
        if not self.datasets:
            raise ValueError("MultiTaskDataset needs at least one dataset")
        self.weights = None if weights is None else _weights(weights, len(self.datasets))
        self.sizes = [len(d) for d in self.datasets]
        self.offsets = [0]
        for n in self.sizes:
            self.offsets.append(self.offsets[-1] + n)
        self.length = int(length) if length is not None else self.offsets[-1]
        if self.offsets[-1] == 0 or self.length <= 0:  # an infinite sampler would wait forever for a sample
            raise ValueError(f"MultiTaskDataset has no samples: its datasets hold {self.sizes} items"
                             + (f" and length is {self.length}" if length is not None else ""))
        self.processor = ImageProcessor(size=image_size)
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def locate(self, index: int) -> tuple[int, int]:
        """(dataset index, item index) of sample ``index``."""
        if self.weights is None:
            d = bisect.bisect_right(self.offsets, index) - 1
            return d, index - self.offsets[d]
        rng = random.Random(self.seed * 1_000_003 + index)
        d = rng.choices(range(len(self.datasets)), weights=self.weights)[0]
        return d, rng.randrange(self.sizes[d])

    def __getitem__(self, index: int) -> dict:
        d, i = self.locate(index)
        return model_inputs(self.processor, self.datasets[d][i], f"{type(self.datasets[d]).__name__}[{i}]")


def model_inputs(processor: ImageProcessor, item: dict, source: str) -> dict:
    """``dict(inputs=pixels, data_samples=TaskSample | ImageTasks)`` of a source item; errors name ``source``."""
    try:
        pixels, size = processor.prepare(item["image"])
        size = tuple(item.get("image_size") or size)
        if "tasks" in item:
            if not item["tasks"]:
                raise ValueError("'tasks' must list at least one dict(task=..., annotation=...)")
            samples = ImageTasks([_sample({**item, **t}, size, source) for t in item["tasks"]])
        else:
            samples = _sample(item, size, source)
    except Exception as e:  # name the record: a bad sample must be findable
        tasks = item.get("task") or [t.get("task") for t in item.get("tasks") or [] if isinstance(t, dict)]
        raise ValueError(f"{source} (task {tasks!r}): {type(e).__name__}: {e}") from e
    return dict(inputs=torch.from_numpy(pixels), data_samples=samples)


def _sample(item: dict, size: tuple, source: str) -> TaskSample:
    task = get_task(item["task"])
    # optional verbatim text (custom prompt, raw target) takes the place of the task's own
    prompt = item["prompt"] if "prompt" in item else task.prompt(item.get("text_input"), size)
    target = item["target_text"] if "target_text" in item else task.encode_target(item["annotation"], size)
    sample = TaskSample(task=task.token, prompt=prompt, target=target, annotation=item["annotation"],
                        image_size=size, text_input=item.get("text_input"), source=source)
    if "objects" in item:  # every object of the image, for auxiliary dense losses
        sample.extra["objects"] = item["objects"]
    return sample


class _MapStream:
    """A map-style dataset as a stream of the kind :class:`~florence.data.ShardedDataset` gives: every
    epoch a new random order of its items, dealt out to the readers."""

    def __init__(self, dataset, seed: int, rank: int, world_size: int):
        self.dataset, self.seed, self.rank, self.world_size = dataset, seed, rank, world_size
        self.samples = len(dataset)

    def stream(self, skip: int = 0, worker: int | None = None, workers: int | None = None):
        reader, readers = reader_placement(self.rank, self.world_size, worker, workers)
        if readers > self.samples:
            raise ValueError(f"{type(self.dataset).__name__} of {self.samples} items cannot feed {readers} readers")

        def indices():
            for epoch in itertools.count():
                yield from epoch_part(range(self.samples), self.seed, epoch, reader, readers)
        name = type(self.dataset).__name__
        for i in itertools.islice(indices(), skip, None):
            yield {**self.dataset[i], "source": f"{name}[{i}]"}


@DATASETS.register_module()
class MultiTaskStream(torch.utils.data.IterableDataset):
    """:class:`MultiTaskDataset` for data that streams: an endless stream of model inputs from
    :class:`~florence.data.ShardedDataset` sources (and map-style datasets, read in a new random order
    every epoch), mixed by weight. Each (rank, dataloader worker) reads its own part of every source,
    and a resumed run starts at the first untrained sample (:meth:`fast_forward`, which
    :class:`~florence.engine.TrainLoop` calls). Use it with ``sampler=None`` in the dataloader.

    Args:
        datasets: the sources or their configs.
        weights: sampling weight per source (default: the sources' sizes, so each of their samples is
            drawn about once per epoch). Output ``k`` of a reader draws its source from a generator
            seeded by (seed, reader): the mix is the same in every run.
        image_size: side of the model's input image.
        seed: seed of the draws and of the map-style sources' orders.
        rank, world_size: this process's place among the training processes (default: torch.distributed's).
    """

    def __init__(self, datasets, weights=None, image_size: int = 768, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None):
        from .shards import _dist_info

        self.rank, self.world_size = _dist_info(rank, world_size)
        self.seed = int(seed)
        self.sources = [d if hasattr(d, "stream") else _MapStream(d, self.seed, self.rank, self.world_size)
                        for d in map(_build, datasets)]
        if not self.sources:
            raise ValueError("MultiTaskStream needs at least one dataset")
        sizes = [s.samples for s in self.sources]
        self.weights = sizes if weights is None else _weights(weights, len(sizes))
        self.processor = ImageProcessor(size=image_size)
        self.start = 0, 0  # (batches already trained on this rank, batch size): see fast_forward

    def __len__(self) -> int:
        """Samples of one epoch on this rank: the sources' samples over the ranks (the stream itself
        never ends; mmengine asks for the length to convert epoch-based schedules)."""
        return sum(s.samples for s in self.sources) // self.world_size

    def fast_forward(self, batches: int, batch_size: int) -> None:
        """Start after the first ``batches`` batches of ``batch_size`` this rank's dataloader gave
        (in a resumed run), without decoding their samples. Takes effect when iteration starts."""
        self.start = int(batches), int(batch_size)

    def __iter__(self):
        batches, batch_size = self.start
        worker, workers, made = worker_slot(batches)
        reader, _ = reader_placement(self.rank, self.world_size, worker, workers)
        rng = random.Random(f"{self.seed}/mix/{reader}")
        draws = (rng.choices(range(len(self.sources)), weights=self.weights)[0] for _ in itertools.count())
        skipped = [0] * len(self.sources)
        for d in itertools.islice(draws, made * batch_size):
            skipped[d] += 1
        streams = [s.stream(n, worker, workers) for s, n in zip(self.sources, skipped)]
        for d in draws:
            item = next(streams[d])
            yield model_inputs(self.processor, item, item.pop("source"))
