"""The task contract (:class:`Task`), its error (:class:`TaskError`) and how a region input becomes
location tokens."""
from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..processing.quantizer import LOC_TOKEN, NUM_BINS, QUANTIZER

__all__ = ["Task", "TaskError", "Shape", "Grammar", "check_classes", "box_or_text", "region_tokens", "QUANTIZER"]

class TaskError(ValueError):
    """A task was asked for something it cannot do (unknown task, missing input, bad annotation)."""


@dataclass
class Shape:
    """One region of a task's output, whatever the output's keys: what the data engine's filters,
    the consensus, drawings, COCO files and ``supervision`` read (:meth:`Task.regions`).

    Attributes:
        kind: ``"box"`` (``coords`` = ``[x1, y1, x2, y2]``), ``"quad"`` (``[x1, y1, ..., x4, y4]``)
            or ``"polygon"`` (its parts, ``[[x, y, x, y, ...], ...]``); an output kind of a plugin
            may add its own.
        label: its label (``""`` for unlabelled regions).
        score: its score, ``None`` when the output has none.
    """
    kind: str
    coords: list
    label: str = ""
    score: float | None = None

    def parts(self) -> list[list]:
        """The coordinates as flat lists of x, y pairs (a box: its two corners); none where the
        coordinates are not lists (malformed output)."""
        try:
            return [list(p) for p in self.coords] if self.kind == "polygon" else [list(self.coords)]
        except TypeError:
            return []

    def box(self) -> list[float]:
        """The enclosing box ``[x1, y1, x2, y2]`` (ValueError for coordinates that are not numbers)."""
        xy = [float(v) for part in self.parts() for v in part]
        if len(xy) < 2:
            raise ValueError(f"a {self.kind} without points")
        return [min(xy[0::2]), min(xy[1::2]), max(xy[0::2]), max(xy[1::2])]


@dataclass(frozen=True)
class Grammar:
    """What a well-formed output of a task is, as decoding can enforce it (``florence.grammar``).

    Attributes:
        pattern: a regular expression over the output's tokens after ``<s>``, one letter per token:
            ``T`` text (an ordinary token without ``<``), ``L`` a location token, ``S`` ``<sep>``,
            ``P`` ``<poly>``, ``Q`` ``</poly>``, ``E`` ``</s>``; e.g. labelled boxes
            ``(T+(L{4})+)*E``.
        boxes: runs of location tokens (not after ``<poly>`` or ``<sep>``) are boxes
            ``x1 y1 x2 y2``, kept to ``x2 >= x1`` and ``y2 >= y1``.
        item_locations: location tokens per item (boxes 4, quads 8; None: an item is every location
            token up to the next marker that is not ``<sep>``, as a polygon's); a run after ``<poly>``
            or ``<sep>`` is always a polygon's. Item scores group location tokens by it.
        inside: the output's locations stay inside the region the prompt gives (its first four
            location tokens): x within the region's x1..x2, y within y1..y2.
    """
    pattern: str
    boxes: bool = False
    item_locations: int | None = 4
    inside: bool = False


POLYGON = "(LL){3,}(S(LL){3,})*"  # a polygon: parts of three or more points, separated by <sep>


def check_classes(classes) -> list[str]:
    """``classes`` as a list of stripped strings; ValueError naming what is wrong (not a list of
    strings, an empty one, one with ``<``, more than 1000)."""
    if isinstance(classes, str) or not isinstance(classes, (list, tuple)) or \
            not all(isinstance(c, str) for c in classes):
        raise ValueError(f"classes must be a list of strings, got {classes!r:.100}")
    classes = [c.strip() for c in classes]
    if not classes or not all(classes) or len(classes) > 1000:
        raise ValueError(f"classes must be up to 1000 non-empty strings, got {classes!r:.100}")
    if any("<" in c for c in classes):
        raise ValueError(f"a class must not contain '<' (it starts a special token): {classes!r:.100}")
    return classes


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
                 input_kind: str | None = ..., metrics: Sequence[str] | None = None,
                 special_tokens: Sequence[str] | None = None, make: Callable | None = None,
                 one_object: bool | None = None):
        self.token = token or self.token
        if make is not None:
            self.make = make
        if one_object is not None:
            self.one_object = bool(one_object)
        self.template = template if template is not None else self.template
        self.name = name or self.name or self.token.strip("<>").lower()
        if input_kind is not ...:  # None is a value here (no input): "not given" is the Ellipsis
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

    def from_annotations(self, annotations) -> tuple:
        """``(text_input, annotation)`` of this task for an image described by ``annotations`` (an
        :class:`~florence.task.ImageAnnotations`);
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
        log-score per ``<loc_N>`` token of ``text``, in order (see ``florence.parsing``).
        Never raises on malformed text: returns what can be parsed."""
        raise NotImplementedError

    def example(self, rng: random.Random, image_size) -> tuple:
        """A random ``(text_input, annotation)`` pair for this task (tests, docs, synthetic data)."""
        raise NotImplementedError

    # ---- the output's regions (what code outside the task reads instead of the output's keys) ----
    output_keys: tuple[str, ...] = ()  # the keys of the output dict (none: a text output)
    region_kinds: tuple[str, ...] = ()  # the Shape kinds its regions may be ("box", "quad", "polygon")
    # where each region kind sits in the output: {kind: (coordinates key, labels key)}. The dataset
    # checks (florence.data.records.check_annotation) and the metrics' malformed-output check
    # (florence.evaluation.task_metric.is_malformed) read it; "box", "quad" and "polygon" have
    # geometry they check, any other kind's coordinates must be finite numbers.
    region_keys: dict[str, tuple[str, str]] = {}

    def regions(self, output) -> list[Shape]:
        """The regions of an output of this task, in order (none for a text output). Never raises
        on malformed output: missing labels are ``""``, scores are ``None`` unless there is one per
        region; coordinates are as the output has them."""
        return []

    def with_regions(self, output, regions: list[Shape]):
        """``output`` holding ``regions`` instead of its own (a subset of :meth:`regions`, or new
        ones of the same kinds): what filters and merges return. Keys the regions do not fill stay;
        ``scores`` is written when ``output`` has it. A text output comes back unchanged."""
        return output

    # what a well-formed output is (None: anything): the pipeline's decoding keeps to it (grammar=True,
    # the default; florence.grammar.GrammarLogitsProcessor)
    grammar: Grammar | None = None

    # items written ``label (<loc> x label_locations)+`` (boxes: 4, quads: 8); None: another form. A
    # task with it can take closed-set labels (pipe(..., classes=[...]): the labels of its grammar)
    label_locations: int | None = None

    # ---- tiled inference of large images (pipe(..., tile=...), florence.tiling) ---------------------
    # the labels of its regions are text read inside them (OCR lines): a line cut by a tile border
    # joins its pieces' texts, and duplicates need not share a label
    labels_read: bool = False
    # the location task a tiled call runs instead (None: this one, when it has regions); its merged
    # regions become this task's output through from_regions (<OCR> is read from <OCR_WITH_REGION>)
    tiled_by: str | None = None

    def from_regions(self, regions: list[Shape]):
        """This task's output from the merged regions of ``tiled_by``'s tiles, in reading order."""
        raise TaskError(f"{self.token} is not read from regions (it sets no tiled_by)")

    # ---- several inputs of one image in one call (several classes or phrases) ----------------------
    @property
    def takes_several_inputs(self) -> bool:
        """Whether one call may give this task several text inputs for one image and get one merged
        output (:meth:`merge`): a text-input task with regions in its output (open-vocabulary
        detection, phrase grounding, referring segmentation)."""
        return self.input_kind == "text" and bool(self.region_kinds)

    def merge(self, outputs: list, inputs: list):
        """One output from this task's ``outputs`` for ``inputs`` of one image: their regions in
        order, a region without a label labelled with its input, with scores where every output
        has them."""
        regions = [r if r.label else dataclasses.replace(r, label=text)
                   for out, text in zip(outputs, inputs) for r in self.regions(out)]
        base = next((o for o in outputs if isinstance(o, dict) and "scores" in o), outputs[0] if outputs else {})
        return self.with_regions(base, regions)


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
