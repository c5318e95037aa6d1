"""What a dataset knows about an image, in no task's terms: its objects (:class:`Region`), words
(:class:`Word`) and captions (:class:`ImageAnnotations`). Each task makes its samples from these
(:meth:`florence.task.Task.from_annotations`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .base import TaskError

__all__ = ["ImageAnnotations", "Region", "Word"]


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
        """The caption at level ``detail`` (0 brief, 1 detailed, 2 a paragraph); TaskError if there is none."""
        if len(self.captions) <= detail or not self.captions[detail]:
            raise TaskError(f"no caption of detail {detail} (the image has {len(self.captions)} levels)")
        return self.captions[detail]

    def the_focus(self) -> Region:
        """The object a region task asks about; TaskError if there is none."""
        if self.focus is None:
            raise TaskError("no object to ask about (focus)")
        return self.focus

    def the_words(self) -> list:
        """The words in reading order; TaskError if there are none."""
        if not self.words:
            raise TaskError("no words")
        return self.words

    def first_word(self) -> Word:
        """The first word in reading order; TaskError if there are no words."""
        return self.the_words()[0]

    def about(self, region: Region) -> "ImageAnnotations":
        """These annotations with ``region`` as the focus."""
        return dataclasses.replace(self, focus=region)
