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
import random
from dataclasses import dataclass, field
from typing import Any

import torch

from ..processing.image import ImageProcessor
from ..registry import DATASETS
from ..task import get_task

__all__ = ["ImageTasks", "MultiTaskDataset", "TaskSample"]


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
        if weights is not None:
            if len(weights) != len(self.datasets) or min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(f"weights must be {len(self.datasets)} non-negative numbers with a positive sum, "
                                 f"got {weights}")
        self.weights = weights
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
        item = self.datasets[d][i]
        source = f"{type(self.datasets[d]).__name__}[{i}]"
        try:
            pixels, size = self.processor.prepare(item["image"])
            size = tuple(item.get("image_size") or size)
            if "tasks" in item:
                if not item["tasks"]:
                    raise ValueError("'tasks' must list at least one dict(task=..., annotation=...)")
                samples = ImageTasks([self._sample({**item, **t}, size, source) for t in item["tasks"]])
            else:
                samples = self._sample(item, size, source)
        except Exception as e:  # name the record: a bad sample must be findable
            tasks = item.get("task") or [t.get("task") for t in item.get("tasks") or [] if isinstance(t, dict)]
            raise ValueError(f"{source} (task {tasks!r}): {type(e).__name__}: {e}") from e
        return dict(inputs=torch.from_numpy(pixels), data_samples=samples)

    @staticmethod
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
