"""A built-in multitask dataset drawn on the fly: coloured shapes and printed words.

Every sample is a function of ``(seed, index)`` alone, so the dataset is deterministic, needs no
files, and a held-out split is just another seed. A scene holds 1-3 shapes (square, circle,
triangle; four colours; small or large; no two alike, so every referring expression is
unambiguous) and 1-2 printed words. From a scene come the annotations of every built-in task:

- captions at three levels of detail ("a red circle and a blue square", + sizes, + positions);
- OCR (the words in reading order) and OCR with regions (word + quad);
- detection ("red circle" boxes), dense region captions ("large red circle"), region proposals;
- phrase grounding (caption phrases -> boxes), open-vocabulary detection ("red circle" -> box);
- referring segmentation ("the red circle" -> polygon) and region-to-segmentation (box -> polygon);
- region-to-category / -description / -OCR (box -> "red circle" / "large red circle" / word).

Each sample also carries ``objects``: every shape's and word's box with its label ("red circle",
"CAT"; :func:`category_names`), for training-only heads that need dense supervision.

>>> ds = SyntheticScenes(seed=0, length=1000)
>>> sample = ds[3]
>>> sorted(sample)
['annotation', 'image', 'image_size', 'objects', 'task', 'text_input']
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from ..registry import DATASETS
from ..task import ImageAnnotations, Region, Word, get_task
from .records import _tasks

__all__ = ["SyntheticScenes", "Scene", "make_scene", "vocabulary_texts", "category_names"]

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
SHAPES = ("square", "circle", "triangle")
WORDS = ("CAT", "DOG", "SUN", "MAP", "BOX", "CAR", "TREE", "FISH", "BIRD", "STAR", "MOON", "SHIP",
         "LAMP", "DOOR", "KING", "ROSE")
POLYGON_POINTS = {"square": 4, "triangle": 3, "circle": 12}


@dataclass
class Thing:
    kind: str  # a shape name, or "word"
    box: tuple  # (x1, y1, x2, y2) pixels
    colour: str = ""
    size: str = ""
    text: str = ""
    polygon: tuple = ()

    @property
    def category(self) -> str:
        return f"{self.colour} {self.kind}" if self.kind != "word" else self.text

    @property
    def description(self) -> str:
        return f"{self.size} {self.colour} {self.kind}" if self.kind != "word" else f"the word {self.text}"


@dataclass
class Scene:
    image: Image.Image
    shapes: list
    words: list

    def caption(self, detail: int = 0) -> str:
        """detail 0: "a red circle and a blue square"; 1: + sizes and the words; 2: + positions."""
        w, h = self.image.size
        parts = []
        for s in self.shapes:
            if detail == 0:
                parts.append(f"a {s.colour} {s.kind}")
            else:
                text = f"a {s.size} {s.colour} {s.kind}"
                if detail == 2:
                    cx, cy = (s.box[0] + s.box[2]) / 2, (s.box[1] + s.box[3]) / 2
                    text += f" at the {'top' if cy < h / 2 else 'bottom'} {'left' if cx < w / 2 else 'right'}"
                parts.append(text)
        text = _join(parts)
        if detail:
            text += " and the word" + ("s " if len(self.words) > 1 else " ") + _join([t.text for t in self.words])
        return text


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _overlaps(box, others, margin=4) -> bool:
    return any(not (box[2] + margin <= o[0] or o[2] + margin <= box[0] or box[3] + margin <= o[1]
                    or o[3] + margin <= box[1]) for o in others)


def _polygon(kind: str, box) -> tuple:
    x1, y1, x2, y2 = box
    if kind == "square":
        return (x1, y1, x2, y1, x2, y2, x1, y2)
    if kind == "triangle":
        return ((x1 + x2) / 2, y1, x2, y2, x1, y2)
    cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2
    n = POLYGON_POINTS["circle"]
    return tuple(v for k in range(n) for v in (cx + r * math.cos(2 * math.pi * k / n - math.pi / 2),
                                               cy + r * math.sin(2 * math.pi * k / n - math.pi / 2)))


_FONTS: dict = {}


def _font(size: int):
    if size not in _FONTS:
        _FONTS[size] = ImageFont.load_default(size=size)
    return _FONTS[size]


def _place(rng: random.Random, w: float, h: float, size: int, placed: list, tries: int = 50):
    """A free (x1, y1, x2, y2) of the given extent, or None."""
    if w > size - 4 or h > size - 4:
        return None
    for _ in range(tries):
        x, y = rng.uniform(2, size - w - 2), rng.uniform(2, size - h - 2)
        box = (x, y, x + w, y + h)
        if not _overlaps(box, placed):
            placed.append(box)
            return box
    return None


def make_scene(rng: random.Random, size: int = 192, text_size: float = 1 / 9) -> Scene:
    """Draw one scene: 1-3 distinct shapes and 1-2 words on a light background, nothing overlapping."""
    bg = tuple(rng.randint(215, 255) for _ in range(3))
    image = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(image)
    font = _font(max(12, round(size * text_size)))
    placed, shapes, words = [], [], []

    def add_word(first=False):
        text, f = rng.choice(WORDS), font
        left, top, right, bottom = draw.textbbox((0, 0), text, font=f)
        while first and (right - left > size - 4 or bottom - top > size - 4) and f.size > 6:
            f = _font(f.size - 1)  # an image too small for the word: the first one in a font that fits
            left, top, right, bottom = draw.textbbox((0, 0), text, font=f)
        box = _place(rng, right - left, bottom - top, size, placed)
        if box is not None:
            draw.text((box[0] - left, box[1] - top), text, fill=(20, 20, 20), font=f)
            words.append(Thing("word", box, text=text))

    add_word(first=True)  # the first word goes on the empty canvas: every scene has text
    used = set()
    for _ in range(rng.randint(1, 3)):
        kind, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        if (kind, colour) in used:
            continue
        large = rng.random() < 0.5
        side = rng.uniform(0.30, 0.42) * size if large else rng.uniform(0.16, 0.24) * size
        box = _place(rng, side, side, size, placed) or (None if shapes else _place(rng, 0.16 * size, 0.16 * size,
                                                                                   size, placed, 500))
        if box is None:
            continue
        side = box[2] - box[0]
        used.add((kind, colour))
        poly = _polygon(kind, box)
        if kind == "circle":
            draw.ellipse(box, fill=COLOURS[colour])
        else:
            draw.polygon([(poly[i], poly[i + 1]) for i in range(0, len(poly), 2)], fill=COLOURS[colour])
        shapes.append(Thing(kind, box, colour, "large" if side >= 0.3 * size else "small", polygon=poly))
    if rng.random() < 0.5:
        add_word()
    shapes.sort(key=lambda t: (t.box[0], t.box[1]))
    words.sort(key=lambda t: (round(t.box[1] / (size / 8)), t.box[0]))  # reading order: rows, then left to right
    return Scene(image, shapes, words)


def _quad(box) -> list:
    x1, y1, x2, y2 = box
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def annotations(scene: Scene, rng: random.Random) -> ImageAnnotations:
    """What ``scene`` shows, in no task's terms, with a random shape to ask about (``focus``)."""
    focus = rng.choice(scene.shapes)
    objects = [Region(box=list(t.box), label=t.category, description=t.description, phrase=f"a {t.colour} {t.kind}",
                      expression=f"the {t.category}", polygon=[list(t.polygon)]) for t in scene.shapes]
    return ImageAnnotations(objects=objects, words=[Word(_quad(t.box), t.text) for t in scene.words],
                            captions=[scene.caption(d) for d in range(3)], focus=objects[scene.shapes.index(focus)])


def annotate(scene: Scene, token: str, rng: random.Random):
    """(text_input, annotation) of ``scene`` for the task ``token``: any task that makes its samples
    from image annotations (:meth:`~florence.task.Task.from_annotations`)."""
    return get_task(token).from_annotations(annotations(scene, rng))


# the default tasks: every built-in task the scenes have annotations for (VQA needs questions)
SUPPORTED_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OCR>", "<OCR_WITH_REGION>", "<OD>",
                   "<DENSE_REGION_CAPTION>", "<REGION_PROPOSAL>", "<CAPTION_TO_PHRASE_GROUNDING>",
                   "<REFERRING_EXPRESSION_SEGMENTATION>", "<REGION_TO_SEGMENTATION>", "<OPEN_VOCABULARY_DETECTION>",
                   "<REGION_TO_CATEGORY>", "<REGION_TO_DESCRIPTION>", "<REGION_TO_OCR>")


def category_names() -> list[str]:
    """Every object label of the scenes: the shape categories ("red circle") and the words."""
    return [f"{c} {k}" for c in COLOURS for k in SHAPES] + list(WORDS)


def vocabulary_texts() -> list[str]:
    """Every word and phrase the dataset's targets and prompts use: enough to train a tokenizer
    for models trained from scratch on it."""
    texts = [f"{s} {c} {k}" for s in ("small", "large") for c in COLOURS for k in SHAPES]
    texts += [f"a {c} {k} and the {c} {k}" for c in COLOURS for k in SHAPES]
    texts += [f"the word {w}, the words {w} and {w}" for w in WORDS] + list(WORDS)  # OCR targets start with a word
    texts += [f"at the {v} {h}," for v in ("top", "bottom") for h in ("left", "right")]
    texts += [get_task(t).template.replace("{input}", "") for t in SUPPORTED_TASKS]
    return texts


@DATASETS.register_module()
class SyntheticScenes:
    """Scenes drawn from ``(seed, index)``, one task per sample (or ``tasks_per_image`` of them).

    Args:
        seed: scenes of different seeds are independent (use another seed for held-out data).
        length: number of samples.
        image_size: canvas side in pixels.
        tasks: task tokens to sample from (default: all built-in tasks).
        task_weights: sampling weights, a list parallel to ``tasks`` or a ``{task: weight}`` dict
            (whose keys are then the default ``tasks``); default: uniform.
        cycle_tasks: give sample ``i`` task ``tasks[i % len(tasks)]`` instead of sampling (even
            counts per task, for evaluation).
        text_size: font size of the printed words, as a fraction of the canvas side (at least 12 px;
            at most 1/4, so that every word fits on the canvas).
        tasks_per_image: annotate each scene for this many different tasks, drawn by weight without
            replacement (the item then lists them under ``tasks``; the model encodes the image once
            for all of them, see :class:`~florence.data.ImageTasks`).
    """

    def __init__(self, seed: int = 0, length: int = 10000, image_size: int = 192, tasks=None, task_weights=None,
                 cycle_tasks: bool = False, text_size: float = 1 / 9, tasks_per_image: int = 1):
        self.seed, self.length, self.image_size = int(seed), int(length), int(image_size)
        if isinstance(task_weights, dict):
            tasks = list(tasks or task_weights)
            missing = [t for t in tasks if t not in task_weights]
            if missing:
                raise ValueError(f"task_weights has no weight for {missing}")
            task_weights = [task_weights[t] for t in tasks]
        self.tasks = _tasks(tasks or SUPPORTED_TASKS, SUPPORTED_TASKS, "SyntheticScenes")
        if task_weights is not None:
            task_weights = list(task_weights)
            if len(task_weights) != len(self.tasks):
                raise ValueError(f"{len(self.tasks)} tasks but {len(task_weights)} task_weights")
            if not all(isinstance(w, (int, float)) and w >= 0 for w in task_weights) or not sum(task_weights) > 0:
                raise ValueError(f"task_weights must be numbers >= 0 with a positive sum, got {task_weights}")
        self.task_weights = task_weights
        self.cycle_tasks = cycle_tasks
        self.text_size = float(text_size)
        if not 0 < self.text_size <= 0.25:
            raise ValueError(f"text_size is a fraction of the canvas side in (0, 0.25], got {text_size}")
        self.tasks_per_image = int(tasks_per_image)
        if not 1 <= self.tasks_per_image <= len(self.tasks) or (cycle_tasks and self.tasks_per_image > 1):
            raise ValueError(f"tasks_per_image must be in [1, {len(self.tasks)}] (the number of tasks) and 1 with "
                             f"cycle_tasks, got {tasks_per_image}")
        if self.length <= 0 or self.image_size < 32:
            raise ValueError(f"need length > 0 and image_size >= 32, got {length}, {image_size}")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        rng = random.Random(self.seed * 1_000_003 + index)
        scene = make_scene(rng, self.image_size, self.text_size)
        things = scene.shapes + scene.words
        objects = dict(bboxes=[list(t.box) for t in things], labels=[t.category for t in things])
        item = dict(image=scene.image, image_size=scene.image.size, objects=objects)
        if self.cycle_tasks:
            tokens = [self.tasks[index % len(self.tasks)]]
        else:
            tokens = _draw_distinct(rng, self.tasks, self.task_weights, self.tasks_per_image)
        tasks = []
        for token in tokens:
            text_input, annotation = annotate(scene, token, rng)
            tasks.append(dict(task=token, text_input=text_input, annotation=annotation))
        if self.tasks_per_image == 1:
            return {**item, **tasks[0]}
        return {**item, "tasks": tasks}


def _draw_distinct(rng: random.Random, tasks: list, weights, k: int) -> list:
    """``k`` different tasks drawn by weight, one after another without replacement."""
    pool, w = list(tasks), list(weights) if weights is not None else None
    drawn = []
    for _ in range(k):
        j = rng.choices(range(len(pool)), weights=w)[0]
        drawn.append(pool.pop(j))
        if w is not None:
            w.pop(j)
            if not sum(w) > 0:  # only zero-weight tasks remain
                break
    return drawn
