"""What each image of a labelling run goes through, whichever engine runs it: the annotators (florence
checkpoints, pipelines, callables, views of them), then the merge, then the filter rules
(:class:`_Labeller`); :mod:`florence.label.engine` runs it in this process, :mod:`florence.label.ray_engine`
on Ray Data."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import os
import sys
import time

from .filters import apply_filters


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


@dataclasses.dataclass(frozen=True)
class TarPart:
    """The images of one tar of a florence shard folder (:mod:`florence.data.shards`), labelled as one
    label shard: read front to back as ``(URL:KEY, the image file's bytes)`` (``b""``: a sample without
    an image), a stream that checks the tar holds the ``samples`` its manifest says."""
    url: str
    samples: int

    def __len__(self) -> int:
        return self.samples

    def __iter__(self):
        from ..data.shards import image_member, tar_samples

        n = 0
        for n, sample in enumerate(tar_samples(self.url), 1):
            if n > self.samples:
                break
            try:
                data = sample[image_member(sample)]
            except StopIteration:
                data = b""
            yield f"{self.url}:{sample['__key__']}", data
        if n != self.samples:  # more: before the extra image is labelled; fewer: before the shard is complete
            found = f"more than {self.samples}" if n > self.samples else n
            raise ValueError(f"{self.url} holds {found} samples where its manifest says {self.samples}: "
                             "write the shard folder again (florence.data.write_shards)")


def batches(sources, batch_size: int):
    """``sources`` (a list of ``(name, source)`` pairs, or a :class:`TarPart`) in lists of ``batch_size``."""
    stream = iter(sources)
    while chunk := list(itertools.islice(stream, batch_size)):
        yield chunk


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
        lines, bad, counts, self.seconds = [], [], {}, {}
        for chunk in batches(sources, batch_size):
            loaded = self.read(chunk, bad)
            given = self.annotate([image for _, image in loaded])
            lines += self.finish([(path, image.size) for path, image in loaded], given, bad, counts)
            advance(len(chunk), len(lines))
        return lines, bad, counts, self.seconds

    def read(self, chunk, bad: list) -> list:
        """``(name, image)`` of each readable image of ``chunk`` (``(name, source)`` pairs, a source a path
        or a file's bytes); the others are recorded in ``bad``."""
        from ..processing.image import load_image

        loaded = []
        with self.timed("read images"):
            for path, source in chunk:
                opened = io.BytesIO(source) if isinstance(source, bytes) else source  # a tar sample's image
                try:
                    if isinstance(source, bytes) and not source:
                        raise ValueError("its tar sample has no image member")
                    loaded.append((path, load_image(opened)))
                except (OSError, ValueError) as e:
                    bad.append({"image": path, "error": str(e).replace(str(opened), path)})
        return loaded

    def annotate(self, images: list) -> dict:
        """Each task's ``[(annotator name, outputs of images)]``."""
        given = {}
        for task in self.tasks:
            given[task] = []
            for name, run in self.runners:
                with self.timed(f"annotator {name}"):
                    given[task].append((name, run(images, task) if images else []))
        return given

    def finish(self, sized: list, given: dict, bad: list, counts: dict) -> list:
        """The label lines of images ``sized`` (``(name, (width, height))``) from the annotators'
        outputs ``given`` (:meth:`annotate`): merged and filtered, task by task."""
        lines = []
        for task in self.tasks:
            for i, (path, size) in enumerate(sized):
                answers = [(name, outputs[i]) for name, outputs in given[task]]
                lines += self.image(path, size, task, answers, bad=bad, counts=counts)
        return lines

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


def _empty(output, task) -> bool:
    """A region output without regions (a text output is never empty here)."""
    from ..task import get_task

    task = get_task(task)
    return bool(task.region_kinds) and isinstance(output, dict) and not task.regions(output)


def add_counts(total: dict, counts: dict) -> dict:
    """Add filter counts (rule -> ``{"items", "samples"}`` removed) into ``total``, keeping its rules'
    order of first appearance; returns ``total``."""
    for rule, c in counts.items():
        into = total.setdefault(rule, {"items": 0, "samples": 0})
        into["items"] += c["items"]
        into["samples"] += c["samples"]
    return total


def add_seconds(total: dict, seconds: dict) -> dict:
    """Add seconds per stage into ``total``; returns ``total``."""
    for stage, t in seconds.items():
        total[stage] = total.get(stage, 0.0) + t
    return total
