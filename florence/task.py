"""Tasks: what a Florence-2 task is, the base classes task plugins build on, and the registry.

A task is a value (an object), not a code path: its token (``"<OD>"``), name (``"od"``), prompt,
training-target serialisation, output parser and metric names all live on the object, and the
plugins in ``tasks/`` (or any installed package) register it through the ``florence.tasks``
entry-point group. Nothing outside a task's own file branches on task names.

>>> task = get_task("<OD>")                      # or get_task("od")
>>> task.prompt()
'Locate the objects with category name in the image.'
>>> task.encode_target({"bboxes": [[10, 20, 300, 400]], "labels": ["car"]}, (640, 480))
'car<loc_15><loc_41><loc_468><loc_833>'
>>> task.decode_output("</s><s>car<loc_15><loc_41><loc_468><loc_833></s>", (640, 480))
{'bboxes': [[9.92, 19.92, 299.84, 400.08]], 'labels': ['car']}      # (rounded here)

Annotations (the input of ``encode_target``) have the same structure as the task's output, so a
round trip returns the annotation within one location bin.

Datasets do not know tasks either: a format describes an image in no task's terms
(:class:`ImageAnnotations`: its objects, words and captions) and each task makes its sample from that
(:meth:`Task.from_annotations`, given by ``make=`` where the task is registered). A new task plugin
with a ``make`` trains on every format (and on the synthetic scenes) that has what it reads.
"""
from __future__ import annotations

import dataclasses
import math
import random
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .parsing import Item, clean_text, parse_boxes, parse_polygons, parse_quads
from .processing.quantizer import LOC_TOKEN, NUM_BINS, Quantizer

__all__ = ["ImageAnnotations", "Region", "Word", "Task", "TextTask", "BoxTask", "QuadTask", "PolygonTask",
           "OpenVocabularyTask", "TaskError",
           "list_tasks", "get_task", "get_metric", "list_metrics", "plugin_errors", "reload_tasks",
           "add_task_tokens"]

QUANTIZER = Quantizer()
WORDS = ("red", "blue", "green", "square", "circle", "triangle", "cat", "dog", "car", "tree", "sign",
         "person", "house", "boat", "lamp", "chair", "cup", "book", "bird", "flower")


class TaskError(ValueError):
    """A task was asked for something it cannot do (unknown task, missing input, bad annotation)."""


# ---------------------------------------------------------------------------------------------
# what a dataset knows about an image, in no task's terms
# ---------------------------------------------------------------------------------------------
@dataclass
class Region:
    """One object of an image. Coordinates are pixels of the original image."""
    box: list | None = None  # [x1, y1, x2, y2]
    label: str = ""  # its category ("red circle", "car"); RefCOCO: the sentence naming it
    description: str = ""  # a longer description ("large red circle")
    phrase: str = ""  # how the image's first caption names it ("a red circle")
    expression: str = ""  # a referring expression that picks it out ("the red circle")
    polygon: list | None = None  # its outline as polygon parts [[x, y, x, y, ...], ...]
    problems: dict = field(default_factory=dict)  # field -> why the format could not give it (raised on use)

    def get(self, name: str):
        """Field ``name`` for a task that needs it: the format's own error if it recorded one for it,
        TaskError if it is empty."""
        if name in self.problems:
            raise self.problems[name]
        value = getattr(self, name)
        if value is None or (isinstance(value, (str, list)) and not value):
            raise TaskError(f"the object has no {name}")
        return value


@dataclass
class Word:
    """A word (or line) of text in the image: its quadrilateral [x1, y1, ..., x4, y4] and text."""
    quad: list
    text: str

    @property
    def box(self) -> list:
        return [min(self.quad[0::2]), min(self.quad[1::2]), max(self.quad[0::2]), max(self.quad[1::2])]


@dataclass
class ImageAnnotations:
    """What a dataset format knows about one image: objects, words in reading order, captions by level
    of detail (0 brief, 1 detailed, 2 a paragraph), and for a task about one object, ``focus``: the
    object it asks about. Tasks read what they need and say what is missing."""
    objects: list = field(default_factory=list)
    words: list = field(default_factory=list)
    captions: list = field(default_factory=list)
    focus: Region | None = None

    def caption(self, detail: int) -> str:
        if len(self.captions) <= detail or not self.captions[detail]:
            raise TaskError(f"no caption of detail {detail} (the image has {len(self.captions)} levels)")
        return self.captions[detail]

    def the_focus(self) -> Region:
        if self.focus is None:
            raise TaskError("no object to ask about (focus)")
        return self.focus

    def the_words(self) -> list:
        if not self.words:
            raise TaskError("no words")
        return self.words

    def first_word(self) -> Word:
        return self.the_words()[0]

    def about(self, region: Region) -> "ImageAnnotations":
        return dataclasses.replace(self, focus=region)


# ---------------------------------------------------------------------------------------------
# base class
# ---------------------------------------------------------------------------------------------
class Task:
    """The task contract. Subclass it (or one of the kinds below) and set the class attributes.

    Attributes:
        token: the task token users pass, e.g. ``"<OD>"``. Upper-case task tokens are not
            vocabulary entries; :meth:`prompt` expands them to natural language.
        name: short name, e.g. ``"od"`` (default: the token without brackets, lower-cased).
        template: the prompt, with ``{input}`` where the task's input goes.
        input_kind: ``None`` (no input), ``"text"`` or ``"region"`` (a pixel box
            ``[x1, y1, x2, y2]``, quantized for the user, or its ``<loc_..>`` text).
        special_tokens: vocabulary tokens the task needs that Florence-2 lacks; the pipeline adds
            them to the tokenizer and grows the model's embeddings.
        metrics: names of the metrics that evaluate this task's results, as plugins register
            them (``florence_register_metrics``; :func:`list_metrics`). A name no plugin registers
            keeps the task from loading (reported by :func:`plugin_errors`).
        make: ``make(annotations) -> (text_input, annotation)``, this task's sample from an
            :class:`ImageAnnotations` (:meth:`from_annotations`); ``None``: datasets cannot make
            this task's samples (its own adapter gives them, as VQA's does).
        one_object: the task asks about one object (``annotations.focus``): a dataset makes one
            sample per object of the image.
    """

    token: str = ""
    name: str = ""
    template: str = ""
    input_kind: str | None = None
    special_tokens: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    make: Callable | None = None
    one_object: bool = False

    def __init__(self, token: str | None = None, template: str | None = None, *, name: str | None = None,
                 input_kind: str | None = "default", metrics: Sequence[str] | None = None,
                 special_tokens: Sequence[str] | None = None, make: Callable | None = None,
                 one_object: bool | None = None):
        self.token = token or self.token
        if make is not None:
            self.make = make
        if one_object is not None:
            self.one_object = bool(one_object)
        self.template = template if template is not None else self.template
        self.name = name or self.name or self.token.strip("<>").lower()
        if input_kind != "default":
            self.input_kind = input_kind
        if metrics is not None:
            self.metrics = tuple(metrics)
        if special_tokens is not None:
            self.special_tokens = tuple(special_tokens)
        if not re.fullmatch(r"<[^<>\s]+>", self.token or ""):
            raise TaskError(f"{type(self).__name__}: task token must look like '<NAME>', got {self.token!r}")
        if (self.input_kind is None) == ("{input}" in self.template):
            raise TaskError(f"{self.token}: the template has {'no ' if self.input_kind else ''}'{{input}}' "
                            f"but input_kind is {self.input_kind!r}")

    def __repr__(self):
        return f"<{type(self).__name__} {self.token}>"

    # ---- prompt --------------------------------------------------------------------------------
    def prompt(self, text_input=None, image_size=None) -> str:
        """The prompt the model reads, with ``text_input`` substituted. A task that needs an
        input rejects a missing one; a task that takes none rejects one."""
        if self.input_kind is None:
            if text_input not in (None, ""):
                raise TaskError(f"{self.token} takes no input, got {text_input!r}")
            return self.template
        if text_input is None or (isinstance(text_input, str) and not text_input.strip()):
            what = "a pixel box [x1, y1, x2, y2]" if self.input_kind == "region" else "a text input"
            raise TaskError(f"{self.token} needs {what} (text_input=...)")
        if self.input_kind == "region":
            text_input = region_tokens(text_input, image_size, self.token)
        elif not isinstance(text_input, str):
            raise TaskError(f"{self.token} takes a text input, got {type(text_input).__name__}")
        return self.template.format(input=text_input.strip())

    def from_annotations(self, annotations: ImageAnnotations) -> tuple:
        """``(text_input, annotation)`` of this task for an image described by ``annotations``;
        TaskError naming what is missing."""
        if self.make is None:
            raise TaskError(f"{self.token}: datasets cannot make its samples from image annotations "
                            "(the task was registered without make=...)")
        try:
            return self.make(annotations)
        except TaskError as e:
            raise TaskError(f"{self.token} cannot be made from these annotations: {e}") from None

    # ---- targets and outputs -------------------------------------------------------------------
    def encode_target(self, annotation, image_size) -> str:
        """The text the decoder learns to emit (between ``<s>`` and ``</s>``) for ``annotation``,
        which has the same structure as :meth:`decode_output`'s result."""
        raise NotImplementedError

    def decode_output(self, text: str, image_size, scores=None):
        """Generated text (special tokens kept) -> the published output format. ``scores``: one
        log-probability per ``<loc_N>`` token of ``text``, in order (see ``florence.parsing``).
        Never raises on malformed text: returns what can be parsed."""
        raise NotImplementedError

    def example(self, rng: random.Random, image_size) -> tuple:
        """A random ``(text_input, annotation)`` pair for this task (tests, docs, synthetic data)."""
        raise NotImplementedError


def box_or_text(text: str):
    """A pixel box ``[x1, y1, x2, y2]`` from command-line or form text ``"x1,y1,x2,y2"``; any other
    text as it is (location tokens, or a text input)."""
    parts = text.split(",")
    if len(parts) == 4:
        try:
            return [float(p) for p in parts]
        except ValueError:
            pass
    return text


def region_tokens(region, image_size, token: str = "task") -> str:
    """A region input as ``<loc_x1><loc_y1><loc_x2><loc_y2>``: pixel boxes are quantized with the
    image size; location-token text passes through after a check."""
    if isinstance(region, str):
        bins = [int(b) for b in LOC_TOKEN.findall(region)]
        if len(bins) != 4 or LOC_TOKEN.sub("", region).strip() or max(bins) >= NUM_BINS:
            raise TaskError(f"{token}: a region is 4 location tokens '<loc_x1><loc_y1><loc_x2><loc_y2>' "
                            f"(bins 0-999) or a pixel box [x1, y1, x2, y2], got {region!r}")
        return region.strip()
    if image_size is None:
        raise TaskError(f"{token}: a pixel box needs the image size to be quantized")
    try:
        return QUANTIZER.box_tokens(list(region), image_size)
    except (TypeError, ValueError) as e:
        raise TaskError(f"{token}: a region is a pixel box [x1, y1, x2, y2], got {region!r} ({e})") from e


# ---------------------------------------------------------------------------------------------
# kinds of output (the built-in tasks are instances of these; plugins may reuse them)
# ---------------------------------------------------------------------------------------------
def _text(token: str, value, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise TaskError(f"{token}: annotation must be {what}, got {type(value).__name__}")
    return value


def _label(token: str, label) -> str:
    label = _text(token, label, "a label string")
    if "<" in label:
        raise TaskError(f"{token}: labels must not contain '<' (it starts a special token): {label!r}")
    return label.strip()


def _pairs(token: str, annotation, coords_key: str, labels_key: str, n_coords: int | None):
    """Validated (coords, label) pairs from ``{coords_key: [...], labels_key: [...]}``."""
    if not isinstance(annotation, dict) or coords_key not in annotation:
        raise TaskError(f"{token}: annotation must be a dict with {coords_key!r} and {labels_key!r}, "
                        f"got {annotation!r:.200}")
    coords = list(annotation[coords_key])
    labels = list(annotation.get(labels_key) or [""] * len(coords))
    if len(labels) != len(coords):
        raise TaskError(f"{token}: {len(coords)} {coords_key} but {len(labels)} {labels_key}")
    for i, c in enumerate(coords):
        flat = _flat(c) if n_coords is not None else [x for part in c for x in _flat(part)]
        if n_coords is not None and len(flat) != n_coords:
            raise TaskError(f"{token}: {coords_key}[{i}] must have {n_coords} numbers, got {len(flat)}")
        if not all(math.isfinite(x) for x in flat):
            raise TaskError(f"{token}: {coords_key}[{i}] has a non-finite coordinate: {c}")
    return list(zip(coords, (_label(token, label) for label in labels)))


def _flat(c) -> list[float]:
    try:
        return [float(x) for x in c]
    except (TypeError, ValueError) as e:
        raise TaskError(f"coordinates must be numbers, got {c!r:.100}") from e


def _with_scores(result: dict, items: list[Item]) -> dict:
    if items and all(it.score is not None for it in items):
        result["scores"] = [it.score for it in items]
    return result


def _rand_box(rng: random.Random, size) -> list[float]:
    w, h = size
    x1, y1 = rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.8)
    return [x1, y1, rng.uniform(x1 + 1, w), rng.uniform(y1 + 1, h)]


def _rand_polygon(rng: random.Random, size, n: int) -> list[float]:
    w, h = size
    cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, 0.25 * min(w, h)
    return [v for k in range(n) for v in (cx + r * math.cos(2 * math.pi * k / n),
                                          cy + r * math.sin(2 * math.pi * k / n))]


def _phrase(rng: random.Random, n_words: int = 2) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


class TextTask(Task):
    """Output is text (captions, OCR, region category / description / OCR). The annotation is a
    string, or a list of reference strings (evaluation against several captions): the first is the
    training target."""
    output_kind = "text"

    def encode_target(self, annotation, image_size) -> str:
        if isinstance(annotation, (list, tuple)) and annotation:
            annotation = annotation[0]
        return _text(self.token, annotation, "a string").strip()

    def decode_output(self, text, image_size, scores=None) -> str:
        return clean_text(text).strip()

    def example(self, rng, image_size):
        text_input = _rand_box(rng, image_size) if self.input_kind == "region" else None
        return text_input, _phrase(rng, rng.randint(1, 6))


class BoxTask(Task):
    """Output ``{'bboxes': [[x1, y1, x2, y2], ...], 'labels': [...]}`` (+ ``'scores'``).

    ``labelled=False`` (region proposals) emits boxes only and returns empty labels; ``ignore``
    lists labels dropped when parsing (phrase grounding drops pronouns and the like)."""
    output_kind = "boxes"
    labelled: bool = True
    ignore: frozenset = frozenset()

    def encode_target(self, annotation, image_size) -> str:
        pairs = _pairs(self.token, annotation, "bboxes", "labels", 4)
        return "".join((label if self.labelled else "") + QUANTIZER.box_tokens(box, image_size)
                       for box, label in pairs)

    def decode_output(self, text, image_size, scores=None) -> dict:
        items = [it for it in parse_boxes(text, image_size, scores, self.labelled) if it.label not in self.ignore]
        return _with_scores({"bboxes": [it.coords[0] for it in items], "labels": [it.label for it in items]}, items)

    def example(self, rng, image_size):
        n = rng.randint(1, 5)
        labels = [_phrase(rng, rng.randint(1, 2)) if self.labelled else "" for _ in range(n)]
        ann = {"bboxes": [_rand_box(rng, image_size) for _ in range(n)], "labels": labels}
        return (" and ".join(labels) if self.input_kind == "text" else None), ann


class QuadTask(Task):
    """Output ``{'quad_boxes': [[x1, y1, ..., x4, y4], ...], 'labels': [...]}`` (+ ``'scores'``)."""
    output_kind = "quads"

    def encode_target(self, annotation, image_size) -> str:
        pairs = _pairs(self.token, annotation, "quad_boxes", "labels", 8)
        return "".join(label + QUANTIZER.tokens(quad, image_size) for quad, label in pairs)

    def decode_output(self, text, image_size, scores=None) -> dict:
        items = parse_quads(text, image_size, scores)
        return _with_scores({"quad_boxes": [it.coords[0] for it in items], "labels": [it.label for it in items]},
                            items)

    def example(self, rng, image_size):
        quads = []
        for _ in range(rng.randint(1, 4)):
            x1, y1, x2, y2 = _rand_box(rng, image_size)
            quads.append([x1, y1, x2, y1, x2, y2, x1, y2])
        return None, {"quad_boxes": quads, "labels": [_phrase(rng, rng.randint(1, 3)) for _ in quads]}


class PolygonTask(Task):
    """Output ``{'polygons': [[[x, y, ...], ...], ...], 'labels': [...]}``: one entry per instance,
    each a list of parts. Targets write parts separated by ``<sep>``; several instances are
    wrapped in ``<poly>...</poly>``."""
    output_kind = "polygons"
    labelled: bool = False

    def encode_target(self, annotation, image_size) -> str:
        pairs = _pairs(self.token, annotation, "polygons", "labels", None)
        wrap = len(pairs) > 1 or self.labelled
        out = []
        for parts, label in pairs:
            if not parts or any(len(_flat(p)) < 4 or len(_flat(p)) % 2 for p in parts):
                raise TaskError(f"{self.token}: every polygon part needs an even number (>= 4) of coordinates")
            locs = "<sep>".join(QUANTIZER.tokens(p, image_size) for p in parts)
            out.append((label if self.labelled else "") + (f"<poly>{locs}</poly>" if wrap else locs))
        return "".join(out)

    def decode_output(self, text, image_size, scores=None) -> dict:
        items = parse_polygons(text, image_size, scores, labelled=self.labelled)
        return _with_scores({"polygons": [it.coords for it in items], "labels": [it.label for it in items]}, items)

    def example(self, rng, image_size):
        parts = [_rand_polygon(rng, image_size, rng.randint(3, 8)) for _ in range(rng.randint(1, 2))]
        if self.input_kind == "region":
            text_input = _rand_box(rng, image_size)
        else:
            text_input = _phrase(rng) if self.input_kind else None
        return text_input, {"polygons": [parts], "labels": [""]}


class OpenVocabularyTask(Task):
    """Boxes or polygons with labels: ``{'bboxes', 'bboxes_labels', 'polygons',
    'polygons_labels'}``. Text containing ``<poly>`` is read as polygons, otherwise as boxes, so
    one target holds one of the two."""
    output_kind = "open_vocabulary"
    _boxes = BoxTask("<BOXES>")
    _polygons = type("_LabelledPolygons", (PolygonTask,), {"labelled": True})("<POLYGONS>")

    def encode_target(self, annotation, image_size) -> str:
        if not isinstance(annotation, dict):
            raise TaskError(f"{self.token}: annotation must be a dict, got {type(annotation).__name__}")
        has_boxes, has_polys = bool(annotation.get("bboxes")), bool(annotation.get("polygons"))
        if has_boxes and has_polys:
            raise TaskError(f"{self.token}: a target holds boxes or polygons, not both")
        if has_polys:
            return self._polygons.encode_target(
                {"polygons": annotation["polygons"], "labels": annotation.get("polygons_labels")}, image_size)
        return self._boxes.encode_target(
            {"bboxes": annotation.get("bboxes", []), "labels": annotation.get("bboxes_labels")}, image_size)

    def decode_output(self, text, image_size, scores=None) -> dict:
        out = {"bboxes": [], "bboxes_labels": [], "polygons": [], "polygons_labels": []}
        if "<poly>" in text:
            items = parse_polygons(text, image_size, scores, labelled=True)
            out.update(polygons=[it.coords for it in items], polygons_labels=[it.label for it in items])
        else:
            items = parse_boxes(text, image_size, scores, labelled=True)
            out.update(bboxes=[it.coords[0] for it in items], bboxes_labels=[it.label for it in items])
        return _with_scores(out, items)

    def example(self, rng, image_size):
        label = _phrase(rng)
        if rng.random() < 0.5:
            n = rng.randint(1, 3)
            return label, {"bboxes": [_rand_box(rng, image_size) for _ in range(n)], "bboxes_labels": [label] * n,
                           "polygons": [], "polygons_labels": []}
        return label, {"bboxes": [], "bboxes_labels": [], "polygons": [[_rand_polygon(rng, image_size, 6)]],
                       "polygons_labels": [label]}


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
_TASKS: dict[str, Task] | None = None
_METRICS: dict = {}
_ERRORS: list[str] = []


def _collect() -> tuple[list, dict, list[str]]:
    """All plugins' tasks and metrics (``{name: function}``), and the messages of what was skipped."""
    from .plugins import plugin_manager

    pm, errors = plugin_manager()
    metrics = _collect_metrics(pm, errors)
    return _collect_tasks(pm, metrics, errors), metrics, errors


def _collect_metrics(pm, errors: list) -> dict:
    metrics, owner = {}, {}
    for impl in pm.hook.florence_register_metrics.get_hookimpls():
        where = f"plugin {impl.plugin_name!r}"
        try:
            provided = impl.function()
            bad = [k for k, f in provided.items() if not isinstance(k, str) or not callable(f)]
        except Exception as e:
            errors.append(f"{where} raised in florence_register_metrics (it returns {{name: function}}): "
                          f"{type(e).__name__}: {e}")
            continue
        if bad:
            errors.append(f"{where} returned metrics that are not name -> function: {bad[:3]}")
            continue
        for name, fn in provided.items():
            if name in owner:
                errors.append(f"{where}: metric {name!r} is already registered by plugin {owner[name]!r}; kept that one")
                continue
            owner[name], metrics[name] = impl.plugin_name, fn
    return metrics


def _collect_tasks(pm, metrics: dict, errors: list) -> list:
    tasks, owner = [], {}
    for impl in pm.hook.florence_register_tasks.get_hookimpls():  # registration order: built-ins first
        where = f"task plugin {impl.plugin_name!r}"
        try:
            provided = list(impl.function())
        except Exception as e:
            errors.append(f"{where} raised in florence_register_tasks: {type(e).__name__}: {e}")
            continue
        bad = [t for t in provided if not isinstance(t, Task)]
        if bad:
            errors.append(f"{where} returned objects that are not florence.task.Task: {bad[:3]}")
            continue
        for task in provided:
            clash = owner.get(task.token) or owner.get(task.name.lower())
            if clash:
                errors.append(f"{where}: task {task.token} ({task.name}) is already registered by "
                              f"plugin {clash!r}; kept that one")
                continue
            unknown = [m for m in task.metrics if m not in metrics]
            if unknown:
                stale = "" if metrics else (" (none at all: the install's entry points predate the built-in metrics "
                                            "plugin; reinstall florence, e.g. bash tools/install.sh)")
                errors.append(f"{where}: task {task.token} names metrics {unknown} that no plugin registers "
                              f"(florence_register_metrics); registered metrics: {sorted(metrics)}{stale}")
                continue
            owner[task.token] = owner[task.name.lower()] = impl.plugin_name
            tasks.append(task)
    return tasks


def _load() -> dict[str, Task]:
    global _TASKS
    if _TASKS is None:
        tasks, metrics, errors = _collect()
        _ERRORS[:] = errors
        for message in errors:
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        _METRICS.clear()
        _METRICS.update(metrics)
        _TASKS = {t.token: t for t in tasks}
    return _TASKS


def list_metrics() -> list[str]:
    """The names of every registered metric (built-in and plugins')."""
    _load()
    return sorted(_METRICS)


def get_metric(name: str):
    """The metric function registered under ``name``: ``function(samples) -> {key: value}``."""
    _load()
    if name not in _METRICS:
        raise TaskError(f"unknown metric {name!r}; registered metrics: {sorted(_METRICS)}")
    return _METRICS[name]


def reload_tasks() -> list[Task]:
    """Forget the loaded tasks and metrics and load the installed plugins again (e.g. after
    installing one)."""
    global _TASKS
    _TASKS = None
    return list_tasks()


def list_tasks() -> list[Task]:
    """Every registered task, built-in ones first."""
    return list(_load().values())


def plugin_errors() -> list[str]:
    """Messages of task plugins that failed to load (their tasks are missing)."""
    _load()
    return list(_ERRORS)


def get_task(token_or_name) -> Task:
    """A task by token (``"<OD>"``) or name (``"od"``, any case); a :class:`Task` passes through."""
    if isinstance(token_or_name, Task):
        return token_or_name
    tasks = _load()
    key = str(token_or_name).strip()
    for task in tasks.values():
        if key == task.token or key.lower() == task.name.lower() or key.upper() == task.token:
            return task
    valid = ", ".join(f"{t.token} ({t.name})" for t in tasks.values()) or "none (is florence installed?)"
    broken = f"; plugins that failed to load: {' | '.join(_ERRORS)}" if _ERRORS else ""
    raise TaskError(f"unknown task {token_or_name!r}; registered tasks: {valid}{broken}")


def add_task_tokens(model, tokenizer, tasks=None) -> list[str]:
    """Add the special tokens the registered tasks need to the tokenizer, and grow the model's
    embeddings if the vocabulary outgrows them. Returns the tokens added."""
    vocab = tokenizer.get_vocab()
    needed = [t for task in (tasks or list_tasks()) for t in task.special_tokens if t not in vocab]
    needed = list(dict.fromkeys(needed))
    if needed:
        tokenizer.add_special_tokens({"additional_special_tokens": needed}, replace_extra_special_tokens=False)
    if len(tokenizer) > model.config.vocab_size:
        model.resize_token_embeddings(len(tokenizer))
    return needed
