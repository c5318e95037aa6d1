"""Several annotators from one model: test-time augmentation (the data engine's cheapest way to get
annotators that disagree usefully). A :class:`View` mirrors and/or rescales each image; an annotator
reading through it (``dict(model=..., view="hflip")`` in a data-engine config or ``florence.label``'s
``annotators``) answers in the original image's pixels, so :class:`~florence.label.Consensus` merges
the views' labels like any other annotators'. The same views are a student's input noise in training
(:class:`RandomViews`, Noisy Student): each sample read through a view drawn at random, its regions
moved with the pixels.

A model with a fixed input size (Florence-2 resizes every image to it) sees a rescaled image almost as
it sees the image itself: for such models the mirrors are the views that differ.

>>> View.parse("hflip+scale:0.75")
View(flip=True, scale=0.75, vflip=False)
>>> View(flip=True).back(Shape("box", [10, 20, 30, 40]), (100, 50)).coords
[70.0, 20.0, 90.0, 40.0]
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from PIL import Image

from ..registry import DATASETS
from ..task import Shape, get_task

__all__ = ["View", "Augmented", "RandomViews"]


@dataclass(frozen=True)
class View:
    """How an annotator sees each image: mirrored left-right (``flip``) and / or upside down
    (``vflip``), then resized by ``scale``."""
    flip: bool = False
    scale: float = 1.0
    vflip: bool = False

    def __post_init__(self):
        if not isinstance(self.scale, (int, float)) or not 0.1 <= self.scale <= 4:
            raise ValueError(f"a view's scale must be a number in [0.1, 4], got {self.scale!r}")

    @classmethod
    def parse(cls, spec) -> "View":
        """A View from ``"identity"``, ``"hflip"``, ``"vflip"``, ``"scale:0.75"``, ``"hflip+vflip+scale:0.75"``,
        a dict of its fields or a View; a ValueError naming the bad part otherwise."""
        if isinstance(spec, View):
            return spec
        if isinstance(spec, dict):
            return cls(**spec)
        if not isinstance(spec, str):
            raise ValueError(f"a view is a string like 'hflip+scale:0.75', got {spec!r:.100}")
        flip, vflip, scale = False, False, 1.0
        for part in spec.replace(" ", "").split("+"):
            if part == "hflip":
                flip = True
            elif part == "vflip":
                vflip = True
            elif part.startswith("scale:"):
                try:
                    scale = float(part[len("scale:"):])
                except ValueError:
                    raise ValueError(f"view {spec!r}: scale must be a number, e.g. scale:0.75") from None
            elif part != "identity":
                raise ValueError(f"view {spec!r}: unknown part {part!r} (identity, hflip, vflip, scale:S)")
        return cls(flip, scale, vflip)

    def __str__(self) -> str:
        parts = (["hflip"] if self.flip else []) + (["vflip"] if self.vflip else []) + (
            [f"scale:{self.scale:g}"] if self.scale != 1 else [])
        return "+".join(parts) or "identity"

    def size(self, image_size) -> tuple[int, int]:
        """The view's (width, height) of an image of ``image_size``."""
        return max(1, round(image_size[0] * self.scale)), max(1, round(image_size[1] * self.scale))

    def apply(self, image: Image.Image) -> Image.Image:
        """The image as the annotator sees it."""
        if self.flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.vflip:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        if self.scale != 1:
            image = image.resize(self.size(image.size), Image.Resampling.BICUBIC)
        return image

    def back(self, shape: Shape, image_size) -> Shape:
        """``shape``, read on the view of an image of ``image_size``, in the image's own pixels."""
        return self._map(shape, self.size(image_size), image_size)

    def forward(self, shape: Shape, image_size) -> Shape:
        """``shape``, in the pixels of an image of ``image_size``, where it lies on the view (the
        inverse of :meth:`back`)."""
        return self._map(shape, image_size, self.size(image_size))

    def _map(self, shape: Shape, source, target) -> Shape:
        """``shape`` from an image of size ``source`` to one of size ``target``, mirrored as the view
        mirrors (a mirror is its own inverse); boxes keep x1 <= x2 and y1 <= y2, quads start top-left
        and go clockwise."""
        (w, h), (sx, sy) = target, (target[0] / source[0], target[1] / source[1])

        def flat(xy):
            xs, ys = [x * sx for x in xy[0::2]], [y * sy for y in xy[1::2]]
            xs = [w - x for x in xs] if self.flip else xs
            ys = [h - y for y in ys] if self.vflip else ys
            return [v for x, y in zip(xs, ys) for v in (x, y)]

        if shape.kind == "polygon":
            return dataclasses.replace(shape, coords=[flat(part) for part in shape.coords])
        coords = flat(shape.coords)
        if shape.kind == "box":
            coords = [min(coords[0], coords[2]), min(coords[1], coords[3]),
                      max(coords[0], coords[2]), max(coords[1], coords[3])]
        elif shape.kind == "quad":  # a mirror reverses the corners' turn: top-left first, clockwise again
            corners = [coords[i:i + 2] for i in range(0, 8, 2)]
            if self.flip:
                corners = [corners[1], corners[0], corners[3], corners[2]]
            if self.vflip:
                corners = [corners[3], corners[2], corners[1], corners[0]]
            coords = [v for c in corners for v in c]
        return dataclasses.replace(shape, coords=coords)


class Augmented:
    """An annotator reading every image through ``view``: ``annotate(images, task)`` runs on the
    viewed images and its regions come back in the images' pixels (text outputs as they are, an
    output ``{"error": ...}`` unchanged)."""

    def __init__(self, annotate, view):
        self.annotate, self.view = annotate, View.parse(view)

    def __call__(self, images, task):
        outputs = self.annotate([self.view.apply(image) for image in images], task)
        spec = get_task(task)
        return [o if not isinstance(o, dict) or "error" in o or not spec.region_kinds else
                spec.with_regions(o, [self.view.back(r, image.size) for r in spec.regions(o)])
                for o, image in zip(outputs, images)]


@DATASETS.register_module()
class RandomViews:
    """``dataset`` with each sample read through one of ``views`` drawn at random (default: as it is,
    mirrored left-right, upside down, both): a student's input noise (Noisy Student). The image and
    the regions of its annotation (and ``objects``) move together; samples a mirror would make wrong
    (text outputs, read text, region inputs, verbatim targets, an image's several tasks) stay as they
    are. Draws come from Python's ``random``, which the trainer seeds.

    Args:
        dataset: the dataset or its config.
        views: :class:`View` specs to draw from, equally likely.
    """

    def __init__(self, dataset, views=("identity", "hflip", "vflip", "hflip+vflip")):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.views = [View.parse(v) for v in views]
        if not self.views:
            raise ValueError("RandomViews needs at least one view")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        view = random.choice(self.views)
        if view == View() or "task" not in item:  # as it is, or several tasks of one image: not mirrored
            return item
        task = get_task(item["task"])
        if (not task.region_kinds or task.labels_read or item.get("text_input") is not None
                or "target_text" in item or "prompt" in item or not isinstance(item.get("annotation"), dict)):
            return item
        from ..processing.image import load_image

        image = load_image(item["image"])
        size = image.size
        item = dict(item, image=view.apply(image), image_size=view.size(size))
        item["annotation"] = task.with_regions(item["annotation"], [view.forward(r, size)
                                                                     for r in task.regions(item["annotation"])])
        if "objects" in item:
            od = get_task("<OD>")
            item["objects"] = od.with_regions({}, [view.forward(r, size) for r in od.regions(item["objects"])])
        return item
